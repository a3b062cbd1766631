"""Changes: the column encoding of a segment's changes and its validation."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest

from offsync.change import (
    DELETE,
    MAX_SHAPE_DEPTH,
    PUT,
    Change,
    ChangeId,
    decode_changes,
    encode_changes,
)
from offsync.clock import MAX_HLC
from offsync.encoding import canonical_fields, decode_fields, packb
from offsync.errors import BundleFormatError, LimitExceededError
from offsync.limits import Limits
from offsync.testing.policies import ORIGINS

A, B = ORIGINS[0], ORIGINS[1]


def put(seq: int, key: str = "k", parents: tuple[ChangeId, ...] = (), **fields: Any) -> Change:
    return Change(
        A, seq, 1000 + seq, "c", key, PUT, canonical_fields(fields or {"v": seq}), parents
    )


def test_properties() -> None:
    c = Change(A, 3, 77, "c", "k", DELETE, None, (ChangeId(B, 1),))
    assert c.id == ChangeId(A, 3)
    assert c.stamp == (77, A, 3)
    assert c.is_delete
    assert c.values() == {}
    assert put(1, x=1).values() == {"x": 1}
    assert Change.from_row(A, 3, c.to_row()) == c


def test_float_signs_and_bool_int_stay_distinct() -> None:
    values: list[dict[str, Any]] = [
        {"v": 0.0},
        {"v": -0.0},
        {"v": 1},
        {"v": True},
        {"v": 1.0},
        {"v": math.nan},
    ]
    changes = [put(i + 1, key=f"k{i}", **v) for i, v in enumerate(values)]
    decoded = decode_changes(encode_changes(changes), A, 1)
    assert [c.fields for c in decoded] == [c.fields for c in changes]


def test_maps_nested_deeper_than_the_shape_limit_travel_as_values() -> None:
    deep: Any = {"leaf": 1}
    for _ in range(MAX_SHAPE_DEPTH + 3):
        deep = {"n": deep}
    change = put(1, top=deep)
    (decoded,) = decode_changes(encode_changes([change]), A, 1)
    assert decode_fields(decoded.fields or b"") == {"top": deep}


def test_repeated_strings_are_dictionary_coded() -> None:
    changes = [put(i + 1, key=f"k{i}", religion="Islam", n=i) for i in range(10)]
    items = msgpack.unpackb(encode_changes(changes))
    religion_column = items[7][0][1]  # shape 0: leaves n, religion
    assert religion_column == [["Islam"], bytes(10)]
    assert items[7][0][0] == [None, list(range(10))]


def test_decoded_seqs_follow_the_segment() -> None:
    data = encode_changes([put(1), put(2)])
    assert [c.id for c in decode_changes(data, B, 10)] == [ChangeId(B, 10), ChangeId(B, 11)]


def test_keys_are_front_coded() -> None:
    keys = ["3519014107850001", "3519014107850001/1", "3519014107850001/2", "3519015", "x"]
    changes = [put(i + 1, key=k) for i, k in enumerate(keys)]
    items = msgpack.unpackb(encode_changes(changes))
    assert items[3] == [0, 16, 17, 6, 0]
    assert items[4] == ["3519014107850001", "/1", "2", "5", "x"]
    assert [c.key for c in decode_changes(packb(items), A, 1)] == keys


def columns(**override: Any) -> list[Any]:
    """The columns of one valid put ({"a": 1} to c/k at hlc 5), with items replaced."""
    item: dict[str, Any] = {
        "hlc": [5],
        "collections": ["c"],
        "collection_of": [0],
        "key_prefix": [0],
        "key_suffix": ["k"],
        "shapes": [["a"]],
        "shape_of": [0],
        "columns": [[[None, [1]]]],
        "parents": [[]],
    }
    item.update(override)
    return list(item.values())


def test_the_base_columns_decode() -> None:
    (c,) = decode_changes(packb(columns()), A, 10)
    assert c == Change(A, 10, 5, "c", "k", PUT, canonical_fields({"a": 1}), ())
    (d,) = decode_changes(packb(columns(shape_of=[None], shapes=[], columns=[])), A, 10)
    assert d.op == DELETE and d.fields is None


@pytest.mark.parametrize(
    "items",
    [
        [],
        {"a": 1},
        columns()[:8],  # eight columns
        [*columns(), []],  # ten
        columns(hlc=[]),
        columns(hlc=[-1]),
        columns(hlc=[2.5]),
        columns(hlc=["5"]),
        columns(hlc=[True]),
        columns(hlc=5),
        columns(hlc=[MAX_HLC, 1], collection_of=[0, 0]),  # second hlc reaches 2^63
        columns(collections=[]),
        columns(collections=[""]),
        columns(collections=[b"c"]),
        columns(collections=["c", "c"]),
        columns(collection_of=[1]),
        columns(collection_of=[-1]),
        columns(collection_of=[True]),
        columns(collection_of=[0, 0]),  # two indexes for one change
        columns(key_prefix=[1]),  # longer than the previous (no) key
        columns(key_prefix=[-1]),
        columns(key_suffix=[""]),  # an empty key
        columns(key_suffix=[7]),
        columns(key_suffix=["k", "l"]),
        columns(shape_of=[1]),
        columns(shape_of=[-1]),
        columns(shape_of=[True]),
        columns(shape_of=["0"]),
        columns(shape_of=[]),
        columns(shapes=[["b", "a"]], columns=[[[None, [1]], [None, [2]]]]),  # unsorted
        columns(shapes=[["a", "a"]], columns=[[[None, [1]], [None, [2]]]]),  # duplicate
        columns(shapes=[[1]]),
        columns(shapes=[[["a"]]]),  # a nested entry needs [name, shape]
        columns(shapes=[[["a", "b"]]]),
        columns(shapes=["a"]),
        columns(shapes=[["a"], ["b"]]),  # more shapes than column sets
        columns(columns=[[]]),  # a leaf without its column
        columns(columns=[[[None, [1]], [None, [2]]]]),  # a column without a leaf
        columns(columns=[[[None, [1, 2]]]]),  # more values than rows
        columns(columns=[[[None]]]),
        columns(columns=[[[None, 1]]]),
        columns(columns=[[[["x"], b"\x01"]]]),  # index outside its table
        columns(columns=[[[["x"], [0]]]]),  # indexes are one byte each, in a bin
        columns(columns=[[[["x"], b"\x00\x00"]]]),  # more indexes than rows
        columns(columns=[[[[], b""]]]),  # an empty table
        columns(columns=[[[["x"] * 257, b"\x00"]]]),  # a table over 256 entries
        columns(columns=[[["x", [0]]]]),  # table must be an array
        columns(columns=[[[None, [{"b": 1, "a": 2}]]]]),  # map keys out of order
        columns(columns=[[[None, [[{"b": 1, "a": 2}]]]]]),
        columns(parents="x"),
        columns(parents=["x"]),
        columns(parents=[None]),
        columns(parents=[[[A]]]),
        columns(parents=[[[b"short", 1]]]),
        columns(parents=[[[B, 0]]]),
        columns(parents=[[[B, 1 << 63]]]),
        columns(parents=[[[B, 2], [B, 1]]]),  # unsorted
        columns(parents=[[[B, 1], [B, 1]]]),  # duplicate
        columns(parents=[[[A, 10]]]),  # a change cannot descend from its own later change
        columns(parents=[[[A, 11]]]),
    ],
)
def test_refuses_malformed(items: Any) -> None:
    with pytest.raises(BundleFormatError):
        decode_changes(packb(items), A, 10)


def _nested_shape(depth: int) -> list[Any]:
    shape: list[Any] = ["a"]
    for _ in range(depth - 1):
        shape = [["n", shape]]
    return shape


def test_shape_depth_is_bounded() -> None:
    ok = columns(shapes=[_nested_shape(MAX_SHAPE_DEPTH)])
    decode_changes(packb(ok), A, 1)
    with pytest.raises(BundleFormatError):
        decode_changes(packb(columns(shapes=[_nested_shape(MAX_SHAPE_DEPTH + 1)])), A, 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        packb(columns()) + b"\x00",
        packb(columns())[:-1],
        packb(columns()).replace(b"\x91\x05", b"\x91\xcc\x05", 1),  # hlc not in shortest form
        packb(columns()).replace(b"\x91\x01", b"\x91\xc7\x01\x05x", 1),  # ext type value
        packb(columns()).replace(b"\x91\x01", b"\x91\xd6\xff\x00\x00\x00\x01", 1),  # timestamp
        packb(columns()).replace(b"\x91\x01", b"\x91\xca\x3f\x80\x00\x00", 1),  # float32
        msgpack.packb([{"a": 1}]),
    ],
)
def test_refuses_bad_bytes(data: bytes) -> None:
    with pytest.raises(BundleFormatError):
        decode_changes(data, A, 1)


def test_limits() -> None:
    two = columns(
        hlc=[5, 1],
        collection_of=[0, 0],
        key_prefix=[0, 0],
        key_suffix=["k", "l"],
        shape_of=[0, 0],
        columns=[[[None, [1, 2]]]],
        parents=[[], []],
    )
    decode_changes(packb(two), A, 1, Limits(max_segment_changes=2))
    with pytest.raises(LimitExceededError):
        decode_changes(packb(two), A, 1, Limits(max_segment_changes=1))
    with pytest.raises(LimitExceededError):
        decode_changes(packb(columns(key_suffix=["k" * 513])), A, 1)
    with pytest.raises(LimitExceededError):
        decode_changes(packb(columns(key_suffix=["é" * 257])), A, 1)  # 514 UTF-8 bytes
    decode_changes(packb(columns(key_suffix=["é" * 256])), A, 1)
    with pytest.raises(LimitExceededError):
        decode_changes(packb(columns(collections=["c" * 65])), A, 1)
    parents = [[bytes([i]) * 32, 1] for i in range(4, 4 + 65)]
    with pytest.raises(LimitExceededError):
        decode_changes(packb(columns(parents=[parents])), A, 1)
    decode_changes(packb(columns(parents=[parents[:64]])), A, 1)
    big = columns(columns=[[[None, ["x" * 100]]]])
    with pytest.raises(LimitExceededError):
        decode_changes(packb(big), A, 1, Limits(max_fields_bytes=50))
    decode_changes(packb(big), A, 1, Limits(max_fields_bytes=200))
    with pytest.raises((LimitExceededError, BundleFormatError)):
        decode_changes(b"\x91" * 5000 + b"\xc0", A, 1)


def front_coded(keys: list[str]) -> tuple[list[int], list[str]]:
    """The one valid front coding of ``keys`` (docs/spec.md §4.2): longest shared prefixes."""
    prefixes, suffixes, previous = [], [], ""
    for key in keys:
        n = next((i for i, (x, y) in enumerate(zip(previous, key, strict=False)) if x != y), None)
        n = min(len(previous), len(key)) if n is None else n
        prefixes.append(n)
        suffixes.append(key[n:])
        previous = key
    return prefixes, suffixes


def _rows_of_one_shape(n: int, name: str, column: list[Any]) -> list[Any]:
    prefixes, suffixes = front_coded([f"k{i}" for i in range(n)])
    return columns(
        hlc=[1] * n,
        collection_of=[0] * n,
        key_prefix=prefixes,
        key_suffix=suffixes,
        shapes=[[name]],
        shape_of=[0] * n,
        columns=[[column]],
        parents=[[]] * n,
    )


@pytest.mark.parametrize(
    "items",
    [
        # one long dictionary value repeated by 2000 one-byte indexes
        _rows_of_one_shape(2000, "a", [["x" * 1000], bytes(2000)]),
        # one long field name repeated in every rebuilt map
        _rows_of_one_shape(200, "n" * 10_000, [None, [1] * 200]),
    ],
    ids=["dictionary value", "field name"],
)
def test_rebuilt_fields_are_bounded_before_they_are_built(items: list[Any]) -> None:
    """Columns hold a name or a dictionary value once; every rebuilt map repeats it.
    What they repeat is bounded by the block limit before any map is built."""
    data = packb(items)
    assert len(data) < 40_000  # rebuilds to about 2 MB
    with pytest.raises(LimitExceededError):
        decode_changes(data, A, 1, Limits(max_block_bytes=1_000_000))
    assert len(decode_changes(data, A, 1, Limits(max_block_bytes=4_000_000))) > 0
