"""The blob lane holds a page of the reference index, never every blob (issue 14: the
courier backlog in flat memory). Driven with pages of 3 rows over 20 blobs, on a
SQLite store that refuses to list the whole index and records the largest page it
returned: a planner or iterator that goes back to a set or map of every blob fails
here, without measuring memory or time."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.knowledge import Knowledge
from offsync.limits import Limits
from offsync.stores.base import BlobRefRow, RecordRow
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import sync
from offsync.sync.blobs import offered_batches, sync_blobs
from offsync.sync.mailblobs import LogWriter, TransitLog
from offsync.transports import DiskTransport
from offsync.transports.memory import MemoryTransport, ReplicaBlobPeer

A = Identity(bytes([1]) * 32, "sub-a")
B = Identity(bytes([2]) * 32, "district")
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)
PAGE = 3


class PagedOnly(SQLiteStore):
    """A SQLite store that refuses the whole-index reads (every reference, every
    missing one, every record) and remembers the most rows one page or lookup returned."""

    largest = 0
    whole_reads = False  # set once the records are written: from then on, pages only

    def _seen(self, rows: Sequence[object]) -> None:
        self.largest = max(self.largest, len(rows))

    def blob_refs(self, collection: str | None = None, key: str | None = None) -> list[BlobRefRow]:
        assert self.whole_reads or collection is not None, "the whole index was listed"
        return super().blob_refs(collection, key)

    def iter_records(self, collection: str | None = None) -> Iterator[RecordRow]:
        assert self.whole_reads, "every record was read"
        return super().iter_records(collection)

    def missing_blob_refs(self) -> list[BlobRefRow]:
        assert self.whole_reads, "every missing reference was listed"
        return super().missing_blob_refs()

    def blob_ref_page(
        self, after: bytes | None, limit: int, *, missing: bool = False
    ) -> list[BlobRef]:
        rows = super().blob_ref_page(after, limit, missing=missing)
        self._seen(rows)
        return rows

    def blob_ref_rows(self, after: BlobRefRow | None, limit: int) -> list[BlobRefRow]:
        rows = super().blob_ref_rows(after, limit)
        self._seen(rows)
        return rows


def replica(path: Path, name: str, identity: Identity) -> tuple[Replica, PagedOnly]:
    store = PagedOnly(str(path / f"{name}.sqlite"))
    store.whole_reads = True
    return Replica(store, identity, limits=SMALL), store


def backlog(rep: Replica, n: int = 20) -> list[BlobRef]:
    """``n`` records of one blob each, and a record holding the first blob again (a
    photo sent twice travels once): ``n`` distinct blobs, in record order."""
    refs = []
    for i in range(n):
        ref = rep.put_blob(bytes([i]) * (100 + i), "image/jpeg")
        rep.put("people", f"p{i:02}", {"photo": ref.field()})
        refs.append(ref)
    rep.put("people", "p99", {"again": refs[0].field()})
    return refs


def test_offered_batches_are_read_a_page_at_a_time(tmp_path: Path) -> None:
    a, store = replica(tmp_path, "a", A)
    refs = backlog(a)
    store.whole_reads = False
    batches = list(offered_batches(a, 4, page=PAGE))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4]
    assert [r for b in batches for r in b] == sorted(refs, key=lambda r: r.hash)  # once each
    assert 0 < store.largest <= PAGE


def test_blobs_beyond_goes_in_record_order_once_per_hash_a_page_at_a_time(
    tmp_path: Path,
) -> None:
    a, store = replica(tmp_path, "a", A)
    refs = backlog(a)
    store.whole_reads = False
    assert list(a.blobs_beyond(Knowledge(), page=PAGE)) == refs
    assert 0 < store.largest <= PAGE
    # A peer that holds every record lacks only what its want list names.
    everything = a.knowledge()
    assert list(a.blobs_beyond(everything, page=PAGE)) == []
    asked = frozenset({refs[5].hash, refs[17].hash})
    assert list(a.blobs_beyond(everything, asked, page=PAGE)) == [refs[5], refs[17]]


def test_a_site_pulls_a_backlog_in_batches_from_pages(tmp_path: Path) -> None:
    a, _ = replica(tmp_path, "a", A)
    b, store = replica(tmp_path, "b", B)
    refs = backlog(a)
    to_b, from_a = MemoryTransport.pair(a, b)  # the records alone: no blob lane
    sync(a, to_b, pull=False)
    sync(b, from_a, push=False)
    store.whole_reads = False
    batches = list(b.fetch_batches(4, page=PAGE))
    assert [r for batch in batches for r in batch] == sorted(refs, key=lambda r: r.hash)
    assert all(len(batch) <= 4 for batch in batches) and 0 < store.largest <= PAGE
    report = sync_blobs(b, ReplicaBlobPeer(a), push=False)
    assert report.received == 20 and report.ok
    assert not list(b.fetch_batches(4, page=PAGE))


def test_a_courier_disk_carries_a_backlog_without_listing_the_index(tmp_path: Path) -> None:
    a, sender = replica(tmp_path, "a", A)
    b, receiver = replica(tmp_path, "b", B)
    refs = backlog(a)
    usb = tmp_path / "usb"
    usb.mkdir()
    sender.whole_reads = receiver.whole_reads = False
    out = sync(a, DiskTransport(usb, a, b), pull=False)
    assert out.blobs is not None and out.blobs.sent == 20
    got = sync(b, DiskTransport(usb, b), push=False)
    assert got.blobs is not None and got.blobs.received == 20 and got.blobs.ok
    assert all(b.open_blob(r).read() == bytes([i]) * (100 + i) for i, r in enumerate(refs))
    # The second export writes nothing again: the in-transit log remembers all 20.
    again = sync(a, DiskTransport(usb, a, b), pull=False)
    assert again.blobs is not None and again.blobs.sent == 0
    assert len(TransitLog(a.lane_log(B.public_key))) == 20


def test_the_in_transit_log_is_written_in_sorted_runs_and_merged() -> None:
    rng = random.Random(3)
    digests = [rng.randbytes(32) for _ in range(20)]
    old = LogWriter(run=3)
    for d in digests[:12]:
        old.add(d, 1)
    old_log = old.finish()
    new = LogWriter(run=3)
    for d in digests[8:]:
        new.add(d, 2)
    new.add(rng.randbytes(32), None)  # no stamp: no entry
    assert len(new.runs) == 4 and all(len(run) <= 3 * 40 for run in new.runs)
    merged = TransitLog(new.finish(old_log))
    raw = merged.raw
    keys = [raw[i : i + 32] for i in range(0, len(raw), 40)]
    assert keys == sorted(digests)  # one entry per hash, by hash
    assert [merged.get(d) for d in digests] == [1] * 8 + [2] * 12  # the new entry stands
    assert merged.get(bytes(32)) is None
    assert TransitLog(b"\x00" * 41).get(bytes(32)) is None  # unreadable: empty
