"""Versioned schema migrations of the PostgreSQL store.

Each ``NNNN_name.sql`` file here is one migration, applied once, in order, inside one
transaction together with its row in ``schema_migrations``. Never edit a released
migration: add the next number.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import NamedTuple

__all__ = ["Migration", "migrations"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Migration(NamedTuple):
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with this offsync, oldest first."""
    out = []
    for entry in resources.files(__name__).iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    out.sort()
    if [m.version for m in out] != list(range(1, len(out) + 1)):
        raise RuntimeError("offsync migrations must be numbered 1, 2, 3 ... without gaps")
    return out
