"""Segments: sealed, signed runs of one origin's changes, and their encoding."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from offsync.change import PUT, Change, encode_changes
from offsync.encoding import canonical_fields
from offsync.errors import BundleFormatError, LimitExceededError, SignatureError
from offsync.identity import Identity
from offsync.limits import Limits
from offsync.segment import NO_PREVIOUS, SEGMENT_DOMAIN, Segment, hash32

IDENT = Identity(bytes(32))
OTHER = Identity(bytes([1]) * 32)


def changes_bytes(n: int, origin: bytes = IDENT.public_key) -> bytes:
    return encode_changes(
        [
            Change(origin, i + 1, 100 + i, "c", f"k{i}", PUT, canonical_fields({"i": i}))
            for i in range(n)
        ]
    )


def sealed(first: int = 1, n: int = 2, prev: bytes = NO_PREVIOUS) -> Segment:
    return Segment.seal(IDENT, first, n, changes_bytes(n), prev)


def test_seal_and_verify() -> None:
    seg = sealed(5, 3, b"\x07" * 32)
    assert (seg.origin, seg.first_seq, seg.last_seq, seg.count) == (IDENT.public_key, 5, 7, 3)
    seg.verify()
    assert seg.signing_message == (
        SEGMENT_DOMAIN
        + IDENT.public_key
        + (5).to_bytes(8, "big")
        + (7).to_bytes(8, "big")
        + hash32(seg.changes)
        + b"\x07" * 32
    )
    assert seg.hash == hash32(seg.signing_message)
    assert len(seg.hash) == 32


def test_sealing_is_deterministic() -> None:
    assert sealed().encode() == sealed().encode()


@pytest.mark.parametrize(
    "field",
    ["origin", "first_seq", "last_seq", "prev_hash", "changes", "signature"],
)
def test_any_altered_field_fails_verification(field: str) -> None:
    seg = sealed(3, 2)
    value = {
        "origin": OTHER.public_key,
        "first_seq": 2,
        "last_seq": 5,
        "prev_hash": b"\x01" * 32,
        "changes": changes_bytes(3),
        "signature": bytes(64),
    }[field]
    forged = Segment(**{**{f: getattr(seg, f) for f in seg.__slots__}, field: value})  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        forged.verify()


def test_hash_chains() -> None:
    a = sealed(1, 2)
    b = Segment.seal(IDENT, 3, 1, changes_bytes(1), a.hash)
    assert b.prev_hash == a.hash
    assert a.hash != b.hash


@given(st.integers(1, 1000), st.integers(1, 5), st.binary(min_size=32, max_size=32))
def test_encode_decode_round_trip(first: int, n: int, prev: bytes) -> None:
    seg = Segment.seal(IDENT, first, n, changes_bytes(n), prev)
    data = seg.encode()
    back = Segment.decode(data)
    assert back == seg
    assert back.encode() == data
    back.verify()


def test_wire_layout() -> None:
    seg = sealed()
    assert msgpack.unpackb(seg.encode()) == [
        seg.origin,
        1,
        2,
        NO_PREVIOUS,
        seg.changes,
        seg.signature,
    ]


def _raw(*items: object) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        _raw(1, 2, 3),
        _raw(bytes(32), 1, 2, bytes(32), b"", bytes(64), 7),  # seven items
        _raw(bytes(31), 1, 2, bytes(32), b"", bytes(64)),
        _raw(bytes(32), 0, 2, bytes(32), b"", bytes(64)),  # seq 0
        _raw(bytes(32), 3, 2, bytes(32), b"", bytes(64)),  # reversed
        _raw(bytes(32), 1, 1 << 63, bytes(32), b"", bytes(64)),
        _raw(bytes(32), 1, 2, bytes(32), "text", bytes(64)),
        _raw(bytes(32), 1, 2, bytes(32), b"", bytes(63)),
        _raw(bytes(32), True, 2, bytes(32), b"", bytes(64)),
        {"a": 1},
    ],
)
def test_decode_refuses_malformed(data: bytes | dict[str, int]) -> None:
    raw = data if isinstance(data, bytes) else msgpack.packb(data)
    with pytest.raises(BundleFormatError):
        Segment.decode(raw)


def test_decode_refuses_non_canonical_and_trailing() -> None:
    data = sealed().encode()
    with pytest.raises(BundleFormatError):
        Segment.decode(data + b"\x00")
    # first_seq 1 written as uint16: the same value, not the same bytes.
    i = data.index(b"\x01\x02")  # first_seq and last_seq as positive fixints
    longer = data[:i] + b"\xcd\x00\x01" + data[i + 1 :]
    with pytest.raises(BundleFormatError):
        Segment.decode(longer)
    for cut in range(len(data)):
        with pytest.raises(BundleFormatError):
            Segment.decode(data[:cut])


def test_decode_limits() -> None:
    seg = sealed(1, 3)
    Segment.decode(seg.encode(), Limits(max_segment_changes=3))
    with pytest.raises(LimitExceededError):
        Segment.decode(seg.encode(), Limits(max_segment_changes=2))
    with pytest.raises(LimitExceededError):
        Segment.decode(seg.encode(), Limits(max_body_bytes=10))


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        Segment(bytes(31), 1, 1, bytes(32), b"", bytes(64))
    with pytest.raises(ValueError):
        Segment(bytes(32), 2, 1, bytes(32), b"", bytes(64))
