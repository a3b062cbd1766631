"""Planning an apply, with values alone: no store, no replica."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest

from offsync.errors import BundleFormatError, ForkError, SignatureError
from offsync.plan.apply import Verdict, kept_forks, own_returned, plan_segments
from offsync.segindex import SegmentIndex
from offsync.segment import NO_PREVIOUS, Segment
from offsync.status import APPLIED, CLOCK_AHEAD, FORK_AT_SAME_SEQS, Kind, Status
from tests.helpers.plan import (
    ME,
    OTHER,
    SITE,
    T0,
    certified,
    chain,
    change,
    context,
    entry,
    index,
    seal,
    stream,
)

DAY = 86_400_000


def verdicts(segments: list[Segment], idx: SegmentIndex, **ctx: object) -> list[Verdict]:
    return [p.verdict for p in plan_segments(segments, context(idx, **ctx))]  # type: ignore[arg-type]


def test_new_segments_apply_and_merge_every_change() -> None:
    a, b = chain(SITE, 3, 2)
    plans = list(plan_segments([a, b], context(SegmentIndex())))
    assert [p.verdict for p in plans] == [Verdict.APPLY, Verdict.APPLY]
    assert [len(p.merge) for p in plans] == [3, 2]
    assert plans[1].max_hlc == change(SITE, 5).hlc
    assert all(p.status is APPLIED and p.hash == p.segment.hash for p in plans)


def test_held_segments_and_repeats_within_a_bundle_are_duplicates() -> None:
    a, b = chain(SITE, 3, 2)
    assert verdicts([a, b, b], index(a)) == [Verdict.DUPLICATE, Verdict.APPLY, Verdict.DUPLICATE]


def test_a_different_segment_at_a_held_position_is_fork_evidence() -> None:
    held = seal(SITE, 1, 2)
    other = seal(SITE, 1, 2, ms=T0 + 1)
    (plan,) = plan_segments([other], context(index(held)))
    assert (plan.verdict, plan.status, plan.merge) == (Verdict.FORK, FORK_AT_SAME_SEQS, ())


@pytest.mark.parametrize(
    ("held", "arriving", "reason"),
    [
        (
            [seal(SITE, 1, 4)],
            lambda: seal(SITE, 3, 4, prev=bytes([1]) * 32),
            "overlaps a different segment of the same origin",
        ),
        (
            [seal(SITE, 1, 2)],
            lambda: seal(SITE, 3, 2, prev=bytes([1]) * 32),
            "does not chain to the previous segment",
        ),
        (
            [seal(SITE, 3, 2, prev=bytes([1]) * 32)],
            lambda: seal(SITE, 1, 2),
            "the next segment does not chain to it",
        ),
    ],
)
def test_chain_problems_hold_the_segment_whole(
    held: list[Segment], arriving: object, reason: str
) -> None:
    seg = arriving()  # type: ignore[operator]
    (plan,) = plan_segments([seg], context(index(*held)))
    assert plan.verdict is Verdict.QUARANTINE
    assert plan.status == Status(Kind.FORK, reason) and plan.merge == []


def test_a_segment_from_the_future_waits_for_the_clock() -> None:
    seg = seal(SITE, 1, 2, ms=T0 + 3 * DAY)
    (plan,) = plan_segments([seg], context(SegmentIndex(), now=T0))
    assert (plan.verdict, plan.status, plan.merge) == (Verdict.QUARANTINE, CLOCK_AHEAD, [])
    assert plan.due == T0 + 2 * DAY  # when it is no further ahead than the allowed skew
    (later,) = plan_segments([seg], context(SegmentIndex(), now=T0 + 2 * DAY))
    assert later.verdict is Verdict.APPLY


def test_trust_admits_change_by_change() -> None:
    seg = Segment.seal(
        SITE,
        [change(SITE, 1, "3519-a"), change(SITE, 2, "3520-b"), change(SITE, 3, "3519-c")],
        NO_PREVIOUS,
        3,
    )
    (plan,) = plan_segments(
        [seg], context(SegmentIndex(), trust=certified(SITE, prefixes=("3519",)))
    )
    assert plan.verdict is Verdict.QUARANTINE
    assert str(plan.status) == "scope: key outside the allowed prefixes"
    assert [c.key for c in plan.merge] == ["3519-a", "3519-c"]
    (unknown,) = plan_segments([seal(OTHER, 1, 2)], context(SegmentIndex(), trust=certified(SITE)))
    assert (str(unknown.status), unknown.merge) == ("trust: unknown signer", [])


def test_own_changes_coming_back_after_a_restore_apply_and_a_fork_of_them_does_not() -> None:
    ours = seal(ME, 1, 3)
    held = ours.open_changes()
    # A restored site at seq 3 holds these changes (unsealed): its own work comes back.
    (plan,) = plan_segments([ours], context(SegmentIndex(), seq=3, held=held))
    assert plan.verdict is Verdict.APPLY
    # The same seqs with other content, where this site has sealed them: it forked.
    forked = seal(ME, 1, 3, ms=T0 + 1)
    (plan,) = plan_segments([forked], context(index(ours), seq=3, sealed=3, held=held))
    assert (plan.verdict, plan.displaces, plan.drops) == (Verdict.FORK, False, ())
    # Where it holds them unsealed (they never left), the sealed history wins: they
    # give way (and are issued again after it, by the executor).
    (plan,) = plan_segments([forked], context(SegmentIndex(), seq=3, held=held))
    assert (plan.verdict, plan.displaces) == (Verdict.APPLY, True)
    # Reaching into sealed seqs, it is a fork still.
    (plan,) = plan_segments([forked], context(SegmentIndex(), seq=3, sealed=1, held=held))
    assert (plan.verdict, plan.displaces) == (Verdict.QUARANTINE, False)
    # Seqs it never issued are simply new.
    (plan,) = plan_segments([seal(ME, 1, 3)], context(SegmentIndex(), seq=0))
    assert plan.verdict is Verdict.APPLY


@pytest.mark.parametrize(
    ("segments", "error"),
    [
        (lambda: [seal(SITE, 1, 3), seal(SITE, 2, 1, prev=bytes([1]) * 32)], ForkError),
        (lambda: [seal(SITE, 1, 2), seal(SITE, 1, 2, ms=T0 + 1)], BundleFormatError),
    ],
)
def test_a_bundle_that_contradicts_itself_is_refused(segments: object, error: type) -> None:
    plans = list(plan_segments(segments(), context(SegmentIndex())))  # type: ignore[operator]
    assert [p.verdict for p in plans] == [Verdict.APPLY, Verdict.REFUSE]
    assert isinstance(plans[-1].error, error)


def test_a_forged_segment_refuses_the_bundle_and_nothing_after_it_is_planned() -> None:
    good, bad, after = chain(SITE, 2, 2, 2)
    forged = dataclasses.replace(bad, signature=bytes(64))
    plans = list(plan_segments([good, forged, after], context(SegmentIndex())))
    assert [p.verdict for p in plans] == [Verdict.APPLY, Verdict.REFUSE]
    assert isinstance(plans[-1].error, SignatureError)


def test_plans_are_made_one_segment_at_a_time() -> None:
    opened: list[int] = []

    def bundle() -> Iterator[Segment]:
        for seg in itertools.islice(itertools.cycle(chain(SITE, 1, 1, 1)), 3):
            opened.append(seg.first_seq)
            yield seg

    plans = plan_segments(bundle(), context(SegmentIndex()))
    next(plans)
    assert opened == [1]  # the second segment is not even read yet


def test_own_returned_names_the_highest_own_seq_above_the_sealed_ones() -> None:
    me = stream(ME)
    stored = [(me, 5, APPLIED), (me, 9, CLOCK_AHEAD), (stream(SITE), 20, APPLIED)]
    assert own_returned(stored, me, sealed=3) == 9
    assert own_returned(stored, me, sealed=9) == 0
    assert own_returned([(me, 12, FORK_AT_SAME_SEQS)], me, sealed=3) == 0


def test_fork_evidence_is_kept_once_and_bounded() -> None:
    a, b, c = (seal(SITE, 1, 1, ms=T0 + i) for i in range(3))
    assert kept_forks((), [a]) == (a,)
    assert kept_forks((a,), [a]) is None
    assert kept_forks((a, b), [c], cap=2) == (b, c)


def test_the_index_is_judged_as_it_was_before_the_bundle() -> None:
    idx = index(seal(SITE, 1, 2))
    before = dict(idx)
    list(plan_segments(chain(OTHER, 1, 1), context(idx)))
    assert dict(idx) == before and entry(seal(SITE, 1, 2))[0] in idx


def test_an_own_sealed_cut_gives_way_to_the_cut_a_peer_holds() -> None:
    """Sealed here as 1..1 (the bundle was lost), sealed again as 1..2 after a restore
    and held by a peer: 1..1 gives way, whether 1..2 holds its change as it is or not."""
    ours = seal(ME, 1, 1)
    held = ours.open_changes()
    ctx = context(index(ours), seq=1, sealed=1, held=held)
    (same,) = plan_segments([seal(ME, 1, 2)], ctx)
    assert (same.verdict, same.drops, same.displaces) == (Verdict.APPLY, (entry(ours)[1],), False)
    # Another change at seq 1: ours gives way too, and is issued again (``displaces``).
    (other,) = plan_segments([seal(ME, 1, 2, ms=T0 + 1)], ctx)
    assert (other.verdict, other.drops, other.displaces) == (
        Verdict.APPLY,
        (entry(ours)[1],),
        True,
    )
    assert len(other.merge) == 2


def test_the_whole_own_tail_gives_way_and_later_segments_see_it_gone() -> None:
    h1, h2 = chain(ME, 1, 2)  # 1..1, 2..3 sealed here
    s1 = seal(ME, 1, 4, ms=T0 + 1)  # reaches above the sealed seq: a restore
    s2 = seal(ME, 5, 2, s1.hash, ms=T0 + 1)
    idx = index(h1, h2)
    ctx = context(idx, seq=3, sealed=3, held=[*h1.open_changes(), *h2.open_changes()])
    first, second = plan_segments([s1, s2], ctx)
    assert first.drops == (entry(h1)[1], entry(h2)[1]) and first.verdict is Verdict.APPLY
    assert (second.verdict, second.drops) == (Verdict.APPLY, ())
    assert dict(idx) == dict(index(h1, h2))  # the index itself is a value, untouched
    # Wholly within what this site sealed (it lacked nothing there): a fork, as before.
    (plan,) = plan_segments([seal(ME, 1, 3, ms=T0 + 1)], ctx)
    assert (plan.verdict, plan.drops) == (Verdict.FORK, ())


def test_an_own_cut_reaching_below_gives_way_and_the_gap_is_filled_later() -> None:
    """Sealed here as 1..2, the world holds 1..1 and 2..3: only 2..3 arrives (this site
    listed 1..2). 1..2 gives way whole (its changes below 2..3 cannot wait under it),
    and 1..1, arriving later at seqs sealed here but held in no segment, fills the gap."""
    ours = seal(ME, 1, 2)
    s1 = seal(ME, 1, 1)
    s2 = seal(ME, 2, 2, s1.hash, ms=T0 + 1)
    ctx = context(index(ours), seq=2, sealed=2, held=ours.open_changes())
    (plan,) = plan_segments([s2], ctx)
    assert (plan.verdict, plan.drops, plan.displaces) == (Verdict.APPLY, (entry(ours)[1],), True)
    # Even where 2..3 holds this site's change at seq 2 as it is.
    same = seal(ME, 2, 2, s1.hash)
    (plan,) = plan_segments([same], ctx)
    assert (plan.verdict, plan.displaces) == (Verdict.APPLY, True)
    # After it: sealed to 3, issued to 5, nothing held at seq 1.
    later = context(index(s2), seq=5, sealed=3)
    (plan,) = plan_segments([s1], later)
    assert (plan.verdict, plan.drops, plan.displaces) == (Verdict.APPLY, (), False)
    # A segment at seqs sealed here and held in one is not a gap: a fork, as before.
    (plan,) = plan_segments([seal(ME, 2, 2, s1.hash, ms=T0 + 2)], later)
    assert plan.verdict is Verdict.FORK


def test_an_own_cut_does_not_give_way_where_the_rule_cannot_hold() -> None:
    # It does not chain to the own segment held below it.
    h1, h2 = chain(ME, 1, 1)
    forked = seal(ME, 2, 2, prev=bytes([1]) * 32, ms=T0 + 1)
    ctx = context(index(h1, h2), seq=2, sealed=2, held=[*h1.open_changes(), *h2.open_changes()])
    (plan,) = plan_segments([forked], ctx)
    assert (plan.verdict, plan.drops) == (Verdict.FORK, ())
    # A held own segment that is quarantined already is evidence: it stays.
    ours = seal(ME, 1, 3)
    ctx = context(index(ours, status=CLOCK_AHEAD), seq=3, sealed=3, held=ours.open_changes())
    (plan,) = plan_segments([seal(ME, 1, 4, ms=T0 + 1)], ctx)
    assert (plan.verdict, plan.drops) == (Verdict.FORK, ())
    # Another origin's overlapping segments are forks as before.
    (plan,) = plan_segments([seal(SITE, 1, 2)], context(index(seal(SITE, 1, 1))))
    assert (plan.verdict, plan.drops) == (Verdict.FORK, ())


def test_an_own_segment_naming_another_predecessor_unseals_the_one_below() -> None:
    """Sealed here as 1..3 (never sent); the world holds 1..3 with other changes and 4..4
    after it, and sends 4..4 alone (this site listed 1..3): 1..3 gives way."""
    ours = seal(ME, 1, 3)
    theirs = seal(ME, 1, 3, ms=T0 + 1)
    after = seal(ME, 4, 1, theirs.hash, ms=T0 + 1)
    ctx = context(index(ours), seq=3, sealed=3, held=ours.open_changes())
    (plan,) = plan_segments([after], ctx)
    assert (plan.verdict, plan.drops, plan.displaces) == (Verdict.APPLY, (entry(ours)[1],), True)
    # Chained to the segment held below it, it is simply the next one.
    (plan,) = plan_segments([seal(ME, 4, 1, ours.hash)], ctx)
    assert (plan.verdict, plan.drops, plan.displaces) == (Verdict.APPLY, (), False)
