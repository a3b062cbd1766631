"""The format-3 column codec (docs/spec.md §5): round trips of arbitrary changes,
exactly one valid encoding per run of changes, and the sealing checks."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import pytest

from offsync.change import (
    CANONICAL_NAN,
    DELETE,
    ERASE,
    PUT,
    Change,
    ChangeId,
    canonical_fields,
    erase_fields,
)
from offsync.columns import MAX_SHAPE_DEPTH, decode_block, encode_block
from offsync.encoding import decode_fields, packb
from offsync.errors import BundleFormatError, LimitExceededError, UsageError
from offsync.limits import Limits
from offsync.scope import Partition
from tests.helpers.v3_strategies import SIGNER

A = SIGNER.public_key
SECRET = bytes(range(32))
P = Partition("residents", "3519")


def put(seq: int, key: str = "3519k", **fields: Any) -> Change:
    return Change(
        A,
        seq,
        1000 + seq,
        "residents",
        key,
        PUT,
        canonical_fields(fields or {"v": seq}),
        (),
        "3519",
    )


def round_trip(changes: list[Change], partition: Partition = P) -> list[Change]:
    plain, skeleton = encode_block(changes, partition, SECRET)
    block = decode_block(plain, A, partition, changes[0].seq)
    assert block.secret == SECRET and packb(block.skeleton) == skeleton
    assert plain.startswith(b"\x93" + skeleton)
    return block.changes


def test_dictionary_coding_thresholds_are_exact() -> None:
    def coded(values: list[str]) -> bool:
        changes = [put(i + 1, f"3519{i:04d}", v=v) for i, v in enumerate(values)]
        plain, _ = encode_block(changes, P, SECRET)
        column = msgpack.unpackb(plain, raw=False)[1][2][0][0]
        assert round_trip(changes) == changes
        return column[0] is not None

    assert coded(["a", "a"]) and not coded(["a", "b"])  # 2d <= rows
    assert coded(["a", "b", "a", "b"]) and not coded(["a", "b", "c", "a"])
    assert coded([str(i % 256) for i in range(600)])  # 256 distinct
    assert not coded([str(i % 257) for i in range(600)])  # 257 distinct
    assert not coded(["a", "a", "a", 1])  # type: ignore[list-item]  # not all str


def test_floats_nan_and_signed_zero() -> None:
    payload = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    negative_nan = struct.unpack(">d", bytes.fromhex("fff8000000000000"))[0]
    for value in (payload, negative_nan, math.nan):
        assert canonical_fields({"v": value}) == b"\x81\xa1v" + CANONICAL_NAN
    values = [0.0, -0.0, math.inf, -math.inf, math.nan, 1, True, 1.0]
    changes = [put(i + 1, f"3519{i}", v=v) for i, v in enumerate(values)]
    assert [c.fields for c in round_trip(changes)] == [c.fields for c in changes]
    with pytest.raises(UsageError, match="NaN"):  # sealing refuses fields made otherwise
        encode_block(
            [put(1)._replace(fields=b"\x81\xa1v\xcb\x7f\xf8\x00\x00\x00\x00\x00\x01")], P, SECRET
        )


def test_maps_at_the_deepest_shape_travel_as_values_and_not_above() -> None:
    deep: Any = {"leaf": 1}
    for _ in range(MAX_SHAPE_DEPTH + 3):
        deep = {"m": deep}
    change = put(1, x=deep, e={})
    assert round_trip([change]) == [change]
    value = msgpack.unpackb(encode_block([change], P, SECRET)[0], raw=False)
    assert value[1][0][0][0] == ["e", []]  # an empty nested map is a nested shape


def test_field_values_deeper_than_level_500_are_refused() -> None:
    def nested(levels: int) -> bytes:
        """A block whose one put holds {"v": [[...]]} with values down to ``levels``."""
        block = msgpack.unpackb(encode_block([put(1, v="PLACEHOLDER")], P, SECRET)[0], raw=False)
        data = packb(block)
        deep = b"\x91" * (levels - 2) + b"\x90"  # the list at level 2, innermost at levels
        return data.replace(packb("PLACEHOLDER"), deep)

    assert decode_block(nested(500), A, P, 1).changes[0].fields is not None
    with pytest.raises(BundleFormatError, match="level 500"):
        decode_block(nested(501), A, P, 1)
    with pytest.raises(LimitExceededError):  # deeper than any msgpack item may nest
        decode_block(nested(1100), A, P, 1)


def test_keys_front_coded_by_code_points() -> None:
    keys = ["3519é1", "3519é2", "3519\U0001f600", "3519\U0001f600x", "3519"]
    changes = [put(i + 1, k) for i, k in enumerate(keys)]
    assert round_trip(changes) == changes
    prefixes = msgpack.unpackb(encode_block(changes, P, SECRET)[0], raw=False)[0][1]
    assert prefixes == [0, 5, 4, 5, 4]


def test_erase_orders_and_authors_and_schema() -> None:
    changes = [
        put(1)._replace(author="clerk-2", schema=3),
        put(2)._replace(author="clerk-1"),
        Change(
            A, 3, 1003, "residents", "3519k", ERASE, erase_fields("court"), (), "3519", 0, "clerk-2"
        ),
        Change(A, 4, 1004, "residents", "3519k", DELETE, None, (ChangeId(A, 3),), "3519"),
    ]
    assert round_trip(changes) == changes
    skeleton = msgpack.unpackb(encode_block(changes, P, SECRET)[0], raw=False)[0]
    assert skeleton[6:] == [["clerk-2", "clerk-1"], [0, 1, 0, None]]
    assert skeleton[3] == [PUT, PUT, ERASE, DELETE] and skeleton[5] == [3, 0, 0, 0]


@pytest.mark.parametrize(
    "bad",
    [
        lambda c: c._replace(collection="doses"),
        lambda c: c._replace(prefix="35"),
        lambda c: c._replace(key="3520x"),
        lambda c: c._replace(key="3519" + "x" * 509),
        lambda c: c._replace(hlc=1 << 63),
        lambda c: c._replace(op=3),
        lambda c: c._replace(op=DELETE),
        lambda c: c._replace(fields=None),
        lambda c: c._replace(op=ERASE),
        lambda c: c._replace(schema=1 << 32),
        lambda c: c._replace(author=""),
        lambda c: c._replace(author="a" * 65),
        lambda c: c._replace(parents=(ChangeId(A, c.seq),)),
        lambda c: c._replace(parents=(ChangeId(bytes(32), 2), ChangeId(bytes(32), 1))),
        lambda c: c._replace(parents=tuple(ChangeId(bytes(32), i) for i in range(1, 66))),
        lambda c: c._replace(fields=b"x" * (1 << 20 | 1)),
        lambda c: c._replace(hlc=-1),
        lambda c: c._replace(hlc=True),
        lambda c: c._replace(key=""),
        lambda c: c._replace(schema=-1),
        lambda c: c._replace(fields=b"\x81\xa1v\xcb\x7f\xf8" + bytes(5) + b"\x01"),
    ],
)
def test_sealing_refuses_what_receivers_would_refuse(bad: Any) -> None:
    with pytest.raises(UsageError):
        encode_block([bad(put(1))], P, SECRET)
    # Among plain changes (checked a column at a time until something is not plain):
    changes = [put(seq, f"3519k{seq}") for seq in range(1, 6)]
    changes[2] = bad(changes[2])
    with pytest.raises(UsageError):
        encode_block(changes, P, SECRET)


def test_sealing_needs_a_secret_and_some_changes() -> None:
    with pytest.raises(UsageError):
        encode_block([put(1)], P, b"short")
    with pytest.raises(UsageError):
        encode_block([], P, SECRET)
    with pytest.raises(UsageError):
        encode_block([put(1)] * 3, P, SECRET, Limits(max_segment_changes=2))


def test_sealing_from_held_values_matches_decoding_at_every_depth() -> None:
    """Nested maps become nested shapes down to the deepest shape level and leaves
    below it, whether the writer's decoded values are given or the bytes decoded."""
    deep: dict[str, Any] = {"z": 1}
    for level in range(20):
        deep = {"m": deep, "n": level, "e": {}}
    changes = [put(1, "3519a", a=deep), put(2, "3519b", a={"x": {"y": "s"}}, b=[1])]
    changes.append(put(3, "3519c", a={"x": {"y": "t"}}, b=[2]))
    values = [decode_fields(c.fields) for c in changes if c.fields is not None]
    assert encode_block(changes, P, SECRET, values=values) == encode_block(changes, P, SECRET)
    assert round_trip(changes) == changes
