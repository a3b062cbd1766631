"""Knowledge: seq intervals per origin, checked against a plain set of change ids."""

from __future__ import annotations

from typing import Any

import pytest

from offsync.encoding import packb
from offsync.errors import BundleFormatError, LimitExceededError
from offsync.knowledge import MAX_SEQ, Knowledge
from offsync.limits import Limits

A, B, C = (bytes([i]) * 32 for i in (1, 2, 3))


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
