"""offsync.unpack: the one strict decoder of untrusted msgpack and the limits it owns.

Each rule is checked on both tiers: small inputs decoded at once, and inputs that go
through the census first (``census_first`` makes every input take the census, by
raising the per-byte figure that sizes the first tier).
"""

from __future__ import annotations

import ast
import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest

import offsync.unpack
from offsync.encoding import packb
from offsync.errors import BundleFormatError, LimitExceededError
from offsync.limits import Limits
from offsync.unpack import (
    ARRAY_COST,
    FAST_MAX_ITEMS,
    MAX_DEPTH,
    VALUE_COST,
    WORST_BYTES_PER_BYTE,
    Budget,
    check_cost,
    unpack,
)

TIERS = pytest.mark.parametrize("first", [False, True], ids=["at-once", "census"])


@contextmanager
def census_first(on: bool = True) -> Iterator[None]:
    """Every input takes the census (no input is small enough for the first tier)."""
    with pytest.MonkeyPatch.context() as patch:
        if on:
            patch.setattr(offsync.unpack, "WORST_BYTES_PER_BYTE", 1 << 40)
        yield


def ext(code: int, data: bytes) -> bytes:
    return b"\xc7" + bytes([len(data)]) + code.to_bytes(1, "big", signed=True) + data


@TIERS
@pytest.mark.parametrize("code", [0, 1, 42, 127, -2, -128])
def test_extension_types_are_refused(first: bool, code: int) -> None:
    with census_first(first), pytest.raises(BundleFormatError, match="extension type"):
        unpack(b"\x92\x01" + ext(code, b"abc"), "t")


@TIERS
def test_timestamps_are_refused_anywhere(first: bool) -> None:
    stamp = msgpack.packb(msgpack.Timestamp(1_700_000_000, 5))
    now = msgpack.packb(datetime.datetime.now(datetime.UTC), datetime=True)
    for data in (
        stamp,
        now,
        packb([1, msgpack.Timestamp(0, 0)]),
        packb({"x": [[msgpack.Timestamp(0, 0)]]}),
    ):
        for canonical in (False, True):
            with census_first(first), pytest.raises(BundleFormatError, match=r"timestamp|type"):
                unpack(data, "t", canonical=canonical)


@TIERS
def test_map_keys_must_be_sorted_unique_strings(first: bool) -> None:
    unsorted = b"\x82" + packb("b") + packb(1) + packb("a") + packb(2)
    duplicate = b"\x82" + packb("a") + packb(1) + packb("a") + packb(2)
    with census_first(first):
        for data in (unsorted, duplicate, b"\x91" + b"\x81" + packb("x") + duplicate):
            with pytest.raises(BundleFormatError, match="sorted"):
                unpack(data, "t")
        for key in (1, b"a", None, [1]):
            with pytest.raises(BundleFormatError, match=r"strings|not valid"):
                unpack(b"\x81" + packb(key) + packb(1), "t")


@TIERS
def test_truncated_trailing_and_reserved_bytes_are_refused(first: bool) -> None:
    good = packb({"a": [1, "two", b"3", 4.5]})
    with census_first(first):
        assert unpack(good, "t") == {"a": [1, "two", b"3", 4.5]}
        for cut in range(len(good)):
            with pytest.raises(BundleFormatError):
                unpack(good[:cut], "t")
        for bad in (good + b"\x00", b"\xc1", b"\x91\xc1", b"\xa2\xff\xfe"):
            with pytest.raises(BundleFormatError):
                unpack(bad, "t")


def test_what_is_not_bytes_is_refused() -> None:
    for value in ("text", bytearray(b"\x90"), memoryview(b"\x90"), None):
        with pytest.raises(BundleFormatError, match="bytes"):
            unpack(value, "t")  # type: ignore[arg-type]


@TIERS
def test_depth_beyond_the_format_is_malformed_beyond_the_decoder_a_limit(first: bool) -> None:
    deepest = b"\x91" * (MAX_DEPTH - 1) + b"\x90"
    with census_first(first):
        assert unpack(b"\x92\x01\x02", "t", max_depth=1) == [1, 2]
        for nested in (b"\x91\x91\x01", b"\x91\x90", b"\x91\x80"):
            with pytest.raises(BundleFormatError, match="format allows"):
                unpack(nested, "t", max_depth=1)
        assert unpack(deepest, "t") is not None
        with pytest.raises(LimitExceededError, match="nested too deeply"):
            unpack(b"\x91" + deepest, "t")


@TIERS
def test_declared_lengths_are_checked_against_the_bytes_that_follow(first: bool) -> None:
    with census_first(first):
        for claim in (b"\xdd\xff\xff\xff\xff", b"\xdf\x00\x01\x00\x00" + b"\xa0\x01" * 100):
            with pytest.raises(BundleFormatError):
                unpack(claim, "t")


@TIERS
def test_max_items_bounds_every_array_and_map(first: bool) -> None:
    with census_first(first):
        assert unpack(packb([[1, 2], {"a": 1}]), "t", max_items=2)
        for data in (packb([1, 2, 3]), packb([[1, 2, 3]]), packb([{"a": 1, "b": 2, "c": 3}])):
            with pytest.raises(LimitExceededError, match="over the limit of 2"):
                unpack(data, "t", max_items=2)


def test_long_arrays_within_the_first_tier_size_take_the_census() -> None:
    """An array longer than FAST_MAX_ITEMS is never decoded blind, and still decodes."""
    data = packb(list(range(FAST_MAX_ITEMS * 2)))
    assert len(data) < Limits().max_decode_bytes // WORST_BYTES_PER_BYTE
    assert unpack(data, "t") == list(range(FAST_MAX_ITEMS * 2))


def test_the_budget_refuses_what_would_take_too_much_memory() -> None:
    empties = packb([[]] * 1000)
    cost = VALUE_COST + ARRAY_COST + 1000 * (VALUE_COST + ARRAY_COST)
    with census_first():
        assert unpack(empties, "t", Limits(max_decode_bytes=cost)) == [[]] * 1000
        with pytest.raises(LimitExceededError, match="max_decode_bytes"):
            unpack(empties, "t", Limits(max_decode_bytes=cost - 1))
    # Large inputs take the census whatever the tuning: 1000 empty lists per 1000 bytes.
    many = packb([[]] * 1_000_000)
    with pytest.raises(LimitExceededError, match="max_decode_bytes"):
        unpack(many, "t")
    with pytest.raises(LimitExceededError, match="max_decode_bytes"):
        check_cost(empties, "t", cost - 1)
    check_cost(empties, "t", cost)


def test_canonical_refuses_other_encodings_of_the_same_value() -> None:
    assert unpack(packb([1, "a"]), "t", canonical=True) == [1, "a"]
    for other in (b"\xdc\x00\x02\x01\xa1a", b"\x92\xcc\x01\xa1a", b"\x92\x01\xd9\x01a"):
        assert unpack(other, "t") == [1, "a"]
        with pytest.raises(BundleFormatError, match="canonical"):
            unpack(other, "t", canonical=True)


def test_budget_charges_until_the_limit() -> None:
    budget = Budget(100, "thing")
    budget.charge(60)
    budget.charge(40)
    with pytest.raises(LimitExceededError, match=r"thing.*100 bytes"):
        budget.charge(1)


#: Where offsync may call msgpack's decoder directly, and why: bytes it wrote itself.
TRUSTED_DECODES = {
    "unpack.py": "the unpacker",
    "encoding.py": "decode_fields: canonical fields this replica built or validated",
    "change.py": "Change.from_row: the replica's own unsealed changes",
    "v3/change.py": "Change.from_row (format 3): the replica's own unsealed changes",
    "stores/base.py": "parent ids the store wrote",
    "replica/core.py": "lists of segments the store wrote, each decoded again by Segment.decode",
    "replica/replica.py": "the order of unknown signers, as the store wrote it",
    "replica/blobs.py": "the blobs asked for, as the store wrote them (BlobRef.from_bytes each)",
    "plan/receipts.py": "receipts the store kept, verified and canonical when kept",
    "replica/redacting.py": "the set of erased records, as the store wrote it",
}


def test_only_the_unpacker_decodes_untrusted_msgpack() -> None:
    """No module decodes msgpack with msgpack's own defaults, except where the bytes
    are the replica's own (listed with the reason)."""
    src = Path(offsync.unpack.__file__).parent
    users = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("unpackb", "unpack", "Unpacker")
                and isinstance(node.value, ast.Name)
                and node.value.id == "msgpack"
            ):
                users.add(str(path.relative_to(src)))
    assert users <= set(TRUSTED_DECODES), sorted(users - set(TRUSTED_DECODES))
