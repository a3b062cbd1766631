"""Segments: sealed, signed runs of one origin's changes, and their encoding."""

from __future__ import annotations

import msgpack
import pytest
import zstandard

from offsync.change import DELETE, PUT, Change, encode_changes
from offsync.compression import compress
from offsync.encoding import canonical_fields
from offsync.errors import BundleFormatError, LimitExceededError, SignatureError, UsageError
from offsync.identity import Identity
from offsync.limits import Limits
from offsync.segment import NO_PREVIOUS, SEGMENT_DOMAIN, Segment, hash32

IDENT = Identity(bytes(32))
OTHER = Identity(bytes([1]) * 32)
LEVEL = 3


def changes_of(first: int, n: int, origin: bytes = IDENT.public_key) -> list[Change]:
    return [
        Change(origin, first + i, 100 + i, "c", f"k{i}", PUT, canonical_fields({"i": i}))
        for i in range(n)
    ]


def sealed(first: int = 1, n: int = 2, prev: bytes = NO_PREVIOUS) -> Segment:
    return Segment.seal(IDENT, changes_of(first, n), prev, LEVEL)


def test_seal_and_verify() -> None:
    assert SEGMENT_DOMAIN == b"offsync/segment/v2\x00"
    seg = sealed(5, 3, b"\x07" * 32)
    assert (seg.origin, seg.first_seq, seg.last_seq, seg.count) == (IDENT.public_key, 5, 7, 3)
    seg.verify()
    assert seg.signing_message == (
        SEGMENT_DOMAIN
        + IDENT.public_key
        + (5).to_bytes(8, "big")
        + (7).to_bytes(8, "big")
        + hash32(seg.block)
        + b"\x07" * 32
    )
    assert seg.hash == hash32(seg.signing_message)
    assert len(seg.hash) == 32


def test_block_is_one_zstd_frame_of_the_columns() -> None:
    changes = changes_of(5, 3)
    seg = Segment.seal(IDENT, changes, NO_PREVIOUS, LEVEL)
    params = zstandard.get_frame_parameters(seg.block)
    assert seg.block[:4] == b"\x28\xb5\x2f\xfd"
    assert params.content_size == len(encode_changes(changes))
    assert params.dict_id == 0
    assert zstandard.ZstdDecompressor().decompress(seg.block) == encode_changes(changes)
    assert seg.open_changes() == changes


def test_sealing_is_deterministic() -> None:
    assert sealed().encode() == sealed().encode()


def test_seal_level_changes_the_block_not_the_changes() -> None:
    changes = [
        Change(
            IDENT.public_key, i + 1, 100 + i, "c", f"k{i}", PUT, canonical_fields({"v": "x" * 50})
        )
        for i in range(50)
    ]
    fast = Segment.seal(IDENT, changes, NO_PREVIOUS, 1)
    small = Segment.seal(IDENT, changes, NO_PREVIOUS, 19)
    assert fast.block != small.block and fast.hash != small.hash
    assert fast.open_changes() == small.open_changes() == changes


def test_seal_refuses_changes_it_cannot_sign() -> None:
    with pytest.raises(ValueError):
        Segment.seal(IDENT, [], NO_PREVIOUS, LEVEL)
    with pytest.raises(ValueError):  # another origin's changes
        Segment.seal(IDENT, changes_of(1, 2, OTHER.public_key), NO_PREVIOUS, LEVEL)
    gap = changes_of(1, 3)
    with pytest.raises(ValueError):  # not consecutive
        Segment.seal(IDENT, [gap[0], gap[2]], NO_PREVIOUS, LEVEL)


def test_seqs_come_from_the_segment_not_the_block() -> None:
    """The columns carry no origin or seq: a block opens as the segment's own run."""
    block = compress(encode_changes(changes_of(1, 2, OTHER.public_key)), LEVEL)
    seg = Segment.seal_block(IDENT, 7, 2, block, NO_PREVIOUS)
    seg.verify()
    got = seg.open_changes()
    assert [(c.origin, c.seq) for c in got] == [(IDENT.public_key, 7), (IDENT.public_key, 8)]
    assert [c.key for c in got] == ["k0", "k1"]


def test_block_must_hold_exactly_the_claimed_number_of_changes() -> None:
    block = compress(encode_changes(changes_of(1, 2)), LEVEL)
    Segment.seal_block(IDENT, 1, 2, block, NO_PREVIOUS).open_changes()
    for count in (1, 3):
        seg = Segment.seal_block(IDENT, 1, count, block, NO_PREVIOUS)
        seg.verify()  # validly signed: the count is what the origin claims
        with pytest.raises(BundleFormatError, match="different number"):
            seg.open_changes()


def test_deletes_and_parents_round_trip() -> None:
    first = changes_of(1, 1)[0]
    gone = Change(IDENT.public_key, 2, 101, "c", "k0", DELETE, None, (first.id,))
    seg = Segment.seal(IDENT, [first, gone], NO_PREVIOUS, LEVEL)
    assert seg.open_changes() == [first, gone]


@pytest.mark.parametrize(
    "field",
    ["origin", "first_seq", "last_seq", "prev_hash", "block", "signature"],
)
def test_any_altered_field_fails_verification(field: str) -> None:
    seg = sealed(3, 2)
    value = {
        "origin": OTHER.public_key,
        "first_seq": 2,
        "last_seq": 5,
        "prev_hash": b"\x01" * 32,
        "block": sealed(3, 3).block,
        "signature": bytes(64),
    }[field]
    forged = Segment(**{**{f: getattr(seg, f) for f in seg.__slots__}, field: value})
    with pytest.raises(SignatureError):
        forged.verify()


@pytest.mark.parametrize(("first", "prev"), [(1, b"\x01" * 32), (2, NO_PREVIOUS)])
def test_prev_hash_is_zeros_exactly_for_a_first_segment(first: int, prev: bytes) -> None:
    """Malformed, not a fork: no origin has a predecessor of its first segment, and
    every later segment has one (docs/spec.md §5)."""
    data = Segment.seal(IDENT, changes_of(first, 1), prev, LEVEL).encode()
    with pytest.raises(BundleFormatError, match="prev_hash"):
        Segment.decode(data)


def test_hash_chains() -> None:
    a = sealed(1, 2)
    b = Segment.seal(IDENT, changes_of(3, 1), a.hash, LEVEL)
    assert b.prev_hash == a.hash
    assert a.hash != b.hash


def test_wire_layout() -> None:
    seg = sealed()
    assert msgpack.unpackb(seg.encode()) == [
        seg.origin,
        1,
        2,
        NO_PREVIOUS,
        seg.block,
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
    Segment.decode(seg.encode(), Limits(max_bundle_bytes=len(seg.encode())))
    with pytest.raises(LimitExceededError):
        Segment.decode(seg.encode(), Limits(max_bundle_bytes=len(seg.encode()) - 1))


def test_open_changes_limits() -> None:
    seg = sealed(1, 3)
    size = zstandard.get_frame_parameters(seg.block).content_size
    assert seg.open_changes(Limits(max_block_bytes=size)) == changes_of(1, 3)
    with pytest.raises(LimitExceededError):
        seg.open_changes(Limits(max_block_bytes=size - 1))
    with pytest.raises(LimitExceededError):
        seg.open_changes(Limits(max_segment_changes=2))


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        Segment(bytes(31), 1, 1, bytes(32), b"", bytes(64))
    with pytest.raises(ValueError):
        Segment(bytes(32), 2, 1, bytes(32), b"", bytes(64))


@pytest.mark.parametrize(
    ("first", "count", "prev"),
    [
        (0, 1, NO_PREVIOUS),
        (-5, 2, NO_PREVIOUS),
        (1, 0, NO_PREVIOUS),
        (1 << 63, 1, NO_PREVIOUS),
        ((1 << 63) - 1, 2, NO_PREVIOUS),
        (1, 1, b"short"),
    ],
)
def test_seal_block_refuses_seqs_outside_the_format(first: int, count: int, prev: bytes) -> None:
    """Found by the error-tree property test: these raised OverflowError from to_bytes."""
    with pytest.raises(UsageError):
        Segment.seal_block(IDENT, first, count, b"block", prev)
