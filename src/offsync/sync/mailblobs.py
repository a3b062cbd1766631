"""The blob lane over a mailbox (a shared folder, a courier disk), after the bundles.

A mailbox is not a live peer: nobody answers "how much of this blob do you hold?". So
the lane runs on what the mailbox carries (docs/design.md "Blobs over folders and
disks"):

* **Take** (pull): every chunk file left for this replica, after the bundles of the
  same round were applied (records first, never waiting for blobs). A chunk is kept
  only for a blob that a visible record here references, of the size that record says;
  the whole blob is verified when its last byte arrives. A file that does not open,
  does not match its name, or belongs to a blob that is refused is set aside with its
  reason and the next file is taken: one bad chunk blocks nothing. A taken file is
  removed, so an import cut short resumes at the next file.
* **Ask**: this replica leaves its **want list** for the peer: the blobs its records
  reference and it lacks, and the bytes it holds of each.
* **Leave** (push): the blobs held here that the peer lacks, as far as this replica
  can tell: those of records the peer's newest receipt does not cover (it has not
  got them, so not their blobs either), and those its newest want list asks for, from
  the offset it holds. Not written again: a chunk file already on the medium, and a
  blob already written to a mailbox for this peer (the **in-transit log**, kept in
  the replica's store) until a newer want list of the peer's (by the peer's clock)
  asks for it again, so the second disk of a backlog carries what the first did not. A full disk
  stops the writing; what was left is counted (``LaneReport.left``).

Trust mode: chunks are left for a peer only of blobs that a visible record in its
certified read scope refers to (``offsync.readable``), and none for a key that may read
nothing, as no bundle is (``offsync.sync.mailbox``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from itertools import islice

from ..blobfile import WantList, decode_chunk, parse_chunk_name, want_capacity
from ..blobs import BlobRef
from ..errors import RemoteDataError
from ..knowledge import Knowledge
from ..lane import BlobChunk, BlobTransfer, LaneReport, transfer_spans
from ..readable import blobs_in_scope
from ..replica import Replica
from ..replica.mailing import LANE_LOG
from ..scope import Scope
from ..transports.blobbox import BlobBox, NoRoom
from .readers import receiver_scope

__all__ = ["IN_TRANSIT", "mail_blobs", "wanted_blobs"]

#: The in-transit log (``Replica.lane_log``): blob hash -> the ``created`` of the
#: peer's newest want list when the blob was last written to a mailbox for it (0: none).
IN_TRANSIT = LANE_LOG


def mail_blobs(
    replica: Replica, box: BlobBox, *, push: bool = True, pull: bool = True
) -> LaneReport:
    """Take the chunks left here, then (with a peer) leave this replica's want list and
    the blobs the peer lacks. What moved, what was refused, what did not fit."""
    report = LaneReport()
    if pull:
        take_chunks(replica, box, report)
    scope = receiver_scope(replica, box.peer) if push and box.peer is not None else None
    if scope:
        box.clean_temps()
        try:
            box.write_want(wanted_blobs(replica))
            leave_chunks(replica, box, report, scope)
        except NoRoom:
            pass  # counted in report.left by leave_chunks, or nothing written at all
        finally:
            box.flush()
    return report


# -- taking ----------------------------------------------------------------------------


def take_chunks(replica: Replica, box: BlobBox, report: LaneReport) -> None:
    """Keep every chunk left for this replica that one of its records wants and its
    fetch policy takes; the chunks of blobs it does not fetch are removed unread."""
    wanted = _fetched_size(replica)
    for path in box.stray_files():
        box.set_aside(path, "not a chunk file name: not read")
    for path in box.chunk_files():
        named = parse_chunk_name(path.name)
        assert named is not None
        try:
            chunk = decode_chunk(
                box.read(path), replica.id, replica.identity.unseal, replica.limits
            )
            if chunk.ref.hash.hex()[:32] != named[0] or chunk.offset != named[1]:
                raise RemoteDataError("its contents are not the chunk its name says")
        except (OSError, RemoteDataError) as exc:
            _refuse(box, report, path, named[0], exc)
            continue
        size = wanted(chunk.ref.hash)
        if size is None:
            if replica.has_blob(chunk.ref) or replica.blob_fetch != "eager":
                # Held already (sent twice, or by two senders), or not fetched here:
                # a lazy or "none" site takes only what it asked for.
                box.remove(path)
            else:
                why = RemoteDataError("no visible record here references this blob")
                _refuse(box, report, path, named[0], why)
            continue
        ref = chunk.ref
        try:
            if ref.size != size:
                raise RemoteDataError(
                    f"the chunk says the blob has {ref.size} bytes, its record {size}"
                )
            held = replica.receive_blob_chunk(ref, chunk.offset, chunk.data)
        except RemoteDataError as exc:  # BlobError (the whole blob dropped), limits
            _refuse(box, report, path, named[0], exc)
            continue
        box.remove(path)
        report.received_bytes += len(chunk.data)
        if held >= ref.size:
            report.received += 1


def _fetched_size(replica: Replica) -> Callable[[bytes], int | None]:
    """The size a record here gives a blob this replica lacks and fetches (every one
    when ``eager``, those asked for when ``lazy``, none when ``none``), or None. Eager,
    it asks the store's index per chunk (``Store.first_blob_ref``), so that a district
    importing 218,400 blobs holds no map of them."""
    store = replica.blob_store
    if replica.blob_fetch == "eager":

        def eager(digest: bytes) -> int | None:
            if store.has(digest):
                return None
            ref = replica.first_blob_ref(digest)
            return None if ref is None else ref.size

        return eager
    first, _ = replica.blobs_to_fetch()  # the demanded: at most MAX_BLOB_DEMANDS
    sizes = {r.hash: r.size for r in first}

    def asked(digest: bytes) -> int | None:
        return None if store.has(digest) else sizes.get(digest)

    return asked


def _refuse(box: BlobBox, report: LaneReport, path: object, prefix: str, exc: Exception) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    box.set_aside(path, reason)  # type: ignore[arg-type]
    report.refused.append((prefix, reason))


# -- asking ----------------------------------------------------------------------------


def wanted_blobs(replica: Replica) -> WantList:
    """This replica's want list: the blobs its visible records reference, it lacks and
    its fetch policy takes, with the bytes it holds of each (at most what one list
    holds; the rest next time)."""
    cap = want_capacity(replica.limits)
    if replica.blob_fetch == "eager":  # the first of the index's missing, by hash
        refs = islice(replica.referenced_blobs(missing=True), cap)
        missing = [(r.hash, r.size) for r in refs]
    else:
        first, _ = replica.blobs_to_fetch()
        missing = sorted({r.hash: r.size for r in first}.items())[:cap]
    held = replica.held_blobs(h for h, _ in missing)
    return WantList(
        replica.id,
        int(time.time() * 1000),
        {h: min(held.get(h, 0), size) for h, size in missing},
    )


# -- leaving ---------------------------------------------------------------------------


def _peer_lacks(
    replica: Replica, peer: bytes, want: WantList | None, scope: Scope | None = None
) -> Iterator[BlobRef]:
    """References of visible records the peer's receipt does not cover, and those its
    want list names (once per hash, held whole here or not); with ``scope``, only those
    a visible record in it refers to (what the peer may read)."""
    receipt = replica.receipts().get(peer)
    known = receipt.knowledge if receipt is not None else Knowledge()
    asked = frozenset(want.held) if want is not None else frozenset()
    lacking = replica.blobs_beyond(known, asked)
    return lacking if scope is None else blobs_in_scope(replica, lacking, scope)


def leave_chunks(
    replica: Replica, box: BlobBox, report: LaneReport, scope: Scope | None = None
) -> None:
    """Write the chunks of the blobs the peer lacks that are not on their way already,
    record by record (a recording's blobs travel together), a page of the index at a
    time (``Replica.blobs_beyond``). The in-transit log is searched where it is stored
    (entries sorted by hash) and the new one written in sorted runs merged at the end:
    what is held is a page, the log as stored and the log being written (40 bytes per
    blob in transit), never a set or map of every blob."""
    peer = box.peer
    assert peer is not None
    want = box.read_want(replica.identity.unseal)
    asked = want.held if want is not None else {}
    old = TransitLog(replica.lane_log(peer))
    new = LogWriter()  # the entries of the blobs the peer still lacks
    # The peer's clock, not ours: a blob written when the peer's newest want list was
    # of time T is written again only for a want list of the peer's after T.
    stamp = want.created if want is not None else 0
    chunk = replica.limits.blob_chunk_bytes
    pending = _peer_lacks(replica, peer, want, scope)
    try:
        for ref in pending:
            sent = old.get(ref.hash)
            if not replica.has_blob(ref) or (
                sent is not None
                and not (want is not None and ref.hash in asked and want.created > sent)
            ):
                new.add(ref.hash, sent)  # not held here, or on its way (another disk)
                continue
            t = BlobTransfer(ref, min(asked.get(ref.hash, 0), ref.size))
            try:
                report.sent_bytes += _leave_one(replica, box, t, chunk)
            except NoRoom:
                new.add(ref.hash, sent)
                _count_left(replica, t, pending, old, report)
                raise
            new.add(ref.hash, stamp)
            report.sent += 1
    finally:
        # Entries of blobs the peer no longer lacks go; an export cut short keeps all.
        cut = report.left != 0 or _cut_short(pending)
        replica.set_lane_log(peer, new.finish(old.raw if cut else b""))


def _cut_short(pending: Iterator[BlobRef]) -> bool:
    return next(pending, None) is not None


def _count_left(
    replica: Replica,
    first: BlobTransfer,
    pending: Iterator[BlobRef],
    old: TransitLog,
    report: LaneReport,
) -> None:
    """What did not fit on the disk: the blob that was being written and the rest."""
    report.left, report.left_bytes = 1, first.remaining
    for ref in pending:
        if old.get(ref.hash) is None and replica.has_blob(ref):
            report.left += 1
            report.left_bytes += ref.size


def _leave_one(replica: Replica, box: BlobBox, t: BlobTransfer, chunk: int) -> int:
    """Write one blob's chunks not on the medium yet; the data bytes written."""
    written = 0
    spans = list(transfer_spans(t, chunk)) if t.ref.size else [(0, 0)]
    for offset, length in spans:
        if box.present(t.ref.hash, offset):
            continue
        data = replica.read_blob_chunk(t.ref, offset, length) if length else b""
        box.write_chunk(BlobChunk(t.ref, offset, data))
        written += length
    return written


# -- the in-transit log ------------------------------------------------------------------

_HASH = 32
_LOG_ENTRY = _HASH + 8  # blob hash, then the stamp (u64 big-endian)


class TransitLog:
    """The in-transit log as stored (``Replica.lane_log``): entries of a blob hash and
    a stamp, sorted by hash, searched in place (no entry is unpacked into a map)."""

    def __init__(self, raw: bytes) -> None:
        # Local state that cannot be read only costs a second copy.
        self.raw = raw if len(raw) % _LOG_ENTRY == 0 else b""

    def __len__(self) -> int:
        return len(self.raw) // _LOG_ENTRY

    def get(self, digest: bytes) -> int | None:
        """The stamp of ``digest``, or None."""
        raw, lo, hi = self.raw, 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            at = mid * _LOG_ENTRY
            key = raw[at : at + _HASH]
            if key == digest:
                return int.from_bytes(raw[at + _HASH : at + _LOG_ENTRY], "big")
            if key < digest:
                lo = mid + 1
            else:
                hi = mid
        return None


class LogWriter:
    """A new in-transit log, its entries added in any order (each hash once): kept as
    runs of ``run`` entries (default ``LOG_RUN``) sorted by hash, merged by ``finish`` into one log sorted
    by hash, so that no more than a run is ever unpacked."""

    def __init__(self, run: int = 0) -> None:
        self.runs: list[bytes] = []
        self._run: list[bytes] = []
        self._size = run or LOG_RUN

    def add(self, digest: bytes, stamp: int | None) -> None:
        """An entry (none for a None stamp)."""
        if stamp is None:
            return
        self._run.append(digest + stamp.to_bytes(8, "big"))
        if len(self._run) == self._size:
            self._close_run()

    def _close_run(self) -> None:
        if self._run:
            self.runs.append(b"".join(sorted(self._run)))
            self._run = []

    def finish(self, old: bytes = b"") -> bytes:
        """The log: these entries, and those of ``old`` (a log as stored) for hashes
        not among them."""
        self._close_run()
        sources = [_entries(run, 0) for run in self.runs]
        if old and len(old) % _LOG_ENTRY == 0:
            sources.append(_entries(old, 1))
        out = bytearray()
        last = b""
        for digest, _, entry in heapq.merge(*sources):
            if digest != last:  # a new entry stands before an old one of its hash
                out += entry
                last = digest
        return bytes(out)


#: Entries of a new in-transit log sorted at a time (``LogWriter``).
LOG_RUN = 4096


def _entries(log: bytes, rank: int) -> Iterator[tuple[bytes, int, bytes]]:
    for at in range(0, len(log), _LOG_ENTRY):
        yield log[at : at + _HASH], rank, log[at : at + _LOG_ENTRY]
