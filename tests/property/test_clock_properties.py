"""clock: the properties (hypothesis), moved from tests/unit/test_clock.py, where its examples are."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offsync.clock import HybridClock, hlc_millis
from tests.unit.test_clock import FakeWall


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("wall"), st.integers(0, 1 << 40)),
            st.tuples(st.just("observe"), st.integers(0, 1 << 56)),
            st.tuples(st.just("now"), st.just(0)),
        ),
        max_size=40,
    )
)
def test_strictly_monotonic_and_past_everything_observed(ops: list[tuple[str, int]]) -> None:
    wall = FakeWall(0)
    clock = HybridClock(wall=wall)
    issued: list[int] = []
    seen = 0
    for op, value in ops:
        if op == "wall":
            wall.now = value
        elif op == "observe":
            clock.observe(value)
            seen = max(seen, value)
        else:
            t = clock.now()
            assert t > seen
            assert hlc_millis(t) >= wall.now
            if issued:
                assert t > issued[-1]
            issued.append(t)
