"""Applying bundles: running ``offsync.plan.apply`` in one transaction per bundle."""

from __future__ import annotations

import dataclasses
import gc
import logging
import operator
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..bundle import Bundle, open_bundle
from ..change import ERASE, Change, ChangeId
from ..encoding import packb
from ..errors import StorageConflictError, StorageError
from ..plan import erasure
from ..plan.apply import ApplyContext, SegmentPlan, Verdict, kept_forks, own_returned, plan_segments
from ..plan.claims import cut_own, kept_receipts, raised_claim
from ..receipt import Receipt
from ..scope import new_stream
from ..segindex import HeldSegment, SegmentIndex, Stream, own_meta
from ..segment import AnySegment, decode_segment
from ..status import Status
from ..stores.base import SegmentRow
from ..trust import TRUST_COLLECTION
from .examine import _Examining, _log_evicted
from .redacting import FALSE_COMMITMENT
from .scoping import _Scoping
from .sealing import _Sealing
from .state import OwnSeqs
from .types import ApplyReport

__all__: list[str] = []

log = logging.getLogger("offsync")
_COLLECTION = operator.itemgetter(3)  # of a Change
_FIELDS = operator.itemgetter(6)  # of a Change
_OP = operator.itemgetter(5)  # of a Change
#: Changes an apply decodes before writing them (inside the bundle's one transaction):
#: bounds apply memory by this rather than by the bundle's size.
APPLY_CHUNK = 50_000
#: ... and bytes: the decoded field bytes of those changes and the encoded segments to
#: store with them. A backlog of small records (~160 bytes of fields) reaches
#: ``APPLY_CHUNK`` first and writes as before; records heavy with blob references (an
#: ID-card recording's 14 are ~900 bytes) are written every ~6,000, so a 16 MiB bundle
#: of them no longer decodes whole before its first write (issue 14, the courier
#: backlog).
APPLY_CHUNK_BYTES = 8 << 20
#: Tries at applying one bundle to a shared store when another writer got in the way.
SHARED_APPLY_ATTEMPTS = 8


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a bundle is applied.

    Decoding and merging a chunk allocates several objects per change (tuples, maps,
    lists) and none of them form cycles, yet each burst of allocations makes the
    collector walk everything still alive, the chunk included: about a tenth of a
    backlog's apply time. Reference counting still frees everything as usual.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(slots=True)
class _Run:
    """What one apply has planned so far and not yet written (``rows``, ``merge``), and
    what it has stored."""

    rows: list[SegmentRow] = field(default_factory=list)
    merge: list[Change] = field(default_factory=list)
    size: int = 0  # bytes of ``rows`` and ``merge`` (``APPLY_CHUNK_BYTES``)
    stored: list[tuple[Stream, HeldSegment]] = field(default_factory=list)
    conflicts: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered set
    forks: list[AnySegment] = field(default_factory=list)
    max_hlc: int = 0
    due: int | None = None
    trust_touched: bool = False
    #: Own unsealed changes taken back for an own sealed segment at their seqs, to be
    #: issued again under fresh seqs (``_Applying._give_way``); None: none taken.
    displaced: dict[Stream, list[Change]] = field(default_factory=dict)
    own: set[Change] = field(default_factory=set)  # own changes in the segments stored
    #: Own sealed segments unsealed for another cut a peer holds (``plan.drops``), as
    #: (stream, first, first) for ``SegmentIndex.updated``, and per own stream the seq
    #: sealed below them (absent: none unsealed).
    dropped: list[tuple[Stream, int, int]] = field(default_factory=list)
    sealed: dict[Stream, int] = field(default_factory=dict)
    #: Records that admitted erase orders of this bundle erase (``_Redacting``).
    erasing: set[tuple[str, str]] = field(default_factory=set)

    @property
    def full(self) -> bool:
        """Whether the chunk staged so far is due to be written (``_flush``)."""
        return len(self.merge) >= APPLY_CHUNK or self.size >= APPLY_CHUNK_BYTES


class _Applying(_Examining, _Sealing, _Scoping):
    def apply(self, data: bytes) -> ApplyReport:
        """Verify and apply one bundle; all of it or, on any error, none of it."""
        bundle = open_bundle(data, self.identity, self.limits)
        with self._lock, _gc_paused():
            if self.store.shared:
                report, run, dropped = self._apply_shared(bundle)
            else:
                with self._transaction():
                    report, run, dropped = self._apply_bundle(bundle, _drained(bundle))
            # The bundle is applied whatever happens now (see ``_after_commit``).
            _log_evicted(dropped)
            st = self._st
            due = st.clock_due is not None and self._wall() >= st.clock_due
            if due or run.trust_touched or st.pending is not None:
                try:
                    report.unlocked = self._reexamine()
                except Exception as exc:
                    log.warning(
                        "a bundle was applied, but re-examining held changes after it failed"
                        " and will be tried again after the next write or bundle: %s: %s",
                        type(exc).__name__,
                        exc,
                        exc_info=not isinstance(exc, StorageError),
                    )
            self._seal_erased()  # own puts of records erased by it or by a re-examination
            return report

    @contextmanager
    def group_commit(self) -> Iterator[ApplyGroup]:
        """One transaction for many bundles (a group commit: the upload spool's applier,
        docs/scale.md): ``group.apply(datas)`` inside the block applies them, and what
        else the caller writes on the store in the block (marking its spool rows applied)
        commits with them, all or nothing. Any error rolls everything back; the caller
        then applies the bundles one by one (``apply``) to find the one refused."""
        with self._lock, _gc_paused():
            group = ApplyGroup(self)
            with self._transaction():
                yield group
            # Committed: what ``apply`` does after its commit, once for the group.
            for dropped in group.dropped:
                _log_evicted(dropped)
            st = self._st
            due = st.clock_due is not None and self._wall() >= st.clock_due
            if due or group.trust_touched or st.pending is not None:
                try:
                    self._reexamine()
                except Exception as exc:
                    log.warning(
                        "bundles were applied, but re-examining held changes after them"
                        " failed and will be tried again after the next write or bundle:"
                        " %s: %s",
                        type(exc).__name__,
                        exc,
                        exc_info=not isinstance(exc, StorageError),
                    )
            self._seal_erased()

    def _apply_shared(self, bundle: Bundle) -> tuple[ApplyReport, _Run, tuple[int, int]]:
        """Apply a bundle to a store that other processes write at the same time.

        The in-memory segment index may be stale here (other workers add segments), so in
        one transaction: lock the bundle's origins (bundles of other origins go on in
        parallel), re-read from the store the segments around the bundle's seq ranges,
        and only then decide duplicates and forks and write; ``_merge`` locks each record
        it recomputes. A transaction that lost a race (deadlock) is rolled back, its
        working state dropped, and tried again.
        """
        origins = sorted({seg.origin for seg in bundle.segments})
        spans = [(seg.stream, seg.first_seq, seg.last_seq) for seg in bundle.segments]
        for attempt in range(SHARED_APPLY_ATTEMPTS):
            try:
                with self._transaction():
                    self.store.lock_origins(origins)
                    self._reload_near(spans)
                    return self._apply_bundle(bundle)
            except StorageConflictError:
                if attempt + 1 == SHARED_APPLY_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise AssertionError("unreachable")

    def _reload_near(self, spans: Sequence[tuple[Stream, int, int]]) -> None:
        """Make the index hold what the store holds around these seq ranges: what deciding
        on a segment there reads (``SegmentIndex.find`` and ``chain_problem``). Segments are
        never deleted, so entries elsewhere are real, if perhaps not all there are."""
        st = self._st
        rows = self.store.segment_index_near(spans)
        self._put(st._replace(segments=st.segments.updated(drop=spans, rows=rows)))

    def _apply_bundle(
        self, bundle: Bundle, segments: Iterable[AnySegment] | None = None
    ) -> tuple[ApplyReport, _Run, tuple[int, int]]:
        """Verify, decode and write the bundle's segments (or ``segments``, the bundle's
        as ``_drained``), inside the caller's transaction.

        Segments are written and merged every ``APPLY_CHUNK`` changes or
        ``APPLY_CHUNK_BYTES`` inside that transaction, so memory is bounded by the
        chunk, not by the bundle; any error rolls the whole bundle back (and drops the
        working state with it).
        """
        report = ApplyReport(bundle.id, bundle.header.sender, ranges=self._held(bundle))
        run = _Run()
        ctx = self._apply_context()
        held = self._in_scope(bundle.segments if segments is None else segments, report)
        for plan in plan_segments(held, ctx):
            self._take(plan, run, report)
            if run.full:
                self._flush(run)
        self._flush(run)
        report.conflicts = list(run.conflicts)
        dropped = self._finish(bundle.header.receipts, run, report, _direct(bundle))
        return report, run, dropped

    def _apply_context(self) -> ApplyContext:
        """What an apply is judged against, per own stream (``plan.apply``)."""
        st = self._st
        owns = {s: (m.seq, m.sealed) for s, m in st.own.items()}
        rules = self._rules(st.trust)
        return ApplyContext(None, 0, st.segments, rules, self.store.changes_for, 0, self.id, owns)

    def _take(self, plan: SegmentPlan, run: _Run, report: ApplyReport) -> None:
        """Count one segment's plan, and stage what it stores and merges."""
        seg = plan.segment
        if plan.verdict is Verdict.REFUSE:
            assert plan.error is not None
            raise plan.error
        if plan.drops:
            self._unseal(seg.stream, plan.drops, run)
        if plan.verdict is Verdict.DUPLICATE:
            report.duplicates += seg.count
            return
        if plan.verdict is Verdict.FORK:  # kept as evidence; the store holds one per position
            erased = self._st.erased | run.erasing
            done = erasure.redact(seg, plan.opened, erased, level=self.level, limits=self.limits)
            run.forks.append(seg if done is None or done.false_commitment else done.segment)
            report.quarantined += seg.count
            return
        if plan.displaces and seg.stream not in run.displaced:
            run.displaced[seg.stream] = self._give_way(seg.stream, run)
        seg, merged, status = self._arriving(plan, run)
        plan = dataclasses.replace(plan, merge=merged, status=status)
        encoded = seg.encode()
        run.rows.append(
            SegmentRow(
                seg.stream,
                seg.first_seq,
                seg.last_seq,
                plan.hash,
                seg.prev_hash,
                encoded,
                str(plan.status),
            )
        )
        entry = HeldSegment(
            seg.first_seq, seg.last_seq, plan.hash, seg.prev_hash, plan.status, len(encoded)
        )
        run.stored.append((seg.stream, entry))
        run.merge.extend(plan.merge)
        run.size += len(encoded) + sum(map(len, filter(None, map(_FIELDS, plan.merge))))
        if seg.origin == self.id:
            run.own.update(plan.merge)
        report.applied += len(plan.merge)
        report.quarantined += seg.count - len(plan.merge)
        run.max_hlc = max(run.max_hlc, plan.max_hlc)
        if plan.due is not None:
            run.due = plan.due if run.due is None else min(run.due, plan.due)

    def _arriving(
        self, plan: SegmentPlan, run: _Run
    ) -> tuple[AnySegment, Sequence[Change], Status]:
        """What erasure makes of an arriving segment (``erasure.on_arrival``): the form
        to store (redacted when it holds puts of erased records, never whole), its
        changes to merge (those puts as stubs) and its status. Nothing to do, and no
        pass over its changes, unless records are erased here or it carries an order."""
        erased = self._st.erased | run.erasing
        merged = plan.merge
        if not erased and ERASE not in set(map(_OP, merged)):
            return plan.segment, merged, plan.status
        ids = {c.id for c in merged}
        arrival = erasure.on_arrival(
            plan.segment,
            plan.opened,
            erased,
            lambda c: c.id in ids,
            level=self.level,
            limits=self.limits,
        )
        run.erasing |= arrival.newly_erased
        done = arrival.redaction
        if done is None:
            return plan.segment, merged, plan.status
        if done.false_commitment:  # kept whole as evidence; none of it is applied
            return plan.segment, (), FALSE_COMMITMENT
        gone = {plan.opened[i].id for i in done.rows}
        merged = [c._replace(fields=None) if c.id in gone else c for c in merged]
        return done.segment, merged, plan.status

    def _flush(self, run: _Run) -> None:
        self.store.add_segments(run.rows)
        run.conflicts.update(dict.fromkeys(self._merge(run.merge)))
        run.trust_touched = run.trust_touched or TRUST_COLLECTION in set(
            map(_COLLECTION, run.merge)
        )
        run.rows.clear()
        run.merge.clear()
        run.size = 0

    def _finish(
        self,
        receipts: Sequence[Receipt],
        run: _Run,
        report: ApplyReport,
        direct: frozenset[tuple[bytes, int]] = frozenset(),
    ) -> tuple[int, int]:
        """Write what follows from the whole bundle and advance the working state."""
        st = self._st
        forks = self._record_forks(run.forks) if run.forks else st.forks
        index = st.segments.updated(drop=run.dropped, add=run.stored)
        streams = {*st.own, *run.sealed, *(o for o, _ in run.stored if o.origin == self.id)}
        for r in receipts:
            streams.update(new_stream(self.id, p) for p in r.knowledge.partitions(self.id))
        own_seqs = dict(st.own)
        for stream in sorted(streams):
            index = self._unseal_cut(stream, receipts, run, index)
            mine = st.seqs(stream)
            sealed = run.sealed.get(stream, mine.sealed)
            stored = ((o, s.last, s.status) for o, s in run.stored)
            own = own_returned(stored, stream, sealed)
            claim = raised_claim(mine.claim, receipts, stream, st.trust)
            seq = max(own, mine.seq)
            part = stream.partition
            if own:  # our own changes, lost in a restore, came back
                self.store.clear_outbox(part, own)  # they are sealed now, by us, before the loss
                if run.displaced.get(stream):  # ours at their seqs give way, and come after
                    seq = self._issue_again(stream, run, max(own, claim)) or seq
                self.store.set_meta(own_meta("seq", part), str(seq).encode())
                self.store.set_meta(own_meta("sealed", part), str(own).encode())
            elif stream in run.sealed:  # own sealed segments were unsealed
                self.store.set_meta(own_meta("sealed", part), str(sealed).encode())
            now = OwnSeqs(seq, own or sealed, claim)
            if now != mine:
                own_seqs[stream] = now
        kept = kept_receipts(receipts, self.id)
        if self.store.shared:  # read-modify-write of each signer's union: one at a time
            self.store.lock_peers([r.replica for r in kept])
        for receipt in kept:
            if self._keep_receipt(receipt, direct=(receipt.replica, receipt.created) in direct):
                report.receipts += 1
        if run.max_hlc > st.hlc:
            self.store.set_meta("hlc", str(run.max_hlc).encode())
        self._put(
            st._replace(
                segments=index,
                own=own_seqs,
                hlc=max(st.hlc, run.max_hlc),
                forks=forks,
                clock_due=_earliest(st.clock_due, run.due),
            )
        )
        if run.erasing:  # what the bundle stored before its orders came is redacted now
            self._erase_records(run.erasing)
        return self._bound_unknown([o.origin for o, _ in run.stored], run.trust_touched)

    def _unseal(self, stream: Stream, drops: Sequence[HeldSegment], run: _Run) -> None:
        """Unseal the own sealed segments that give way to another cut of this site's
        history a peer holds (``plan.apply.own_cut_gives_way``): the segments go, their
        changes stay and are unsealed again at their seqs (outbox rows), and the sealed
        seq falls below them, as if restored from a backup taken before they were
        sealed; the rules for unsealed own changes then take over."""
        keys = [(stream, d.first) for d in drops]
        rows: list[tuple[int, bytes]] = []
        for data in self.store.segment_data(keys):
            rows += (
                (c.seq, c.to_row())
                for c in decode_segment(data, self.limits).open_changes(self.limits)
            )
        self.store.remove_segments(keys)
        self.store.add_outbox(stream.partition, rows)
        run.dropped += [(stream, d.first, d.first) for d in drops]
        low = drops[0].first - 1
        run.sealed[stream] = min(run.sealed.get(stream, low), low)
        log.warning(
            "own sealed seqs %d..%d are unsealed again: another cut of this site's history"
            " that a peer holds overlaps them (a restore from a backup whose segments"
            " never left)",
            drops[0].first,
            drops[-1].last,
        )

    def _unseal_cut(
        self, own: Stream, receipts: Sequence[Receipt], run: _Run, index: SegmentIndex
    ) -> SegmentIndex:
        """Unseal the own tail from the lowest own segment that a counted receipt of
        this bundle cuts (``plan.claims.cut_own``): the peer holds another cut there.
        ``index``: the segments held after this bundle; returned without the tail."""
        first = cut_own(index, own, kept_receipts(receipts, self.id), self._st.trust)
        if not first:
            return index
        tail = tuple(s for s in index.get(own, ()) if s.last >= first)
        stored = {s.first for o, s in run.stored if o == own}
        if any(s.first in stored or not s.status.applied for s in tail):
            return index  # what this bundle stored is the peer's: the next bundle tells
        self._unseal(own, tail, run)
        return index.updated(drop=[(own, s.first, s.first) for s in tail])

    def _give_way(self, own: Stream, run: _Run) -> list[Change]:
        """Take back the own unsealed changes (``plan.apply.displaces_unsealed``) above
        the own segments this bundle stored so far (those came back as they are): their
        changes and outbox rows, before the segment at their seqs is merged. Returned in
        seq order for ``_issue_again``; the records are recomputed when they are merged
        again (in this transaction, so a failure rolls both back)."""
        mine = self._st.seqs(own)
        sealed = run.sealed.get(own, mine.sealed)
        taken: list[Change] = []
        after = max([sealed, *(s.last for o, s in run.stored if o == own)])
        while page := self.store.outbox_page(own.partition, after, 10_000):
            taken += (Change.from_row(self.id, seq, bytes(row)) for seq, row in page)
            after = page[-1][0]
        self.store.remove_changes(taken)
        # Every outbox row goes: those at or below ``after`` are in segments stored now.
        self.store.clear_outbox(own.partition, mine.seq)
        self._recent.pop(own, None)  # sealing must not take the old changes from memory
        return taken

    def _issue_again(self, own: Stream, run: _Run, claimed: int) -> int:
        """Issue the changes ``_give_way`` took back under fresh seqs after ``claimed``
        (the highest own seq the world may hold), in their order, with their clocks,
        contents and parents (a parent among them renamed with it); returns the own seq
        now issued (0: none issued). They never left this site, so no peer knows their
        old seqs."""
        renamed: dict[ChangeId, ChangeId] = {}
        fresh: list[Change] = []
        # One the sealed history holds as it is (sealed in the abandoned timeline, with
        # others that differ) is not issued twice.
        again = [c for c in run.displaced.get(own, ()) if c not in run.own]
        for i, c in enumerate(again, start=claimed + 1):
            parents = tuple(renamed.get(p, p) for p in c.parents)
            new = c._replace(seq=i, parents=parents)
            renamed[c.id] = new.id
            fresh.append(new)
        if not fresh:
            return 0
        run.conflicts.update(dict.fromkeys(self._merge(fresh)))
        self.store.add_outbox(own.partition, [(c.seq, c.to_row()) for c in fresh])
        log.warning(
            "own changes this site held unsealed gave way to its own sealed history a"
            " peer holds at their seqs (a restore from an older backup): %d issued"
            " again as seqs %d..%d",
            len(fresh),
            fresh[0].seq,
            fresh[-1].seq,
        )
        return fresh[-1].seq

    def _record_forks(self, segs: Sequence[AnySegment]) -> tuple[AnySegment, ...]:
        """Keep (a bounded number of) validly signed segments that fork a held one;
        returns the evidence held now."""
        held = self._st.forks
        if self.store.shared:  # other processes may have kept some since this one looked
            held = self._stored_forks()
        forks = kept_forks(held, segs)
        if forks is None:
            return held
        self.store.set_meta("forks", packb([s.encode() for s in forks]))
        return forks


class ApplyGroup:
    """The bundles of one ``group_commit``; ``apply`` may be called several times."""

    def __init__(self, replica: _Applying) -> None:
        self._replica = replica
        self.dropped: list[tuple[int, int]] = []
        self.trust_touched = False

    def apply(self, datas: Sequence[bytes]) -> ApplyReport:
        """Verify and apply these bundles in the group's transaction, as if they were
        one bundle carrying all their segments and receipts, in order: one pass of
        planning, one write of the segments and one merge for all of them (statements
        per group, not per bundle). What one bundle could not carry (two overlapping
        segments of one origin: ``ForkError``) fails the group; the caller then
        applies them one by one. The report counts the whole group.

        On a shared store their origins are locked together (sorted, so two groups lock
        common origins in one order) and the segments around their ranges read once.
        """
        r = self._replica
        bundles = [open_bundle(d, r.identity, r.limits) for d in datas]
        segments = [s for b in bundles for s in b.segments]
        if r.store.shared:
            r.store.lock_origins(sorted({s.origin for s in segments}))
            r._reload_near([(s.stream, s.first_seq, s.last_seq) for s in segments])
        report = ApplyReport(bundles[0].id, bundles[0].header.sender)
        run = _Run()
        ctx = r._apply_context()
        for plan in plan_segments(r._in_scope(segments, report), ctx):
            r._take(plan, run, report)
            if run.full:
                r._flush(run)
        r._flush(run)
        report.conflicts = list(run.conflicts)
        receipts = [rc for b in bundles for rc in b.header.receipts]
        direct = frozenset().union(*map(_direct, bundles))
        self.dropped.append(r._finish(receipts, run, report, direct))
        self.trust_touched = self.trust_touched or run.trust_touched
        return report


def _drained(bundle: Bundle) -> Iterator[AnySegment]:
    """The bundle's segments, each let go by the bundle as it is taken: applied once (a
    shared store's apply may run again, and keeps them), a segment's bytes then live on
    in its chunk's rows until they are written, not to the end of the bundle."""
    segments = bundle.segments
    assert isinstance(segments, list)
    segments.reverse()
    while segments:
        yield segments.pop()


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _direct(bundle: Bundle) -> frozenset[tuple[bytes, int]]:
    """The receipts of ``bundle`` its sender signed (its own, first): its word to the
    receiver it packed for, taken as it is (``plan.receipts.heard_union``)."""
    sender = bundle.header.sender
    return frozenset((r.replica, r.created) for r in bundle.header.receipts if r.replica == sender)
