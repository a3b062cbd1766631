"""The reference store keeps the Store contract (it is what the others are held to)."""

from __future__ import annotations

import pytest

from offsync.errors import StorageError
from offsync.stores.memory import MemoryStore
from offsync.testing import check_store


def test_memory_store_keeps_the_contract() -> None:
    check_store(MemoryStore)


def test_closed_memory_store_refuses_use() -> None:
    store = MemoryStore()
    store.close()
    with pytest.raises(StorageError):
        store.get_meta("seq")
