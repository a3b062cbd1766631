"""Format-3 segments: sealing, the signed message, the commitment, the redacted form
(erasing any subset verifies, any altered byte is refused, the erased values and
their salts appear nowhere), and the zstd frame rules (docs/spec.md §6)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import zstandard

from offsync.change import DELETE, ERASE, PUT, Change
from offsync.columns import encode_block
from offsync.compression import compress, decompress, raw_frame
from offsync.encoding import packb
from offsync.errors import (
    BundleFormatError,
    ForkError,
    LimitExceededError,
    RemoteDataError,
    SignatureError,
    UsageError,
)
from offsync.identity import Identity
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.scope import Partition
from offsync.segment import (
    NO_PREVIOUS,
    SEGMENT_DOMAIN,
    Segment,
    commitment_of,
    decode_segment,
    hash32,
    partition_hash,
    row_hashes,
    salts_of,
)
from tests.helpers.v3_strategies import SIGNER

P = Partition("residents", "3519")
SECRET = bytes(range(32))


def sealed(changes: list[Change], prev: bytes = NO_PREVIOUS, level: int | None = 3) -> Segment:
    return Segment.seal(SIGNER, changes, prev, level, secret=SECRET)


def puts(n: int, first: int = 1) -> list[Change]:
    from offsync.change import canonical_fields

    return [
        Change(
            SIGNER.public_key,
            first + i,
            100 + i,
            "residents",
            f"3519{i:03d}",
            PUT,
            canonical_fields({"name": f"person {i}", "village": "Kare"}),
            (),
            "3519",
        )
        for i in range(n)
    ]


def test_the_signed_message_and_hash() -> None:
    seg = sealed(puts(3, first=5), prev=b"\x07" * 32)
    seg.verify()
    assert SEGMENT_DOMAIN == b"offsync/segment/v3\x00"
    assert seg.signing_message == (
        SEGMENT_DOMAIN
        + SIGNER.public_key
        + hash32(packb(["residents", "3519"]))
        + (5).to_bytes(8, "big")
        + (7).to_bytes(8, "big")
        + hash32(seg.block)
        + seg.commitment
        + b"\x07" * 32
    )
    assert partition_hash(P) == hash32(packb(["residents", "3519"]))
    assert seg.hash == hash32(seg.signing_message)
    assert seg.stream.partition == P and seg.count == 3
    assert decode_segment(seg.encode()) == seg
    assert Segment.decode(seg.encode()).open_changes() == puts(3, first=5)


def test_the_commitment_is_of_the_skeleton_and_salted_fields() -> None:
    changes = puts(4)
    seg = sealed(changes)
    _, skeleton = encode_block(changes, P, SECRET)
    salts = salts_of(SECRET, 4)
    assert len(salts) == 64 and len(set(salts[i : i + 16] for i in range(0, 64, 16))) == 4
    hashes = row_hashes(salts, [c.fields for c in changes])
    assert seg.commitment == commitment_of(skeleton, hashes)
    seg.check_commitment()
    # A random secret when none is given: two seals of the same changes differ.
    assert (
        Segment.seal(SIGNER, changes, NO_PREVIOUS).commitment
        != Segment.seal(SIGNER, changes, NO_PREVIOUS).commitment
    )


def test_a_false_commitment_is_a_fork_found_when_redacting() -> None:
    changes = puts(3)
    plain, _ = encode_block(changes, P, SECRET)
    lying = Segment.seal_block(SIGNER, P, 1, 3, raw_frame(plain), bytes(32), NO_PREVIOUS)
    lying.verify()  # the signature is the origin's own
    assert lying.open_changes() == changes  # and receivers apply it: H(block) is signed
    with pytest.raises(ForkError, match="false commitment"):
        lying.check_commitment()
    with pytest.raises(ForkError):
        lying.redact([0])


def test_sealing_rules() -> None:
    other = Identity(bytes([5]) * 32)
    with pytest.raises(UsageError):
        Segment.seal(other, puts(2), NO_PREVIOUS)  # not the signer's changes
    with pytest.raises(UsageError):
        Segment.seal(SIGNER, [puts(3)[0], puts(3)[2]], NO_PREVIOUS)  # not consecutive
    with pytest.raises(UsageError):
        Segment.seal(SIGNER, puts(2, first=1), b"\x01" * 32)  # a first segment has no predecessor
    with pytest.raises(UsageError):
        Segment.seal(SIGNER, puts(2, first=3), NO_PREVIOUS)  # a later one has one
    with pytest.raises(UsageError):
        Segment.seal(SIGNER, [*puts(1), puts(2)[1]._replace(prefix="35")], NO_PREVIOUS)
    with pytest.raises(UsageError):
        Segment.seal(SIGNER, puts(3), NO_PREVIOUS, limits=Limits(max_block_bytes=10))


# -- redaction ------------------------------------------------------------------------------


def _mixed() -> list[Change]:
    changes = puts(6)
    changes[3] = changes[3]._replace(op=DELETE, fields=None)
    from offsync.change import erase_fields

    changes[5] = changes[5]._replace(op=ERASE, fields=erase_fields("court order"))
    return changes


def test_erasing_in_steps_is_erasing_at_once() -> None:
    seg = sealed(_mixed(), level=None)
    step = seg.redact([0], level=None).redact([2, 4], level=None)
    assert step == seg.redact([4, 2, 0], level=None)
    assert seg.redact([0], level=None).redact([0], level=None) == seg.redact([0], level=None)


def test_what_cannot_be_erased() -> None:
    seg = sealed(_mixed())
    for bad in ([], [3], [5], [6], [-1], ["0"]):
        with pytest.raises(UsageError):
            seg.redact(bad)  # type: ignore[arg-type]  # a str on purpose


def test_every_altered_byte_of_a_redacted_segment_is_refused() -> None:
    seg = sealed(_mixed(), level=None)
    encoded = seg.redact([1, 4], level=None).encode()
    for at in range(len(encoded)):
        altered = encoded[:at] + bytes([encoded[at] ^ 0x01]) + encoded[at + 1 :]
        with pytest.raises(RemoteDataError):
            segment = decode_segment(altered)
            segment.verify()
            segment.open_changes()


def test_every_altered_byte_of_a_whole_segment_is_refused() -> None:
    encoded = sealed(_mixed()).encode()
    for at in range(len(encoded)):
        altered = encoded[:at] + bytes([encoded[at] ^ 0x01]) + encoded[at + 1 :]
        with pytest.raises(RemoteDataError):
            segment = decode_segment(altered)
            segment.verify()
            segment.open_changes()


def test_a_compressed_redaction_verifies_too() -> None:
    seg = sealed(_mixed(), level=19)
    red = seg.redact([2], level=19)
    assert zstandard.get_frame_parameters(red.rblock).content_size > 0
    decode_segment(red.encode()).open_changes()
    with pytest.raises(BundleFormatError):
        Segment.decode(red.encode())  # a redacted form where a whole one is expected


def test_redacted_segments_validate_themselves() -> None:
    red = sealed(_mixed()).redact([0])
    for bad in (
        {"erased": ()},
        {"erased": (7,)},
        {"erased": (2, 1)},
        {"salts": red.salts[:-1]},
        {"hashes": b""},
        {"block_hash": b"x"},
        {"prev_hash": b"\x01" * 32},
    ):
        with pytest.raises(UsageError):
            replace(red, **bad)


# -- frames ---------------------------------------------------------------------------------


def test_single_segment_frames_over_the_window_limit_open() -> None:
    data = bytes(9 << 20)
    for frame in (raw_frame(data), compress(data, 22)):
        params = zstandard.get_frame_parameters(frame)
        assert frame[4] & 0x20  # single segment: the window is the content size
        assert params.window_size > DEFAULT_LIMITS.max_window_bytes
        assert decompress(frame, DEFAULT_LIMITS.max_block_bytes, DEFAULT_LIMITS, "block") == data


def test_frames_that_need_a_window_are_bounded() -> None:
    """A frame larger than its window (not single-segment) needs the window besides the
    output: its window must be within max_window_bytes."""
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=24, write_content_size=True
    )
    data = bytes(range(256)) * (80 << 10)  # 20 MiB, over the 16 MiB window
    frame = zstandard.ZstdCompressor(compression_params=params).compress(data)
    assert not frame[4] & 0x20 and zstandard.get_frame_parameters(frame).window_size == 1 << 24
    with pytest.raises(LimitExceededError, match="window"):
        decompress(frame, 1 << 30, DEFAULT_LIMITS, "block")
    assert decompress(frame, 1 << 30, Limits(max_window_bytes=1 << 24), "block") == data
    with pytest.raises(LimitExceededError):
        decompress(frame, 1000, DEFAULT_LIMITS, "block")


def test_checksums_are_checked_when_present() -> None:
    frame = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(b"abc" * 1000)
    assert decompress(frame, 1 << 20, DEFAULT_LIMITS, "block") == b"abc" * 1000
    with pytest.raises(BundleFormatError):
        decompress(frame[:-1] + bytes([frame[-1] ^ 1]), 1 << 20, DEFAULT_LIMITS, "block")


def test_signature_covers_the_partition() -> None:
    seg = sealed(puts(2))
    moved = Segment(
        seg.origin,
        Partition("residents", "3520"),
        1,
        2,
        seg.prev_hash,
        seg.block,
        seg.commitment,
        seg.signature,
    )
    with pytest.raises(SignatureError):
        moved.verify()
