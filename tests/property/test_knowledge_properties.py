"""knowledge: the properties (hypothesis), moved from tests/unit/test_knowledge.py, where its examples are."""

from __future__ import annotations

import itertools

from hypothesis import example, given
from hypothesis import strategies as st

from offsync.encoding import packb
from offsync.knowledge import Knowledge
from tests.unit.test_knowledge import A, B, C

Model = set[tuple[bytes, int]]


models = st.sets(st.tuples(st.sampled_from([A, B, C]), st.integers(1, 40)), max_size=60)


def from_model(model: Model) -> Knowledge:
    return Knowledge({o: [(s, s) for oo, s in model if oo == o] for o in {o for o, _ in model}})


def to_model(k: Knowledge) -> Model:
    return {(o, s) for o, ivs in k.intervals.items() for a, b in ivs for s in range(a, b + 1)}


@given(models)
def test_normal_form(model: Model) -> None:
    k = from_model(model)
    assert to_model(k) == model
    for ivs in k.intervals.values():
        assert ivs, "no empty origins"
        for (_, b1), (a2, _) in itertools.pairwise(ivs):
            assert b1 + 1 < a2, "sorted, disjoint and non-adjacent"
    assert list(k.intervals) == sorted(k.intervals)
    assert k.count() == len(model)
    assert bool(k) == bool(model)


@given(models, models)
@example({(A, 1), (A, 2), (A, 3)}, {(A, 2)})
@example({(A, 1)}, set())
def test_set_algebra_agrees_with_the_model(x: Model, y: Model) -> None:
    kx, ky = from_model(x), from_model(y)
    assert to_model(kx | ky) == x | y
    assert to_model(kx - ky) == x - y
    assert to_model(kx & ky) == x & y
    assert (kx <= ky) == (x <= y)
    assert (kx == ky) == (x == y)
    for o in (A, B, C):
        for s in (1, 5, 40):
            assert kx.contains(o, s) == ((o, s) in x)
        assert kx.max_seq(o) == max((s for oo, s in x if oo == o), default=0)
        assert kx.count(o) == sum(1 for oo, _ in x if oo == o)


@given(models, st.sampled_from([A, B, C]), st.integers(1, 40), st.integers(0, 5))
def test_ranges(model: Model, origin: bytes, first: int, extra: int) -> None:
    k = from_model(model)
    last = first + extra
    wanted = {(origin, s) for s in range(first, last + 1)}
    assert k.contains_range(origin, first, last) == (wanted <= model)
    assert k.overlaps(origin, first, last) == bool(wanted & model)
    assert to_model(k.with_range(origin, first, last)) == model | wanted
    assert Knowledge.of(origin, first, last) == from_model(wanted)


@given(models)
def test_wire_round_trip(model: Model) -> None:
    k = from_model(model)
    assert Knowledge.from_wire(k.to_wire()) == k
    assert Knowledge.from_bytes(k.to_bytes()) == k
    assert k.to_bytes() == packb(k.to_wire())
    assert eval(repr(k)) == k  # the repr is valid Python
