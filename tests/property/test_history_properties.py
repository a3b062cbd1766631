"""``Replica.history`` across replicas (hypothesis): whatever was written where and
delivered in whatever order, once every replica holds every change, the history of
each record lists exactly the changes written to it, in the same order everywhere."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import ChangeId, Identity, Replica
from tests.helpers.history import exchange

KEYS = ["k0", "k1", "k2"]
#: ("put" | "delete", site, key index) or ("sync", site, other site)
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "put", "delete", "sync"]), st.integers(0, 2), st.integers(0, 2)
    ),
    max_size=30,
)


@settings(max_examples=30)
@given(STEPS)
def test_history_lists_what_was_written_in_one_order_everywhere(
    steps: list[tuple[str, int, int]],
) -> None:
    sites = [
        Replica.open(":memory:", identity=Identity(bytes([n + 1]) * 32, label=f"s{n}"))
        for n in range(3)
    ]
    written: dict[str, dict[ChangeId, dict[str, int] | None]] = {k: {} for k in KEYS}
    for n, (kind, who, arg) in enumerate(steps):
        site, key = sites[who], KEYS[arg]
        if kind == "put":
            fields = {"by": who, "step": n}
            written[key][site.put("r", key, fields)] = fields
        elif kind == "delete":
            gone = site.delete("r", key)
            if gone is not None:
                written[key][gone] = None
        elif who != arg:
            exchange(site, sites[arg])
    for _ in range(2):
        exchange(sites[0], sites[1])
        exchange(sites[1], sites[2])
    for key in KEYS:
        listed = [s.history("r", key) for s in sites]
        assert listed[0] == listed[1] == listed[2]
        assert {e.id: e.fields for e in listed[0]} == written[key]
        assert len(listed[0]) == len(written[key])
        assert [e.stamp for e in listed[0]] == sorted(e.stamp for e in listed[0])
        assert all(e.key == key and e.reason is None for e in listed[0])
    for s in sites:
        s.close()
