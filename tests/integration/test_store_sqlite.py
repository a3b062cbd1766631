"""The SQLite store keeps the Store contract, on real files."""

from __future__ import annotations

import itertools
from pathlib import Path

from offsync.stores.sqlite import SQLiteStore
from offsync.testing import check_store


def test_sqlite_store_keeps_the_contract(tmp_path: Path) -> None:
    counter = itertools.count()
    check_store(lambda: SQLiteStore(str(tmp_path / f"store-{next(counter)}.sqlite")))


def test_sqlite_memory_store_keeps_the_contract() -> None:
    check_store(lambda: SQLiteStore(":memory:"))
