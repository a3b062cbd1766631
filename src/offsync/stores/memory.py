"""A store held in memory: the reference implementation of the Store contract.

It is written to be obviously right rather than fast: a transaction takes a snapshot of
every table and puts it back if the block raises. ``offsync.testing.check_store`` holds
other stores against it. Nothing survives ``close()``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..blobs import BlobRef, field_references
from ..change import Change, ChangeId
from ..errors import StorageError
from ..limits import DEFAULT_LIMITS, Limits
from ..scope import WHOLE, Partition, Stream, new_partition
from .base import (
    BlobRefRow,
    IndexRow,
    RecordRow,
    SegmentRow,
    Store,
    in_partition,
    ref_row_order,
    stream_of,
)
from .blobs import BlobStore, MemoryBlobStore

__all__ = ["MemoryStore"]


def _utf8(collection: str, key: str) -> tuple[bytes, bytes]:
    return collection.encode(), key.encode()


def _stream(stream: Stream) -> Stream:
    """``stream`` as this store keys it (its origin as bytes, as a row reads back)."""
    origin, (collection, prefix) = stream
    return stream_of(bytes(origin), collection, prefix)


def _partition(partition: Partition) -> tuple[str, str]:
    collection, prefix = partition
    return collection, prefix


def _segment_order(item: tuple[tuple[Stream, int], SegmentRow]) -> tuple[bytes, bytes, bytes, int]:
    """Segments as the stores order them: by origin, collection and prefix as bytes,
    then first seq."""
    (stream, first), _ = item
    return stream[0], stream[1][0].encode(), stream[1][1].encode(), first


class MemoryStore(Store):
    def __init__(self) -> None:
        self._meta: dict[str, bytes] = {}
        self._segments: dict[tuple[Stream, int], SegmentRow] = {}
        self._outbox: dict[tuple[tuple[str, str], int], bytes] = {}
        self._changes: dict[tuple[str, str], dict[ChangeId, Change]] = {}
        self._records: dict[tuple[str, str], RecordRow] = {}
        self._peers: dict[bytes, tuple[bytes, int, bytes, bytes]] = {}
        self._nonces: dict[bytes, int] = {}
        #: The reference index: the blob references of each visible record that has any.
        self._refs: dict[tuple[str, str], tuple[BlobRef, ...]] = {}
        self._closed = False
        self._blobs = MemoryBlobStore()

    def _tables(self) -> tuple[Any, ...]:
        return (
            dict(self._meta),
            dict(self._segments),
            dict(self._outbox),
            {k: dict(v) for k, v in self._changes.items()},
            dict(self._records),
            dict(self._peers),
            dict(self._nonces),
            dict(self._refs),
        )

    def _restore(self, saved: tuple[Any, ...]) -> None:
        (
            self._meta,
            self._segments,
            self._outbox,
            self._changes,
            self._records,
            self._peers,
            self._nonces,
            self._refs,
        ) = saved

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        self._check_open()
        saved = self._tables()
        try:
            yield
        except BaseException:
            self._restore(saved)
            raise

    def blobs(self, limits: Limits = DEFAULT_LIMITS) -> BlobStore:
        return self._blobs.with_limits(limits)

    def close(self) -> None:
        self._closed = True

    def get_meta(self, name: str) -> bytes | None:
        self._check_open()
        return self._meta.get(name)

    def set_meta(self, name: str, value: bytes) -> None:
        self._check_open()
        self._meta[name] = bytes(value)

    def segment_index(self) -> list[IndexRow]:
        self._check_open()
        return [
            (r.stream, r.first_seq, r.last_seq, r.hash, r.prev_hash, r.status, len(r.data))
            for _, r in sorted(self._segments.items(), key=_segment_order)
        ]

    def add_segments(self, rows: Sequence[SegmentRow]) -> None:
        self._check_open()
        new = {}
        for r in rows:
            k = (_stream(r.stream), r.first_seq)
            if k in self._segments or k in new:
                raise StorageError("a segment at this position is already stored")
            new[k] = SegmentRow(k[0], *r[1:])
        self._segments.update(new)

    def segment_data(self, keys: Sequence[tuple[Stream, int]]) -> list[bytes]:
        self._check_open()
        out = []
        for stream, first in keys:
            row = self._segments.get((_stream(stream), first))
            if row is None:
                raise StorageError("segment vanished from the store")
            out.append(row.data)
        return out

    def set_segment_status(self, stream: Stream, first_seq: int, status: str) -> None:
        self._check_open()
        k = (_stream(stream), first_seq)
        row = self._segments.get(k)
        if row is not None:
            self._segments[k] = row._replace(status=status)

    def replace_segment_data(self, stream: Stream, first_seq: int, data: bytes) -> None:
        self._check_open()
        k = (_stream(stream), first_seq)
        row = self._segments.get(k)
        if row is not None:
            self._segments[k] = row._replace(data=bytes(data))

    def remove_segments(self, keys: Sequence[tuple[Stream, int]]) -> None:
        self._check_open()
        for stream, first_seq in keys:
            self._segments.pop((_stream(stream), first_seq), None)

    def drop_partition(self, partition: Partition, length: int) -> None:
        self._check_open()
        part = _partition(partition)
        for seg in [k for k in self._segments if tuple(k[0].partition) == part]:
            del self._segments[seg]
        for row in [k for k in self._outbox if k[0] == part]:
            del self._outbox[row]
        for table in (self._changes, self._records, self._refs):
            for ck in [ck for ck in table if in_partition(partition, length, *ck)]:
                del table[ck]

    def add_outbox(self, partition: Partition, rows: Sequence[tuple[int, bytes]]) -> None:
        self._check_open()
        part = _partition(partition)
        keys = [(part, seq) for seq, _ in rows]
        if len(set(keys)) != len(keys) or any(k in self._outbox for k in keys):
            raise StorageError("an outbox entry with this seq is already stored")
        self._outbox.update(((part, seq), bytes(data)) for seq, data in rows)

    def outbox(self, partition: Partition = WHOLE) -> list[tuple[int, bytes]]:
        self._check_open()
        part = _partition(partition)
        return sorted((seq, data) for (p, seq), data in self._outbox.items() if p == part)

    def outbox_partitions(self) -> list[Partition]:
        self._check_open()
        return sorted({new_partition(*p) for p, _ in self._outbox})

    def clear_outbox(self, partition: Partition, upto_seq: int) -> None:
        self._check_open()
        part = _partition(partition)
        for k in [k for k in self._outbox if k[0] == part and k[1] <= upto_seq]:
            del self._outbox[k]

    def add_changes(self, changes: Sequence[Change]) -> None:
        self._check_open()
        for c in changes:
            self._changes.setdefault((c.collection, c.key), {}).setdefault(c.id, c)

    def remove_changes(self, changes: Sequence[Change]) -> None:
        self._check_open()
        for c in changes:
            self._changes.get((c.collection, c.key), {}).pop(c.id, None)

    def changes_for(self, collection: str, key: str) -> list[Change]:
        self._check_open()
        held = self._changes.get((collection, key), {})
        return [held[i] for i in sorted(held)]

    def existing(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        self._check_open()
        return {(c, k) for c, k in keys if (c, k) in self._records}

    def put_records(self, rows: Sequence[RecordRow]) -> None:
        self._check_open()
        for r in rows:
            self._records[(r.collection, r.key)] = RecordRow(
                r.collection, r.key, r.fields, r.heads, bool(r.conflict)
            )
            refs = field_references(r.fields)
            if refs:
                self._refs[(r.collection, r.key)] = refs
            else:
                self._refs.pop((r.collection, r.key), None)

    def get_record(self, collection: str, key: str) -> RecordRow | None:
        self._check_open()
        return self._records.get((collection, key))

    def iter_records(self, collection: str | None = None) -> Iterator[RecordRow]:
        self._check_open()
        rows = [
            r for r in self._records.values() if collection is None or r.collection == collection
        ]
        rows.sort(key=lambda r: _utf8(r.collection, r.key))
        yield from rows

    def blob_refs(self, collection: str | None = None, key: str | None = None) -> list[BlobRefRow]:
        self._check_open()
        if key is not None and collection is None:
            return super().blob_refs(collection, key)  # refuses it
        rows = [
            (c, k, ref)
            for (c, k), refs in self._refs.items()
            if (collection is None or c == collection) and (key is None or k == key)
            for ref in refs
        ]
        return sorted(rows, key=ref_row_order)

    def blob_ref_heads(self, hashes: Sequence[bytes]) -> list[tuple[BlobRef, bytes]]:
        self._check_open()
        wanted = set(hashes)
        return [
            (ref, self._records[ck].heads)
            for ck, refs in self._refs.items()
            for ref in refs
            if ref.hash in wanted
        ]

    def blob_ref_records(self, hashes: Sequence[bytes]) -> list[tuple[str, str, BlobRef, bytes]]:
        self._check_open()
        wanted = set(hashes)
        return [
            (c, k, ref, self._records[(c, k)].heads)
            for (c, k), refs in self._refs.items()
            for ref in refs
            if ref.hash in wanted
        ]

    def referenced_blobs(self, hashes: Sequence[bytes]) -> set[bytes]:
        self._check_open()
        held = {r.hash for refs in self._refs.values() for r in refs}
        return held.intersection(hashes)

    def conflicted(self) -> list[tuple[str, str]]:
        self._check_open()
        return sorted(
            ((r.collection, r.key) for r in self._records.values() if r.conflict),
            key=lambda ck: _utf8(*ck),
        )

    def set_peer(self, peer: bytes, created: int, knowledge: bytes, receipt: bytes) -> None:
        self._check_open()
        held = self._peers.get(peer)
        if held is None or created > held[1]:
            self._peers[bytes(peer)] = (bytes(peer), created, bytes(knowledge), bytes(receipt))

    def peers(self) -> list[tuple[bytes, int, bytes, bytes]]:
        self._check_open()
        return [self._peers[p] for p in sorted(self._peers)]

    def peer(self, peer: bytes) -> tuple[bytes, int, bytes, bytes] | None:
        self._check_open()
        return self._peers.get(bytes(peer))

    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        self._check_open()
        with self.transaction():
            for held in [n for n, e in self._nonces.items() if e < now]:
                del self._nonces[held]
            if bytes(nonce) in self._nonces:
                return False
            self._nonces[bytes(nonce)] = expires
            return True
