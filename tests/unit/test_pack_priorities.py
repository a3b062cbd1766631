"""The packer's order (docs/spec.md §9.5): by the collection's priority (lower
first, default 100, ``_trust`` always 0), then stream, then seq."""

from __future__ import annotations

from offsync.plan.pack import DEFAULT_PRIORITY, Item, bundles, prioritised, priority_map
from offsync.scope import Partition, Stream
from offsync.segindex import HeldSegment
from offsync.status import Status

A, B = b"\x01" * 32, b"\x02" * 32


def item(origin: bytes, collection: str, first: int, size: int = 100) -> Item:
    seg = HeldSegment(first, first + 9, bytes(32), bytes(32), Status.parse("applied"), size)
    return Stream(origin, Partition(collection, "")), seg


def order(items: list[Item], priorities: dict[str, int] | None) -> list[tuple[str, int]]:
    return [(s.collection, seg.first) for s, seg in prioritised(items, priority_map(priorities))]


def test_lower_priority_first_then_stream_then_seq() -> None:
    items = [
        item(A, "corrections", 1),
        item(B, "doses", 11),
        item(A, "doses", 11),
        item(A, "doses", 1),
        item(A, "births", 1),
        item(A, "_trust", 1),
    ]
    got = order(items, {"births": 10, "doses": 10, "corrections": 200})
    assert got == [
        ("_trust", 1),
        ("births", 1),
        ("doses", 1),
        ("doses", 11),
        ("doses", 11),  # origin B's stream after origin A's
        ("corrections", 1),
    ]
    ordered = prioritised(items, priority_map({"births": 10, "doses": 10}))
    assert [s.origin for s, _ in ordered if s.collection == "doses"] == [A, A, B]


def test_defaults_keep_stream_order_with_trust_first() -> None:
    items = [item(A, "births", 1), item(A, "_trust", 1), item(A, "corrections", 1)]
    assert order(items, None) == [("_trust", 1), ("births", 1), ("corrections", 1)]
    assert priority_map({"_trust": 7, "doses": 3}) == {"_trust": 0, "doses": 3}
    assert DEFAULT_PRIORITY == 100


def test_the_first_bundle_holds_what_matters_first() -> None:
    items = [item(A, "corrections", 1, size=50_000), item(A, "doses", 1, size=1_000)]
    first = next(bundles(prioritised(items, priority_map({"doses": 1})), 20_000))
    assert [s.collection for s, _ in first] == ["doses"]
