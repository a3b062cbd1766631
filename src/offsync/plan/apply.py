"""Planning an apply: the verdict on each segment of a bundle, and what follows from it.

``plan_segments`` walks a bundle's segments against the segment index as it was before
the bundle, one at a time (a generator: the executor writes and merges every few
thousand changes, so memory is bounded by that, not by the bundle), and says for each:

* ``DUPLICATE``  — held already (or earlier in this bundle): nothing to do;
* ``APPLY``      — store it as applied and merge every change;
* ``QUARANTINE`` — store it, held with a reason (fork of the chain, clock, trust,
                   validator); merge the changes that are admitted anyway;
* ``FORK``       — a different segment is held at these seqs: kept as evidence only;
* ``REFUSE``     — the whole bundle is refused (bad signature or encoding, two
                   segments of one origin that overlap): the plan stops there.

``own_returned``, ``kept_forks`` and ``offsync.plan.claims`` plan the rest of the
bundle. This module is sans-IO: the one thing it asks of the store, which changes of a
record are held (to tell this site's own changes coming back after a restore from a
fork of it), it asks through a function the executor passes in.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..change import PUT, Change
from ..errors import BundleFormatError, ForkError, RemoteDataError
from ..segindex import HeldSegment, SegmentIndex, Stream
from ..segment import AnySegment
from ..status import APPLIED, FORK_AT_SAME_SEQS, Kind, Status
from .admit import Admission, admit, admitted_part

__all__ = [
    "ApplyContext",
    "HeldChanges",
    "SegmentPlan",
    "Verdict",
    "kept_forks",
    "own_cut_gives_way",
    "own_gap",
    "own_returned",
    "plan_segments",
]

_HLC = operator.itemgetter(2)  # of a Change
#: Segments kept as evidence of forks (see ``Replica.forks``); the oldest are dropped.
MAX_FORK_EVIDENCE = 100
#: The changes held (applied) for a record: ``Store.changes_for``, read-only.
HeldChanges = Callable[[str, str], Sequence[Change]]


class Verdict(enum.Enum):
    APPLY = "apply"
    DUPLICATE = "duplicate"
    QUARANTINE = "quarantine"
    FORK = "fork"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    """The verdict on one segment and what to do about it."""

    verdict: Verdict
    segment: AnySegment
    hash: bytes  # the segment's hash (computed once: it hashes the whole block)
    status: Status = APPLIED  # what the store keeps (APPLY, QUARANTINE), or FORK's reason
    merge: Sequence[Change] = ()  # the changes to apply now
    max_hlc: int = 0  # the largest timestamp among them (the clock moves past it)
    due: int | None = None  # a clock hold: wall ms from which it may be admitted
    error: RemoteDataError | None = None  # REFUSE: what the apply raises
    #: This site's own sealed history, held by a peer, at seqs this site holds only
    #: unsealed with other changes: those give way (``displaces_unsealed``).
    displaces: bool = False
    #: This site's own sealed segments held here that give way to this one, another cut
    #: of its own history that a peer holds (``own_cut_gives_way``): they are dropped
    #: and their changes are unsealed again, at their seqs, before it is judged.
    drops: tuple[HeldSegment, ...] = ()
    #: Every change of the segment, opened (APPLY, QUARANTINE, FORK): what erasure judges.
    opened: Sequence[Change] = ()


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """The replica's state that an apply is judged against."""

    own: Stream | None  # the own stream the segment judged is of (None: not own)
    seq: int  # the highest seq of ``own`` issued
    index: SegmentIndex  # the segments held before the bundle
    rules: Admission
    held_changes: HeldChanges
    sealed: int = 0  # the highest seq of ``own`` sealed (what is above it is unsealed)
    #: This site's key and, per own stream, (seq issued, seq sealed): ``plan_segments``
    #: judges each own segment against its stream's.
    me: bytes = b""
    owns: Mapping[Stream, tuple[int, int]] = dataclasses.field(default_factory=dict)


def _stage_range(staged: list[tuple[int, int]], first: int, last: int) -> None:
    """Add one segment's seq range to a bundle's sorted ranges of its stream; an honest
    sender never packs overlapping segments of one stream, so overlap is a fork."""
    i = bisect.bisect_left(staged, (first, last))
    if (i > 0 and staged[i - 1][1] >= first) or (i < len(staged) and staged[i][0] <= last):
        raise ForkError("bundle carries overlapping segments of one origin")
    staged.insert(i, (first, last))


def plan_segments(segments: Iterable[AnySegment], ctx: ApplyContext) -> Iterator[SegmentPlan]:
    """The plan of each segment, in bundle order; after a ``REFUSE``, nothing more.
    A redacted segment is judged like a whole one: opening it checks its content
    against its origin's signed commitment (docs/spec.md §6.4)."""
    staged: dict[tuple[Stream, int], bytes] = {}
    ranges: dict[Stream, list[tuple[int, int]]] = {}
    sealed_now: dict[Stream, int] = {}  # own streams whose cut gave way in this bundle
    for seg in segments:
        h = seg.hash
        stream = seg.stream
        if seg.origin == ctx.me:
            seq, sealed = ctx.owns.get(stream, (0, 0))
            sealed = sealed_now.get(stream, sealed)
            ctx = dataclasses.replace(ctx, own=stream, seq=seq, sealed=sealed)
        elif ctx.own is not None:
            ctx = dataclasses.replace(ctx, own=None, seq=0, sealed=0)
        position = (stream, seg.first_seq)
        held = ctx.index.find(*position)
        if (held is not None and held.hash == h) or staged.get(position) == h:
            yield SegmentPlan(Verdict.DUPLICATE, seg, h)
            continue
        try:
            seg.verify()
            changes = seg.open_changes(ctx.rules.limits)
            if position in staged:
                raise BundleFormatError("bundle carries two different segments at one position")
            staged[position] = h
            _stage_range(ranges.setdefault(stream, []), seg.first_seq, seg.last_seq)
        except RemoteDataError as exc:
            yield SegmentPlan(Verdict.REFUSE, seg, h, error=exc)
            return
        if drops := own_cut_gives_way(seg, ctx):
            given = dataclasses.replace(
                ctx,
                index=ctx.index.updated(drop=[(stream, d.first, d.first) for d in drops]),
                sealed=min(ctx.sealed, drops[0].first - 1),
            )
            plan = judge(seg, h, changes, given)
            if plan.status.kind is not Kind.FORK:
                ctx = given  # later segments are judged without the cut that gave way
                sealed_now[stream] = given.sealed
                # Unsealed below ``seg``, its changes there cannot wait under it: they
                # give way too, and are issued again.
                below = drops[0].first < seg.first_seq
                yield dataclasses.replace(plan, drops=drops, displaces=plan.displaces or below)
                continue
        if held is not None:  # a different segment at these seqs is held: a fork
            yield SegmentPlan(Verdict.FORK, seg, h, FORK_AT_SAME_SEQS, opened=changes)
        else:
            yield judge(seg, h, changes, ctx)


def judge(seg: AnySegment, h: bytes, changes: Sequence[Change], ctx: ApplyContext) -> SegmentPlan:
    """The plan of a verified segment that no held segment sits at: apply it, or hold
    it for its place in its origin's chain or by admission."""
    reuses_own = (
        seg.stream == ctx.own
        and seg.first_seq <= ctx.seq
        and not own_gap(seg, ctx)
        and not recovers_own(changes, ctx)
    )
    displaces = reuses_own and displaces_unsealed(seg, ctx)
    status = ctx.index.chain_problem(seg, reuses_own=reuses_own and not displaces)
    due = None
    if status is None:
        status, due = admit(changes, ctx.rules)
    if status.applied:
        top = max(map(_HLC, changes))
        return SegmentPlan(
            Verdict.APPLY, seg, h, status, changes, top, displaces=displaces, opened=changes
        )
    part = admitted_part(status, changes, ctx.rules)  # trust refusals: per change
    top = max(map(_HLC, part), default=0)
    return SegmentPlan(
        Verdict.QUARANTINE, seg, h, status, part, top, due, displaces=displaces, opened=changes
    )


def displaces_unsealed(seg: AnySegment, ctx: ApplyContext) -> bool:
    """Whether an own segment with other changes than this site holds at its seqs is
    this site's sealed history, to which its unsealed changes there give way.

    It is when it lies wholly above the seqs sealed here and fits the chain as held: it
    is signed with this site's key, so this site sealed it, in a timeline a restore
    abandoned; a peer holds it, so the world has it at those seqs. The unsealed changes
    it collides with never left this site (only sealed changes leave), so nobody saw
    their seqs: they are issued again after the claimed seqs (``Replica.apply``), not
    lost. A segment reaching into sealed seqs is a real fork of this site (quarantined).
    """
    return seg.first_seq > ctx.sealed and ctx.index.chain_problem(seg) is None


def own_cut_gives_way(seg: AnySegment, ctx: ApplyContext) -> tuple[HeldSegment, ...]:
    """The own sealed segments held here that give way to an own segment a peer sent,
    which overlaps them with another cut of this site's history (none: the rule does
    not apply).

    A peer holds ``seg``: the world has it at its seqs. Whether this site's own cut
    there ever left it cannot be known here (receipts name seqs, not segments): when
    it did, the peer holding it has a real fork of this site, recorded there when the
    two meet, whatever this site keeps. So this site takes the cut the world is known
    to hold: its own tail from the first segment reaching ``seg`` up (all applied) is
    unsealed again, as if restored from a backup taken before it sealed them, and the
    rules for unsealed own changes take over (``recovers_own``,
    ``displaces_unsealed``): nothing is lost. When the tail starts at ``seg``, ``seg``
    must fit the chain below it; when it starts below (the peer's segments before
    ``seg`` were not sent: this site listed those seqs), its changes there give way too
    and the peer's segments fill the gap later (``own_gap``). ``seg`` that overlaps
    nothing held but names another predecessor than the own segment held just below it
    shows another cut there the same way: the tail from that segment gives way.

    Only where ``seg`` reaches above the seqs sealed here: the peer holds more of this
    site's sealed history than the site does, so the site was restored from a backup
    and its cut was made without knowing the world's. A different segment wholly within
    what the site has sealed (sent to it though it lacked nothing there) is a fork of
    this site, recorded here as before (``tests/integration/test_restore.py``).
    """
    stream = seg.stream
    if stream != ctx.own or seg.last_seq <= ctx.sealed:
        return ()
    held = ctx.index.get(stream, ())
    if ctx.index.overlaps(stream, seg.first_seq, seg.last_seq):
        reach = seg.first_seq
    else:  # or it names another predecessor than the own segment held just below it
        below = [s for s in held if s.last == seg.first_seq - 1]
        if not below or below[0].hash == seg.prev_hash:
            return ()
        reach = below[0].first
    tail = tuple(s for s in held if s.last >= reach)
    if not all(s.status.applied for s in tail):
        return ()
    if tail[0].first < seg.first_seq:
        return tail
    rest = ctx.index.updated(drop=[(stream, s.first, s.first) for s in tail])
    return tail if rest.chain_problem(seg) is None else ()


def own_gap(seg: AnySegment, ctx: ApplyContext) -> bool:
    """Whether an own segment lies in seqs this site has sealed but holds no segment
    at: its own changes there gave way to its sealed history a peer holds
    (``own_cut_gives_way``) before the peer's segments there came, so it holds nothing
    there to fork."""
    return seg.last_seq <= ctx.sealed and not ctx.index.overlaps(
        seg.stream, seg.first_seq, seg.last_seq
    )


def recovers_own(changes: Sequence[Change], ctx: ApplyContext) -> bool:
    """Whether an own segment that reaches back into issued seqs holds exactly the
    changes this site holds for them: its own work coming back after a restore."""
    for c in changes:
        if c.seq > ctx.seq:
            break
        if not any(_same(c, h, ctx) for h in ctx.held_changes(c.collection, c.key)):
            return False
    return True


def _same(c: Change, held: Change, ctx: ApplyContext) -> bool:
    """Whether ``held`` (as the store keeps it to fold: no author, fields upcast to the
    current schema version, a stub once erased) is the change ``c`` of a segment."""
    if held[:6] != c[:6] or held.parents != c.parents:  # id, hlc, record, op
        return False
    if held.fields is None or c.fields is None or held.fields == c.fields:
        return True
    schemas = ctx.rules.schemas
    if schemas is None or c.op != PUT or schemas.refusal(c.collection, c.schema) is not None:
        return False
    return schemas.upcast_fields(c.collection, c.fields, c.schema) == held.fields


def own_returned(stored: Iterable[tuple[Stream, int, Status]], own: Stream, sealed: int) -> int:
    """The highest seq of the own stream ``own`` among the segments a bundle stored,
    (stream, last seq, status), when it is above ``sealed``: own changes, lost in a restore,
    came back (sealed by this site before the loss); else 0."""
    top = max((last for o, last, s in stored if o == own and s.kind is not Kind.FORK), default=0)
    return top if top > sealed else 0


def kept_forks(
    held: Sequence[AnySegment], new: Sequence[AnySegment], cap: int = MAX_FORK_EVIDENCE
) -> tuple[AnySegment, ...] | None:
    """The fork evidence to keep after ``new`` arrived (the newest ``cap``), or None
    when all of it is held already."""
    known = {s.hash for s in held}
    fresh = [s for s in new if s.hash not in known]
    if not fresh:
        return None
    return tuple([*held, *fresh][-cap:])
