"""The store interface a replica runs on.

A store is dumb persistence: it never decides a merge and never decodes untrusted
bytes. Every write happens inside ``transaction()``; if the block raises, the store
is left exactly as before. ``offsync.testing.check_store`` checks an implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import NamedTuple

from ..change import Change

__all__ = ["RecordRow", "SegmentRow", "Store"]


class SegmentRow(NamedTuple):
    origin: bytes
    first_seq: int
    last_seq: int
    hash: bytes
    prev_hash: bytes
    data: bytes  # the encoded segment, byte for byte as received or sealed
    status: str  # "applied", or why it is quarantined


class RecordRow(NamedTuple):
    collection: str
    key: str
    fields: bytes | None  # None: deleted
    heads: bytes  # msgpack [[origin, seq], ...]
    conflict: bool


class Store(ABC):
    """Persistence for one replica. Not thread-safe; the replica serialises calls."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """All-or-nothing block; re-entrant (inner blocks join the outer one)."""

    @abstractmethod
    def close(self) -> None: ...

    # meta: small named values (own seq, clock, identity, schema version)
    @abstractmethod
    def get_meta(self, name: str) -> bytes | None: ...

    @abstractmethod
    def set_meta(self, name: str, value: bytes) -> None: ...

    # segments
    @abstractmethod
    def segment_index(self) -> list[tuple[bytes, int, int, bytes, bytes, str, int]]:
        """(origin, first, last, hash, prev_hash, status, size) of every held segment."""

    @abstractmethod
    def add_segments(self, rows: Sequence[SegmentRow]) -> None: ...

    @abstractmethod
    def segment_data(self, keys: Sequence[tuple[bytes, int]]) -> list[bytes]:
        """Encoded segments by (origin, first_seq), in the order asked."""

    @abstractmethod
    def set_segment_status(self, origin: bytes, first_seq: int, status: str) -> None: ...

    # own changes not yet sealed into a segment
    @abstractmethod
    def add_outbox(self, rows: Sequence[tuple[int, bytes]]) -> None: ...

    @abstractmethod
    def outbox(self) -> list[tuple[int, bytes]]: ...

    @abstractmethod
    def clear_outbox(self, upto_seq: int) -> None: ...

    # applied changes and record states
    @abstractmethod
    def add_changes(self, changes: Sequence[Change]) -> None: ...

    @abstractmethod
    def changes_for(self, collection: str, key: str) -> list[Change]: ...

    @abstractmethod
    def existing(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...

    @abstractmethod
    def put_records(self, rows: Sequence[RecordRow]) -> None: ...

    @abstractmethod
    def get_record(self, collection: str, key: str) -> RecordRow | None: ...

    @abstractmethod
    def iter_records(self, collection: str | None = None) -> Iterator[RecordRow]:
        """Records ordered by (collection, key) compared as UTF-8 bytes."""

    @abstractmethod
    def conflicted(self) -> list[tuple[str, str]]: ...

    # what peers said they hold (receipts)
    @abstractmethod
    def set_peer(self, peer: bytes, created: int, knowledge: bytes, receipt: bytes) -> None: ...

    @abstractmethod
    def peers(self) -> list[tuple[bytes, int, bytes, bytes]]:
        """(peer, created, knowledge, receipt) for every peer heard from."""
