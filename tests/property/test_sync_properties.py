"""sync: the properties (hypothesis), moved from tests/unit/test_sync.py, where its examples are."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import sync
from offsync.transports import MemoryTransport
from tests.unit.test_sync import replica


@settings(max_examples=25)
@given(
    st.lists(
        st.tuples(st.sampled_from(["write", "sync"]), st.integers(0, 2), st.integers(0, 3)),
        max_size=25,
    )
)
def test_any_order_of_writes_and_rounds_converges(steps: list[tuple[str, int, int]]) -> None:
    """Three sites in a line (0 - 1 - 2) over mailboxes: whatever happens first, enough
    rounds afterwards leave them equal."""
    sites = [replica(f"s{i}") for i in range(3)]
    left = MemoryTransport.pair(sites[0], sites[1])
    right = MemoryTransport.pair(sites[1], sites[2])
    links = [(sites[0], left[0]), (sites[1], left[1]), (sites[1], right[0]), (sites[2], right[1])]
    for kind, who, n in steps:
        if kind == "write":
            sites[who].put("r", f"k{n}", {"by": who, "n": n})
        else:
            r, t = links[(who + n) % 4]
            sync(r, t)
    for _ in range(4):
        for r, t in links:
            sync(r, t)
    digests = {s.state_digest() for s in sites}
    assert len(digests) == 1
    assert sites[0].knowledge() == sites[2].knowledge()
