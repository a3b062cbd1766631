"""segment: the properties (hypothesis), moved from tests/unit/test_segment.py, where its examples are."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offsync.segment import NO_PREVIOUS, Segment
from tests.unit.test_segment import IDENT, LEVEL, changes_of


@given(st.integers(1, 1000), st.integers(1, 5), st.binary(min_size=32, max_size=32))
def test_encode_decode_round_trip(first: int, n: int, prev: bytes) -> None:
    # Only a first segment has no predecessor (docs/spec.md §5).
    prev = NO_PREVIOUS if first == 1 else (prev if prev != NO_PREVIOUS else b"\x01" * 32)
    changes = changes_of(first, n)
    seg = Segment.seal(IDENT, changes, prev, LEVEL)
    data = seg.encode()
    back = Segment.decode(data)
    assert back == seg
    assert back.encode() == data
    back.verify()
    assert back.open_changes() == changes
