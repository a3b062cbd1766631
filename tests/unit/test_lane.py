"""The blob lane: its pure core (``offsync.lane``) and ``sync_blobs`` between replicas
on memory stores."""

from __future__ import annotations

import pytest

from offsync import Identity, Replica
from offsync.blobs import BlobRef, blob_hash
from offsync.errors import BlobError, LimitExceededError, TransportError
from offsync.lane import (
    MAX_LANE_QUERY,
    BlobChunk,
    BlobTransfer,
    check_hashes,
    held_offset,
    to_fetch,
    to_send,
    transfer_spans,
)
from offsync.limits import Limits
from offsync.stores.memory import MemoryStore
from offsync.sync.blobs import ReplicaBlobPeer, sync_blobs

A = Identity(bytes([1]) * 32, "site-a")
B = Identity(bytes([2]) * 32, "site-b")
SMALL = Limits(blob_chunk_bytes=1000, max_blob_bytes=50_000)


def photo(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def ref_of(data: bytes) -> BlobRef:
    return BlobRef(blob_hash(data), len(data), "image/jpeg")


def replica(identity: Identity) -> Replica:
    return Replica(MemoryStore(), identity, limits=SMALL)


def records(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


# -- the pure core -------------------------------------------------------------------


def test_held_offset_is_the_contiguous_prefix() -> None:
    assert held_offset([]) == 0
    assert held_offset([(0, 10), (10, 5)]) == 15
    assert held_offset([(0, 10), (20, 5)]) == 10  # a chunk beyond a gap is sent again
    assert held_offset([(5, 10)]) == 0


def test_to_send_skips_what_the_peer_holds_and_resumes_partial_blobs() -> None:
    a, b, c = ref_of(photo(3000)), ref_of(photo(10)), ref_of(photo(500, 1))
    plan = to_send([a, b, c, a], {a.hash: 1200, b.hash: 10})
    assert plan == [BlobTransfer(c, 0), BlobTransfer(a, 1200)]  # smallest first, once
    assert list(transfer_spans(plan[1], 1000)) == [(1200, 1000), (2200, 800)]
    empty = ref_of(b"")
    assert to_send([empty], {}) == [BlobTransfer(empty, 0)]
    assert to_send([empty], {empty.hash: 0}) == []


def test_to_fetch_takes_only_blobs_the_peer_holds_whole() -> None:
    a, b = ref_of(photo(3000)), ref_of(photo(10))
    plan = to_fetch([a, b], {a.hash: 3000, b.hash: 5}, {a.hash: 1000})
    assert plan == [BlobTransfer(a, 1000)]


def test_chunks_and_questions_are_bounded() -> None:
    ref = ref_of(photo(3000))
    BlobChunk(ref, 2000, b"x" * 1000).check(SMALL)
    with pytest.raises(LimitExceededError, match="blob_chunk_bytes"):
        BlobChunk(ref, 0, b"x" * 1001).check(SMALL)
    with pytest.raises(BlobError, match="outside"):
        BlobChunk(ref, 2500, b"x" * 1000).check(SMALL)
    with pytest.raises(BlobError, match="outside"):
        BlobChunk(ref, 0, b"").check(SMALL)
    with pytest.raises(LimitExceededError, match="max_blob_bytes"):
        BlobChunk(ref_of(photo(60_000)), 0, b"x").check(SMALL)
    with pytest.raises(LimitExceededError, match="at most"):
        check_hashes([bytes(32)] * (MAX_LANE_QUERY + 1))
    with pytest.raises(BlobError):
        check_hashes([b"short"])
    assert check_hashes([bytes(32)]) == [bytes(32)]


# -- sync_blobs between replicas ------------------------------------------------------


class Flaky(ReplicaBlobPeer):
    """A peer whose link breaks after ``budget`` chunk bytes, and counts what came."""

    def __init__(self, replica: Replica, budget: int = 1 << 30) -> None:
        super().__init__(replica)
        self.budget, self.sent, self.corrupt = budget, 0, False

    def put_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        if self.sent + len(data) > self.budget:
            raise TransportError("link broken")
        self.sent += len(data)
        return super().put_chunk(ref, offset, data)

    def get_chunk(self, ref: BlobRef, offset: int, length: int) -> bytes:
        data = super().get_chunk(ref, offset, length)
        if self.corrupt and ref.size == 4000:
            data = bytes([data[0] ^ 1]) + data[1:]
        self.sent += len(data)
        return data


def test_push_resumes_from_the_held_offset_and_dedups_by_hash() -> None:
    a, b = replica(A), replica(B)
    face = photo(4500)
    ref = a.put_blob(face, "image/jpeg")
    a.put("people", "p1", {"photo": ref.field()})
    a.put("people", "p2", {"photo": ref.field()})  # the same photo twice
    records(a, b)
    assert b.get("people", "p1") is not None and b.missing_blobs().count == 1
    peer = Flaky(b, budget=2500)
    with pytest.raises(TransportError):
        sync_blobs(a, peer, pull=False)
    assert b.held_blobs([ref.hash]) == {ref.hash: 2000}  # two whole chunks held
    peer.budget = 1 << 30
    report = sync_blobs(a, peer, pull=False)
    assert report.sent == 1 and report.sent_bytes == 2500 and report.ok
    assert peer.sent == 4500  # every byte crossed once, despite the break
    assert b.open_blob(ref).read() == face and b.missing_blobs().count == 0
    again = sync_blobs(a, peer, pull=False)
    assert again.sent == 0 and again.sent_bytes == 0


def test_pull_refuses_a_corrupt_blob_whole_and_takes_the_others() -> None:
    a, b = replica(A), replica(B)
    bad, good, empty = a.put_blob(photo(4000)), a.put_blob(photo(1500, 3)), a.put_blob(b"")
    a.put("people", "p1", {"photo": bad.field(), "sig": good.field(), "e": empty.field()})
    records(a, b)
    peer = Flaky(a)
    peer.corrupt = True
    report = sync_blobs(b, peer, push=False)
    assert report.received == 2 and [h for h, _ in report.refused] == [bad.hex]
    assert "hash" in report.refused[0][1]
    assert b.has_blob(good) and b.has_blob(empty) and not b.has_blob(bad)
    assert b.held_blobs([bad.hash]) == {}  # dropped whole
    assert b.missing_blobs().blobs == {bad}
    peer.corrupt = False
    assert sync_blobs(b, peer, push=False).received == 1
    assert b.open_blob(bad).read() == photo(4000)


def test_a_peer_takes_no_blob_its_records_do_not_reference() -> None:
    a, b = replica(A), replica(B)
    ref = a.put_blob(photo(1200))
    a.put("people", "p1", {"photo": ref.field()})
    report = sync_blobs(a, ReplicaBlobPeer(b))  # b has not got the record
    assert report.sent == 0 and report.refused and "references" in report.refused[0][1]
    assert b.blob_store.blobs() == []


def test_sync_over_a_loopback_carries_blobs_after_the_records() -> None:
    from offsync.sync import sync
    from offsync.transports.memory import LoopbackTransport

    a, b = replica(A), replica(B)
    face = photo(2500, 7)
    ref = a.put_blob(face, "image/jpeg")
    a.put("people", "p1", {"photo": ref.field()})
    report = sync(a, LoopbackTransport(b))
    assert report.ok and report.blobs is not None and report.blobs.sent == 1
    assert b.open_blob(ref).read() == face
    c = replica(Identity(bytes([9]) * 32, "site-c"))
    pulled = sync(c, LoopbackTransport(b))
    assert pulled.blobs is not None and pulled.blobs.received == 1 and c.has_blob(ref)
