"""The segment index: a signer's streams, kept as the index changes, are what it holds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offsync.scope import Partition, Stream, whole
from offsync.segindex import HeldSegment, SegmentIndex
from offsync.status import APPLIED

ORIGINS = [bytes([i]) * 32 for i in (1, 2, 3)]
STREAMS = [
    s
    for o in ORIGINS
    for s in (whole(o), Stream(o, Partition("residents", "35")), Stream(o, Partition("doses")))
]


def _held(first: int) -> HeldSegment:
    return HeldSegment(first, first, bytes(32), bytes(32), APPLIED, 10)


#: One update: add a segment at (stream, first), or drop (stream, first..last).
updates = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(STREAMS), st.integers(1, 4)),
        st.tuples(st.just("drop"), st.sampled_from(STREAMS), st.integers(1, 4)),
    ),
    max_size=30,
)


@given(updates, st.integers(0, 30))
def test_streams_of_follow_every_update(steps: list[tuple[str, Stream, int]], ask: int) -> None:
    idx = SegmentIndex()
    for i, (op, stream, first) in enumerate(steps):
        if i == ask:  # built here, then kept by every later update
            idx.streams_of(ORIGINS[0])
        if op == "add":
            idx = idx.updated(add=[(stream, _held(first))])
        else:
            idx = idx.updated(drop=[(stream, first, first + 1)])
        for origin in ORIGINS:
            want = tuple(sorted(s for s in idx if s.origin == origin))
            assert idx.streams_of(origin) == want
