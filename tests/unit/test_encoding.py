"""Strict msgpack decoding of untrusted bytes and the canonical encoding of fields."""

from __future__ import annotations

import datetime
import struct
from typing import Any

import msgpack
import pytest

from offsync.encoding import canonical_fields, packb, unpack_strict
from offsync.errors import BundleFormatError, LimitExceededError

LIMIT = 1 << 20


def ext(code: int, data: bytes) -> bytes:
    """An ext8 value of any type code, reserved negative ones included."""
    return b"\xc7" + bytes([len(data)]) + code.to_bytes(1, "big", signed=True) + data


# -- unpack_strict -------------------------------------------------------------------


def test_unpack_strict_round_trips_plain_values() -> None:
    value = {"a": [1, -2, 3.5, None, True], "b": b"\x00\xff", "c": {"d": "e"}}
    assert unpack_strict(packb(value), "t") == value


@pytest.mark.parametrize("code", [0, 1, 42, 127, -2, -128])
def test_unpack_strict_refuses_ext_types(code: int) -> None:
    with pytest.raises(BundleFormatError, match="extension type"):
        unpack_strict(ext(code, b"abc"), "t")


def test_unpack_strict_refuses_timestamps() -> None:
    stamp = msgpack.packb(msgpack.Timestamp(1_700_000_000, 5))
    assert stamp[0] in (0xD6, 0xD7, 0xC7)  # really an ext-encoded timestamp
    for data in (
        stamp,
        msgpack.packb(msgpack.Timestamp(1, 0)),  # 32-bit form
        msgpack.packb(msgpack.Timestamp(1 << 40, 0)),  # 96-bit form
        packb([1, msgpack.Timestamp(0, 0)]),
        packb({"x": msgpack.Timestamp(0, 0)}),
        packb({"x": [[msgpack.Timestamp(0, 0)]]}),
    ):
        with pytest.raises(BundleFormatError, match=r"timestamp|not valid"):
            unpack_strict(data, "t")


def test_unpack_strict_refuses_unsorted_and_duplicate_keys() -> None:
    unsorted = b"\x82" + packb("b") + packb(1) + packb("a") + packb(2)
    duplicate = b"\x82" + packb("a") + packb(1) + packb("a") + packb(2)
    for data in (unsorted, duplicate):
        with pytest.raises(BundleFormatError, match="sorted"):
            unpack_strict(data, "t")
    # The same check applies at any depth.
    deep = b"\x91" + b"\x81" + packb("x") + duplicate
    with pytest.raises(BundleFormatError):
        unpack_strict(deep, "t")


def test_unpack_strict_refuses_non_string_keys() -> None:
    for key in (1, b"a", None):
        data = b"\x81" + packb(key) + packb(1)
        with pytest.raises(BundleFormatError):
            unpack_strict(data, "t")


def test_unpack_strict_refuses_trailing_and_truncated_bytes() -> None:
    good = packb({"a": [1, 2, 3]})
    with pytest.raises(BundleFormatError):
        unpack_strict(good + b"\x00", "t")
    for cut in range(len(good)):
        with pytest.raises(BundleFormatError):
            unpack_strict(good[:cut], "t")


def test_unpack_strict_refuses_deep_nesting() -> None:
    data = b"\x91" * 100_000 + b"\xc0"
    with pytest.raises((LimitExceededError, BundleFormatError)):
        unpack_strict(data, "t")


# -- canonical fields --------------------------------------------------------------------


def test_canonical_fields_sorts_keys_at_every_depth() -> None:
    a = canonical_fields({"b": 1, "a": {"y": 2, "x": [{"q": 1, "p": 2}]}})
    b = canonical_fields({"a": {"x": [{"p": 2, "q": 1}], "y": 2}, "b": 1})
    assert a == b
    assert a == packb({"a": {"x": [{"p": 2, "q": 1}], "y": 2}, "b": 1})
    assert a.index(b"\xa1a") < a.index(b"\xa1b")


def test_canonical_fields_is_shortest_form() -> None:
    assert canonical_fields({"n": 1}) == b"\x81\xa1n\x01"
    assert canonical_fields({"n": -1}) == b"\x81\xa1n\xff"
    assert canonical_fields({"n": 300}) == b"\x81\xa1n\xcd\x01\x2c"
    assert canonical_fields({"f": 1.5}) == b"\x81\xa1f\xcb" + struct.pack(">d", 1.5)
    assert canonical_fields({"b": b"\x01"}) == b"\x81\xa1b\xc4\x01\x01"
    assert canonical_fields({"t": (1, 2)}) == canonical_fields({"t": [1, 2]})


@pytest.mark.parametrize(
    "bad",
    [
        {"d": datetime.datetime(2020, 1, 1)},
        {"s": {1, 2}},
        {1: "x"},
        {"m": {2: "x"}},
        {"n": 1 << 64},
        {"o": object()},
    ],
)
def test_canonical_fields_refuses_values_it_cannot_hold(bad: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        canonical_fields(bad)


def test_canonical_fields_needs_a_mapping() -> None:
    with pytest.raises(TypeError):
        canonical_fields([("a", 1)])  # type: ignore[arg-type]
