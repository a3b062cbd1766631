"""http_frames: the properties (hypothesis), moved from tests/unit/test_http_frames.py, where its examples are."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from offsync.http.frames import (
    BundleFrame,
    EndOfAnswer,
    FrameDecoder,
)
from tests.unit.test_http_frames import answer


@given(
    bundles=st.lists(st.binary(min_size=1, max_size=300), max_size=6),
    more=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_bundles_come_out_whole_however_the_bytes_are_cut(
    bundles: list[bytes], more: bool, cuts: list[int]
) -> None:
    data = answer(bundles, more)
    decoder = FrameDecoder(max_frame=300)
    events: list[BundleFrame | EndOfAnswer] = []
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, stop in itertools.pairwise(edges):
        events.extend(decoder.events(data[start:stop]))
    assert events == [*(BundleFrame(b) for b in bundles), EndOfAnswer(more=more)]
    assert decoder.end == EndOfAnswer(more=more)
