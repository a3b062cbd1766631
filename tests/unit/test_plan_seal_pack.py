"""Planning seals and packs, with values alone: no store, no replica."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import offsync.plan.seal as seal_plan
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS
from offsync.plan.pack import (
    BUNDLE_OVERHEAD,
    Fit,
    bundles,
    carried,
    fit,
    held_knowledge,
    receipt_knowledge,
    select,
)
from offsync.plan.seal import cut, may_seal, seal_rows, whole_segment_waits
from offsync.segindex import SegmentIndex
from offsync.segment import NO_PREVIOUS
from offsync.status import FORK_AT_SAME_SEQS, Kind, Status
from tests.helpers.plan import ME, OTHER, SITE, chain, change, entry, index, seal, stream


def outbox(first: int, n: int, size: int = 10) -> list[tuple[int, bytes]]:
    return [(seq, bytes(size)) for seq in range(first, first + n)]


def pages(rows: list[tuple[int, bytes]], per_page: int) -> Iterator[list[tuple[int, bytes]]]:
    for i in range(0, len(rows), per_page):
        yield rows[i : i + per_page]


@pytest.fixture
def five(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seal_plan, "SEGMENT_MAX_CHANGES", 5)
    monkeypatch.setattr(seal_plan, "SEGMENT_MAX_BYTES", 100)


def spans(groups: list[list[tuple[int, bytes]]]) -> list[tuple[int, int]]:
    return [(g[0][0], g[-1][0]) for g in groups]


@pytest.mark.usefixtures("five")
@pytest.mark.parametrize("per_page", [1, 3, 5, 7, 100])
def test_segments_are_cut_the_same_whatever_the_page_size(per_page: int) -> None:
    rows = outbox(1, 12)
    assert spans(list(cut(pages(rows, per_page), complete_only=False))) == [
        (1, 5),
        (6, 10),
        (11, 12),
    ]
    assert spans(list(cut(pages(rows, per_page), complete_only=True))) == [(1, 5), (6, 10)]


@pytest.mark.usefixtures("five")
def test_a_segment_ends_before_it_would_pass_the_byte_limit() -> None:
    rows = [(1, bytes(40)), (2, bytes(40)), (3, bytes(40)), (4, bytes(150))]
    assert spans(list(cut([rows], complete_only=False))) == [(1, 2), (3, 3), (4, 4)]


def test_cut_reads_pages_only_as_segments_need_them() -> None:
    read: list[int] = []

    def lazy() -> Iterator[list[tuple[int, bytes]]]:
        for page in pages(outbox(1, 3 * seal_plan.SEGMENT_MAX_CHANGES), 1000):
            read.append(page[0][0])
            yield page

    first = next(cut(lazy(), complete_only=True))
    assert len(first) == seal_plan.SEGMENT_MAX_CHANGES
    assert read == [1, 1001]  # the pages of the first segment, no more


def test_when_to_seal() -> None:
    assert may_seal(seq=5, sealed=3, claim=0)
    assert not may_seal(seq=3, sealed=3, claim=0)  # nothing new
    assert not may_seal(seq=5, sealed=3, claim=4)  # a peer holds seq 4 of ours: we lost it
    assert whole_segment_waits(seal_plan.SEGMENT_MAX_CHANGES, 0)
    assert not whole_segment_waits(seal_plan.SEGMENT_MAX_CHANGES, 1)


def test_sealed_rows_make_a_signed_segment_of_those_changes() -> None:
    changes = [change(ME, seq) for seq in (1, 2, 3)]
    seg = seal_rows(ME, [(c.seq, c.to_row()) for c in changes], NO_PREVIOUS, 3)
    seg.verify()
    assert seg.open_changes() == changes and (seg.first_seq, seg.last_seq) == (1, 3)


def test_knowledge_is_every_held_segment_and_the_unsealed_own_changes() -> None:
    idx = index(*chain(SITE, 2, 2), seal(ME, 1, 3))
    assert held_knowledge(idx, {stream(ME): (5, 3, 0)}) == Knowledge(
        {stream(SITE): [(1, 4)], stream(ME): [(1, 5)]}
    )
    assert held_knowledge(SegmentIndex(), {}) == Knowledge()


def test_knowledge_leaves_out_unsealed_own_seqs_that_peers_claim() -> None:
    """Restored from a backup taken before it sealed 4..6, a site holds them unsealed
    while a peer holds them sealed: listed, the peer would never send them back."""
    idx = index(seal(ME, 1, 3))
    me = stream(ME)
    assert held_knowledge(idx, {stream(ME): (8, 3, 3)}) == Knowledge.of(me, 1, 8)
    assert held_knowledge(idx, {stream(ME): (8, 3, 6)}) == Knowledge({me: [(1, 3), (7, 8)]})
    assert held_knowledge(idx, {stream(ME): (8, 3, 8)}) == Knowledge.of(me, 1, 3)
    assert held_knowledge(idx, {stream(ME): (8, 3, 11)}) == Knowledge.of(me, 1, 3)


def test_a_receipt_states_own_changes_only_as_far_as_they_are_sealed() -> None:
    idx = index(*chain(SITE, 2, 2), seal(ME, 1, 3))
    assert receipt_knowledge(idx) == Knowledge({stream(SITE): [(1, 4)], stream(ME): [(1, 3)]})
    assert receipt_knowledge(SegmentIndex()) == Knowledge()


def test_pack_selects_whole_segments_the_peer_lacks_and_never_fork_evidence() -> None:
    a, b, c = chain(SITE, 3, 3, 3)
    forked = seal(OTHER, 1, 2)
    idx = index(a, b, c).updated(add=[entry(forked, FORK_AT_SAME_SEQS)])
    clock = Status(Kind.CLOCK, "timestamp too far in the future")
    idx = idx.updated(add=[entry(seal(ME, 1, 1), clock)])  # held, quarantined: still sent
    missing = held_knowledge(idx, {stream(ME): (1, 1, 0)}) - Knowledge.of(stream(SITE), 1, 4)
    chosen = select(idx, missing)
    assert [(o, s.first) for o, s in chosen] == sorted(  # by stream, then seq
        [(stream(ME), 1), (stream(SITE), 4), (stream(SITE), 7)]
    )
    only_site = select(idx, missing, wanted=lambda s: s == stream(SITE))
    assert [s.first for _, s in only_site] == [4, 7]


def test_bundles_group_segments_under_the_byte_limit() -> None:
    items = [entry(s) for s in chain(SITE, 1, 1, 1, 1)]
    size = items[0][1].size
    limit = 2 * size + BUNDLE_OVERHEAD
    groups = list(bundles(items, limit))
    assert [len(g) for g in groups] == [2, 2]
    assert carried(groups[1]) == Knowledge.of(stream(SITE), 3, 4)
    # A segment larger than the limit travels alone rather than not at all.
    assert [len(g) for g in bundles(items, 1)] == [1, 1, 1, 1]
    assert list(bundles([], limit)) == []
    assert list(bundles([], limit, always=True)) == [[]]
    assert [len(g) for g in bundles(items, limit, always=True)] == [2, 2]


def test_a_built_bundle_is_sent_split_or_refused() -> None:
    big = DEFAULT_LIMITS.max_bundle_bytes
    assert fit(900, 3, 1000, DEFAULT_LIMITS) is Fit.SEND
    assert fit(1100, 3, 1000, DEFAULT_LIMITS) is Fit.SPLIT
    assert fit(1100, 1, 1000, DEFAULT_LIMITS) is Fit.SEND  # one segment travels alone
    assert fit(big + 1, 1, 1000, DEFAULT_LIMITS) is Fit.TOO_LARGE
    assert fit(1100, 0, 1000, DEFAULT_LIMITS) is Fit.TOO_LARGE
