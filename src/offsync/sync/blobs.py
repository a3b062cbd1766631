"""Run the blob lane against a peer, after the bundle round (``offsync.lane``).

Push: the blobs held here that visible records reference, minus what the peer holds,
each sent in chunks from the offset the peer holds (an interrupted upload resumes
there). Pull: the blobs our records reference and we lack that the peer holds whole,
as the site's fetch policy asks (``Replica.blobs_to_fetch``: demanded blobs first, the
rest only when eager), each fetched in chunks from the offset we hold. A blob either side refuses (a corrupt
chunk, a blob no record of the peer references) is reported and skipped: the lane
never stops for one blob, and records never wait for any.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..blobs import BlobRef
from ..errors import BlobError, LimitExceededError, MissingBlobError, PeerRefusedError
from ..lane import (
    MAX_LANE_QUERY,
    BlobPeer,
    BlobTransfer,
    LaneReport,
    to_fetch,
    to_send,
    transfer_spans,
)
from ..readable import blobs_in_scope
from ..replica import Replica
from ..scope import Scope
from ..transports.memory import ReplicaBlobPeer

__all__ = ["BlobPeer", "ReplicaBlobPeer", "sync_blobs"]

#: What refusing one blob may raise: reported, and the lane goes on with the next.
_REFUSALS = (BlobError, LimitExceededError, MissingBlobError, PeerRefusedError)


def _held(peer: BlobPeer, hashes: list[bytes]) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    for i in range(0, len(hashes), MAX_LANE_QUERY):
        out.update(peer.held(hashes[i : i + MAX_LANE_QUERY]))
    return out


def sync_blobs(
    replica: Replica,
    peer: BlobPeer,
    *,
    push: bool = True,
    pull: bool = True,
    scope: Scope | None = None,
) -> LaneReport:
    """Move the blobs each side lacks (push first, then pull); what moved and what was
    refused. Transport failures (a broken link) propagate: the next run resumes.
    ``scope``: the peer's read scope (None: everything); only blobs a visible record in
    it refers to are offered (``offsync.readable.blobs_in_scope``)."""
    report = LaneReport()
    chunk = max(1, min(peer.chunk_bytes, replica.limits.blob_chunk_bytes))
    if push:
        for offered in offered_batches(replica, scope=scope):
            theirs = _held(peer, [r.hash for r in offered])
            for t in to_send(offered, theirs):
                _refusing(report, t.ref, lambda t=t: _push_one(replica, peer, t, chunk, report))
    if pull:  # by the site's fetch policy: demanded blobs first, then (eager) the rest
        for wanted in replica.fetch_batches(MAX_LANE_QUERY):
            theirs = _held(peer, [r.hash for r in wanted])
            ours = replica.held_blobs(r.hash for r in wanted)
            for t in to_fetch(wanted, theirs, ours):
                _refusing(report, t.ref, lambda t=t: _pull_one(replica, peer, t, chunk, report))
    return report


def offered_batches(
    replica: Replica, size: int = MAX_LANE_QUERY, *, page: int = 0, scope: Scope | None = None
) -> Iterator[list[BlobRef]]:
    """The blobs held whole here that visible records reference (what the lane offers a
    peer), once per hash, by hash, in batches of at most ``size`` (one question to the
    peer each), read from the store's index ``page`` rows at a time
    (``Replica.referenced_blobs``): what is held is one page and one batch, whatever
    the backlog (benchmarks/courier_recordings.py). ``to_send`` sends a batch smallest
    first. ``scope``: only blobs a visible record in it refers to (None: all)."""
    store = replica.blob_store
    batch: list[BlobRef] = []
    refs: Iterable[BlobRef] = replica.referenced_blobs(page=page)
    if scope is not None:
        refs = blobs_in_scope(replica, refs, scope)
    for ref in refs:
        if store.has(ref.hash):
            batch.append(ref)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


def _refusing(report: LaneReport, ref: BlobRef, move: object) -> None:
    assert callable(move)
    try:
        move()
    except _REFUSALS as exc:
        report.refused.append((ref.hex, f"{type(exc).__name__}: {exc}"))


def _push_one(
    replica: Replica, peer: BlobPeer, t: BlobTransfer, chunk: int, report: LaneReport
) -> None:
    held = t.offset
    if t.ref.size == 0:
        held = peer.put_chunk(t.ref, 0, b"")
    while held < t.ref.size:
        data = replica.read_blob_chunk(t.ref, held, min(chunk, t.ref.size - held))
        now = peer.put_chunk(t.ref, held, data)
        report.sent_bytes += len(data)
        if now <= held:
            raise BlobError(f"blob {t.ref.hex[:16]}: the peer holds no more after a chunk")
        held = now  # the peer's word: a conflicting uploader may have got ahead
    report.sent += 1


def _pull_one(
    replica: Replica, peer: BlobPeer, t: BlobTransfer, chunk: int, report: LaneReport
) -> None:
    held = t.offset
    if t.ref.size == 0:
        held = replica.receive_blob_chunk(t.ref, 0, b"")
    for offset, length in transfer_spans(t, chunk):
        data = peer.get_chunk(t.ref, offset, length)
        if len(data) != length:
            raise BlobError(
                f"blob {t.ref.hex[:16]}: the peer sent {len(data)} bytes at {offset}, not {length}"
            )
        held = replica.receive_blob_chunk(t.ref, offset, data)
        report.received_bytes += len(data)
    if held >= t.ref.size and replica.has_blob(t.ref):
        report.received += 1
