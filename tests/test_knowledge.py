"""Knowledge: seq intervals per origin, checked against a plain set of change ids."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from offsync.encoding import packb
from offsync.errors import BundleFormatError, LimitExceededError
from offsync.knowledge import MAX_SEQ, Knowledge
from offsync.limits import Limits

A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))

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


def test_wire_form() -> None:
    k = Knowledge({B: [(5, 9), (1, 3)], A: [(1, 1), (2, 2)]})
    assert k.to_wire() == [[A, [1, 2]], [B, [1, 3, 5, 9]]]


@pytest.mark.parametrize(
    "wire",
    [
        {},  # not an array
        [[A]],  # entry of one item
        [[A, [1, 2], 3]],
        [[b"short", [1, 2]]],
        [["not bytes" * 4, [1, 2]]],
        [[B, [1, 2]], [A, [1, 2]]],  # origins unsorted
        [[A, [1, 2]], [A, [4, 5]]],  # an origin twice
        [[A, []]],  # no intervals
        [[A, [1]]],  # odd count
        [[A, [0, 2]]],  # seq 0
        [[A, [3, 2]]],  # reversed
        [[A, [1, MAX_SEQ + 1]]],  # out of range
        [[A, [-1, 2]]],
        [[A, [5, 6, 1, 2]]],  # unsorted intervals
        [[A, [1, 5, 3, 8]]],  # overlapping
        [[A, [1, 2, 3, 4]]],  # adjacent: not the normal form
        [[A, [1, 2.0]]],  # float
        [[A, [True, 2]]],  # bool is not an int here
        [[A, "1-2"]],
    ],
)
def test_from_wire_refuses_malformed(wire: Any) -> None:
    with pytest.raises(BundleFormatError):
        Knowledge.from_wire(wire)


def test_from_wire_limits() -> None:
    wire = [[A, [1, 1, 3, 3, 5, 5]], [B, [1, 1]]]
    Knowledge.from_wire(wire, Limits(max_origins=2, max_intervals=3))
    with pytest.raises(LimitExceededError):
        Knowledge.from_wire(wire, Limits(max_origins=1))
    with pytest.raises(LimitExceededError):
        Knowledge.from_wire(wire, Limits(max_intervals=2))
    with pytest.raises(LimitExceededError):
        Knowledge.from_bytes(packb(wire), Limits(max_header_bytes=10))


def test_from_bytes_refuses_garbage() -> None:
    with pytest.raises(BundleFormatError):
        Knowledge.from_bytes(b"\xc1")
    with pytest.raises(BundleFormatError):
        Knowledge.from_bytes(packb([[A, [1, 2]]]) + b"\x00")


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        Knowledge({b"short": [(1, 2)]})
    with pytest.raises(ValueError):
        Knowledge({A: [(0, 2)]})
    assert Knowledge({A: []}) == Knowledge()
