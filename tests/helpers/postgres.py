"""What the tests that need PostgreSQL share: where the server is, skipping the module
with the reason when none answers, and dropping the schemas a test made.

Import it at the top of a test module (after ``pytest``): the import itself skips the
module when psycopg is missing or no server answers at OFFSYNC_TEST_POSTGRES.
"""

from __future__ import annotations

import os

import pytest

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")

DSN = os.environ.get("OFFSYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _server_problem() -> str | None:
    try:
        with psycopg.connect(DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"no PostgreSQL server answers at OFFSYNC_TEST_POSTGRES={DSN!r}: {exc}"
    return None


_PROBLEM = _server_problem()
if _PROBLEM:
    pytest.skip(_PROBLEM, allow_module_level=True)


def drop_schemas(prefix: str) -> None:
    """Drop every schema whose name starts with ``prefix``."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        names = [
            n
            for (n,) in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
            )
        ]
        for name in names:
            conn.execute(
                psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(name))
            )
