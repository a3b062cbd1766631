"""Properties of applying bundles: idempotent, and independent of order."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import Identity, Replica, policies
from offsync.errors import ImmutableRecordError

POLICIES = {
    "lww": policies.LastWriterWins(),
    "fww": policies.FirstWriterWins(),
    "mv": policies.MultiValue(),
}
WALL = 1_700_000_000_000

ops = st.lists(
    st.tuples(
        st.integers(0, 2),  # writer
        st.sampled_from(sorted(POLICIES)),
        st.sampled_from(["1", "2"]),
        st.none() | st.dictionaries(st.sampled_from("ab"), st.integers(0, 2), min_size=1),
        st.booleans(),  # pack after this op (to a random peer's knowledge)
        st.integers(0, 2),  # that peer
    ),
    min_size=1,
    max_size=14,
)


def fresh(i: int) -> Replica:
    return Replica.open(
        ":memory:", identity=Identity(bytes([i + 1]) * 32), policies=POLICIES, wall=lambda: WALL
    )


def history(steps: list[tuple[Any, ...]]) -> list[bytes]:
    """Bundles from three writers that also relay what they received to each other."""
    sites = [fresh(i) for i in range(3)]
    bundles: list[bytes] = []
    for writer, collection, key, fields, pack, peer in steps:
        rep = sites[writer]
        try:
            if fields is None:
                rep.delete(collection, key)
            else:
                rep.put(collection, key, fields)
        except ImmutableRecordError:
            pass
        if pack and peer != writer:
            out = rep.pack(sites[peer].knowledge())
            for b in out:
                sites[peer].apply(b)
            bundles.extend(out)
    for rep in sites:
        bundles.extend(rep.pack())
        rep.close()
    return bundles


def digest_after(bundles: list[bytes], times: int = 1) -> bytes:
    rep = fresh(3)
    for b in bundles:
        for _ in range(times):
            rep.apply(b)
    digest = rep.state_digest()
    conflicts = rep.conflicts()
    rep.close()
    return digest + repr(sorted((c.collection, c.key) for c in conflicts)).encode()


@settings(max_examples=min(settings().max_examples, 40))
@given(ops)
def test_apply_twice_equals_apply_once(steps: list[tuple[Any, ...]]) -> None:
    bundles = history(steps)
    assert digest_after(bundles, times=2) == digest_after(bundles)


@settings(max_examples=min(settings().max_examples, 40))
@given(ops, st.data())
def test_any_order_gives_the_same_state(steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    bundles = history(steps)
    shuffled = data.draw(st.permutations(bundles), label="order")
    with_repeats = (
        data.draw(st.lists(st.sampled_from(bundles), max_size=4), label="repeats")
        if bundles
        else []
    )
    assert digest_after(list(shuffled) + with_repeats) == digest_after(bundles)
