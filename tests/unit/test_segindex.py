"""The segment index is a value: updating it makes a new one and leaves the old as it was."""

from __future__ import annotations

import pytest

from offsync.errors import StorageError, UsageError
from offsync.knowledge import Knowledge
from offsync.scope import WHOLE, Partition, Stream
from offsync.segindex import SegmentIndex, knowledge_of, own_meta, stream_intervals
from offsync.status import APPLIED, CLOCK_AHEAD
from tests.helpers.plan import OTHER, SITE, chain, entry, index, seal, stream


def test_updates_make_a_new_index_and_share_what_they_do_not_touch() -> None:
    a, b, c = chain(SITE, 2, 2, 2)
    other = seal(OTHER, 1, 1)
    old = index(a, c, other)
    new = old.updated(add=[entry(b)])
    assert [s.first for s in old[stream(SITE)]] == [1, 5]
    assert [s.first for s in new[stream(SITE)]] == [1, 3, 5]
    assert new[stream(OTHER)] is old[stream(OTHER)]  # untouched streams are shared
    assert old.updated(add=[entry(b)]) is not old
    assert new.updated(add=[entry(b)]) is new  # nothing changes: the same index


def test_an_entry_at_a_held_position_replaces_it_and_drops_forget_ranges() -> None:
    a, b = chain(SITE, 2, 2)
    idx = index(a, b)
    restated = idx.updated(add=[entry(b, CLOCK_AHEAD)])
    assert restated.find(stream(SITE), 3).status is CLOCK_AHEAD  # type: ignore[union-attr]
    assert idx.find(stream(SITE), 3).status is APPLIED  # type: ignore[union-attr]
    assert [s.first for s in idx.updated(drop=[(stream(SITE), 2, 9)])[stream(SITE)]] == [1]
    emptied = idx.updated(drop=[(stream(SITE), 1, 9)])
    assert stream(SITE) not in emptied and len(emptied) == 0 and emptied.intervals() == {}


def test_store_rows_come_in_with_their_status_text() -> None:
    (a,) = chain(SITE, 2)
    row = (a.stream, 1, 2, a.hash, a.prev_hash, "clock: timestamp too far in the future", 10)
    idx = SegmentIndex.from_rows([row])
    assert idx[stream(SITE)][0].status == CLOCK_AHEAD
    assert idx.updated(rows=[row]) is idx
    with pytest.raises(StorageError):
        SegmentIndex.from_rows([(*row[:5], "lost: who knows", 10)])


def test_held_back_lists_what_is_not_applied_by_stream() -> None:
    (a,) = chain(SITE, 2)
    held = seal(OTHER, 1, 1)
    idx = index(a).updated(add=[entry(held, CLOCK_AHEAD)])
    assert [(o, s.first) for o, s in idx.held_back()] == [(stream(OTHER), 1)]


def test_a_segment_is_of_its_partitions_stream() -> None:
    (a,) = chain(SITE, 1)
    assert a.stream == stream(SITE) == Stream(SITE.public_key, Partition("residents"))
    assert a.stream.origin == SITE.public_key
    with pytest.raises(UsageError):
        Partition(*WHOLE)  # no format-3 partition is format 2's WHOLE


def test_knowledge_maps_to_streams_and_back() -> None:
    other = Stream(SITE.public_key, Partition("doses", "35"))
    known = Knowledge({stream(SITE): [(1, 4)], stream(OTHER): [(2, 2), (5, 9)], other: [(1, 1)]})
    by_stream = dict(stream_intervals(known))
    assert by_stream == {stream(SITE): ((1, 4),), stream(OTHER): ((2, 2), (5, 9)), other: ((1, 1),)}
    assert knowledge_of(by_stream) == known


def test_own_counters_keep_format_2_names_and_a_partition_has_its_own() -> None:
    assert (own_meta("seq", WHOLE), own_meta("sealed", WHOLE)) == ("seq", "sealed")
    names = {
        own_meta(n, Partition(c, p))
        for n in ("seq", "sealed")
        for c, p in [("a", "bc"), ("ab", "c"), ("a:b", ""), ("a", ":b")]
    }
    assert len(names) == 8 and not names & {"seq", "sealed"}  # never two streams' one


def test_streams_of_an_origin_follow_the_index_as_streams_come_and_go() -> None:
    a, b = chain(SITE, 1, 1)
    other = seal(OTHER, 1, 1)
    idx = index(a)
    assert idx.streams_of(SITE.public_key) == (stream(SITE),)  # built on first use
    assert idx.streams_of(OTHER.public_key) == ()
    more = idx.updated(add=[entry(b), entry(other)])
    assert more.streams_of(OTHER.public_key) == (stream(OTHER),)  # kept by updated
    assert idx.streams_of(OTHER.public_key) == ()  # the old index is as it was
    part = Stream(SITE.public_key, Partition("residents", "35"))
    held = entry(b)[1]
    wider = more.updated(add=[(part, held)])
    assert wider.streams_of(SITE.public_key) == tuple(sorted([stream(SITE), part]))
    gone = wider.updated(drop=[(stream(SITE), 1, 9)])
    assert gone.streams_of(SITE.public_key) == (part,)
    assert gone.updated(drop=[(part, 1, 9)]).streams_of(SITE.public_key) == ()
    fresh = SegmentIndex(dict(wider))  # built from scratch: the same answer
    assert fresh.streams_of(SITE.public_key) == wider.streams_of(SITE.public_key)
