"""Bundles (and the receipts in their headers): framing, signing, limits, tampering."""

from __future__ import annotations

from typing import Any

import pytest
import zstandard

from offsync import Replica
from offsync.bundle import MAGIC, Bundle, BundleHeader, build_bundle, open_bundle, read_header
from offsync.change import PUT, Change, decode_changes, encode_changes
from offsync.encoding import canonical_fields, packb
from offsync.errors import (
    BundleFormatError,
    DecryptionError,
    LimitExceededError,
    OffsyncError,
    SignatureError,
)
from offsync.identity import Identity, verify_signature
from offsync.knowledge import Knowledge
from offsync.limits import Limits
from offsync.receipt import RECEIPT_DOMAIN, Receipt
from offsync.segment import NO_PREVIOUS, Segment, hash32

SENDER = Identity(bytes([7]) * 32, "sender")
RECIPIENT = Identity(bytes([8]) * 32, "recipient")
STRANGER = Identity(bytes([9]) * 32, "stranger")
CREATED = 1_700_000_000_000 << 16


def segment(first: int = 1, n: int = 2, prev: bytes = NO_PREVIOUS) -> Segment:
    changes = [
        Change(
            SENDER.public_key, first + i, CREATED + i, "c", f"k{i}", PUT, canonical_fields({"v": i})
        )
        for i in range(n)
    ]
    return Segment.seal(SENDER, first, n, encode_changes(changes), prev)


def make(
    segments: list[Segment] | None = None,
    recipient: bytes | None = None,
    receipts: list[Receipt] | None = None,
) -> bytes:
    segs = [segment()] if segments is None else segments
    carried: dict[bytes, list[tuple[int, int]]] = {}
    for s in segs:
        carried.setdefault(s.origin, []).append((s.first_seq, s.last_seq))
    ranges = Knowledge(carried)
    own = Receipt.issue(SENDER, CREATED, ranges)
    return build_bundle(
        SENDER,
        [s.encode() for s in segs],
        ranges=ranges,
        receipts=[own, *(receipts or [])],
        created=CREATED,
        recipient=recipient,
    )


def frame(
    header: dict[str, Any], body: bytes, signer: Identity = SENDER, version: int = 1
) -> bytes:
    """Frame and sign arbitrary header and body bytes, as a hostile sender could."""
    h = packb(header)
    signed = MAGIC + version.to_bytes(2, "big") + len(h).to_bytes(4, "big") + h
    signed += len(body).to_bytes(4, "big") + body
    return signed + signer.sign(signed)


def header_of(body_size: int, segments: int = 0, **extra: Any) -> dict[str, Any]:
    head = {
        "body_size": body_size,
        "created": CREATED,
        "ranges": [],
        "receipts": [Receipt.issue(SENDER, CREATED, Knowledge()).encode()],
        "recipient": None,
        "segments": segments,
        "sender": SENDER.public_key,
    }
    head.update(extra)
    return head


def raw_zstd_frame(content: bytes, declared: int, window_log: int | None = None) -> bytes:
    """A hand-made zstd frame holding ``content`` in one raw block, declaring any size."""
    if window_log is None:  # single segment: the window is the declared size
        return (
            b"\x28\xb5\x2f\xfd"
            + bytes([0b1110_0000])  # 8-byte content size, single segment
            + declared.to_bytes(8, "little")
            + ((len(content) << 3) | 1).to_bytes(3, "little")  # last, raw block
            + content
        )
    return (
        b"\x28\xb5\x2f\xfd"
        + bytes([0b1100_0000])  # 8-byte content size, window descriptor follows
        + bytes([(window_log - 10) << 3])
        + declared.to_bytes(8, "little")
        + ((len(content) << 3) | 1).to_bytes(3, "little")
        + content
    )


# -- round trips -------------------------------------------------------------------------


def test_build_and_open() -> None:
    segs = [segment(1, 2), segment(3, 1)]
    data = make(segs)
    bundle = open_bundle(data)
    assert isinstance(bundle, Bundle)
    assert bundle.id == hash32(data)
    assert bundle.size == len(data)
    assert list(bundle.segments) == segs
    h = bundle.header
    assert h.sender == SENDER.public_key
    assert h.recipient is None
    assert h.created == CREATED
    assert h.ranges == Knowledge.of(SENDER.public_key, 1, 3)
    assert h.segments == 2
    assert h.knowledge == h.receipts[0].knowledge
    header, body = read_header(data)
    assert header == h
    assert body[:4] == b"\x28\xb5\x2f\xfd"
    changes = decode_changes(bundle.segments[0].changes, SENDER.public_key, 1)
    assert [c.key for c in changes] == ["k0", "k1"]


def test_framing_layout() -> None:
    data = make()
    assert data[:6] == b"OFSYNC"
    assert data[6:8] == b"\x00\x01"
    hlen = int.from_bytes(data[8:12], "big")
    header = data[12 : 12 + hlen]
    blen = int.from_bytes(data[12 + hlen : 16 + hlen], "big")
    assert 16 + hlen + blen + 64 == len(data)
    verify_signature(SENDER.public_key, data[:-64], data[-64:])
    assert header == packb(read_header(data)[0].to_wire())


def test_empty_bundle_carries_a_receipt() -> None:
    bundle = open_bundle(make([]))
    assert bundle.segments == []
    assert bundle.header.segments == 0


def test_encrypted_round_trip() -> None:
    data = make(recipient=RECIPIENT.public_key)
    bundle = open_bundle(data, RECIPIENT)
    assert bundle.header.recipient == RECIPIENT.public_key
    assert bundle.segments == [segment()]
    # a relay can read and verify the header without the key
    header, _ = read_header(data)
    assert header.recipient == RECIPIENT.public_key
    assert segment().changes not in data


def test_encrypted_for_another_site() -> None:
    data = make(recipient=RECIPIENT.public_key)
    with pytest.raises(DecryptionError):
        open_bundle(data, STRANGER)
    with pytest.raises(DecryptionError):
        open_bundle(data)


def test_encrypted_body_that_does_not_open() -> None:
    # Validly signed by the sender, but the body is not a sealed box for the recipient.
    head = header_of(3, recipient=RECIPIENT.public_key)
    with pytest.raises(DecryptionError):
        open_bundle(frame(head, b"\x00" * 80), RECIPIENT)


def test_replica_refuses_bundle_for_another_site() -> None:
    rep = Replica.open(":memory:", identity=STRANGER)
    digest = rep.state_digest()
    with pytest.raises(DecryptionError):
        rep.apply(make(recipient=RECIPIENT.public_key))
    assert rep.state_digest() == digest
    assert not rep.knowledge()


# -- tampering ---------------------------------------------------------------------------


def test_every_truncation_is_refused() -> None:
    data = make()
    for cut in range(len(data)):
        with pytest.raises(OffsyncError):
            open_bundle(data[:cut])


def test_every_single_bit_flip_is_refused() -> None:
    data = make()
    rep = Replica.open(":memory:", identity=RECIPIENT)
    digest = rep.state_digest()
    for i in range(len(data)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[i] ^= 1 << bit
            with pytest.raises(OffsyncError):
                rep.apply(bytes(damaged))
    assert rep.state_digest() == digest
    assert not rep.knowledge()
    rep.apply(data)  # the undamaged bundle still applies
    assert rep.state_digest() != digest


def test_trailing_bytes() -> None:
    with pytest.raises(BundleFormatError):
        open_bundle(make() + b"\x00")


def test_wrong_magic_and_version() -> None:
    data = make()
    with pytest.raises(BundleFormatError, match="magic"):
        open_bundle(b"OFSYNX" + data[6:])
    with pytest.raises(BundleFormatError, match="version"):
        open_bundle(data[:6] + b"\x00\x02" + data[8:])
    # A correctly signed bundle of a future version is refused too.
    with pytest.raises(BundleFormatError, match="version"):
        open_bundle(frame(header_of(0), b"", version=2))


def test_not_bytes() -> None:
    with pytest.raises(BundleFormatError):
        open_bundle("OFSYNC")  # type: ignore[arg-type]


def test_signature_by_someone_else() -> None:
    body = zstandard.ZstdCompressor(write_content_size=True).compress(packb([]))
    good = frame(header_of(1), body)
    open_bundle(good)
    with pytest.raises(SignatureError):
        open_bundle(frame(header_of(1), body, signer=STRANGER))


def test_header_must_be_canonical_and_complete() -> None:
    body = zstandard.ZstdCompressor(write_content_size=True).compress(packb([]))
    head = header_of(1)
    del head["created"]
    with pytest.raises(BundleFormatError):
        open_bundle(frame(head, body))
    with pytest.raises(BundleFormatError):
        open_bundle(frame({**header_of(1), "extra": 1}, body))
    with pytest.raises(BundleFormatError):  # receipt of someone else first
        open_bundle(
            frame(header_of(1, receipts=[Receipt.issue(STRANGER, 1, Knowledge()).encode()]), body)
        )
    with pytest.raises(BundleFormatError):  # ranges that the body does not carry
        open_bundle(
            frame(header_of(1, ranges=Knowledge.of(SENDER.public_key, 1, 1).to_wire()), body)
        )
    with pytest.raises(BundleFormatError):  # declared segment count differs
        open_bundle(frame(header_of(1, segments=1), body))


def test_zstd_frame_declaring_a_size_over_the_limit() -> None:
    huge = 1 << 40
    with pytest.raises(LimitExceededError):
        open_bundle(frame(header_of(huge), raw_zstd_frame(b"\x90", huge)))
    # Under a tighter limit, a modest declared size is refused the same way.
    small = raw_zstd_frame(b"\x90", 1)
    open_bundle(frame(header_of(1), small))
    with pytest.raises(LimitExceededError):
        open_bundle(frame(header_of(1), small), limits=Limits(max_body_bytes=0))


def test_zstd_frame_disagreeing_with_the_header() -> None:
    with pytest.raises(BundleFormatError):
        open_bundle(frame(header_of(1), raw_zstd_frame(b"\x90", 1 << 30)))
    with pytest.raises(BundleFormatError):  # declares 2 bytes, holds 1
        open_bundle(frame(header_of(2), raw_zstd_frame(b"\x90", 2)))


def test_zstd_window_too_large() -> None:
    ok = raw_zstd_frame(b"\x90", 1, window_log=20)
    open_bundle(frame(header_of(1), ok))
    big_window = raw_zstd_frame(b"\x90", 1, window_log=30)
    with pytest.raises(LimitExceededError, match="window"):
        open_bundle(frame(header_of(1), big_window))
    with pytest.raises(LimitExceededError, match="window"):
        open_bundle(frame(header_of(1), ok), limits=Limits(max_window_bytes=1 << 19))


def test_zstd_body_problems() -> None:
    good = raw_zstd_frame(b"\x90", 1)
    for body in (b"", b"not zstd at all", good + b"\x00", good[:-1], good + good):
        with pytest.raises(BundleFormatError):
            open_bundle(frame(header_of(1), body))


def test_bundle_limits() -> None:
    data = make()
    with pytest.raises(LimitExceededError):
        open_bundle(data, limits=Limits(max_bundle_bytes=len(data) - 1))
    with pytest.raises(LimitExceededError):
        open_bundle(data, limits=Limits(max_header_bytes=10))
    with pytest.raises(LimitExceededError):
        open_bundle(make([segment(1, 1), segment(2, 1)]), limits=Limits(max_segments=1))
    with pytest.raises(LimitExceededError):
        open_bundle(data, limits=Limits(max_segment_changes=1))


def test_body_must_hold_encoded_segments() -> None:
    for value in ([1], [[1, 2]], {"a": 1}):
        body = packb(value)
        z = zstandard.ZstdCompressor(write_content_size=True).compress(body)
        with pytest.raises(BundleFormatError):
            open_bundle(frame(header_of(len(body), segments=1), z))


# -- receipts ----------------------------------------------------------------------------


def test_receipt_round_trip_and_forgery() -> None:
    k = Knowledge({SENDER.public_key: [(1, 5)], RECIPIENT.public_key: [(2, 3)]})
    r = Receipt.issue(SENDER, 42, k)
    assert Receipt.decode(r.encode()) == r
    assert r.signature == SENDER.sign(RECEIPT_DOMAIN + packb([SENDER.public_key, 42, k.to_wire()]))
    forged = Receipt(
        SENDER.public_key, 42, k | Knowledge.of(STRANGER.public_key, 1, 1), r.signature
    )
    with pytest.raises(SignatureError):
        Receipt.decode(forged.encode())
    with pytest.raises(BundleFormatError):
        Receipt.decode(r.encode() + b"\x00")
    with pytest.raises(BundleFormatError):
        Receipt.decode(packb([1, 2, 3]))
    with pytest.raises(LimitExceededError):
        Receipt.decode(r.encode(), Limits(max_header_bytes=10))


def test_receipts_are_passed_on_in_the_header() -> None:
    passed = Receipt.issue(STRANGER, 5, Knowledge.of(STRANGER.public_key, 1, 9))
    bundle = open_bundle(make(receipts=[passed]))
    assert bundle.header.receipts[1] == passed
    with pytest.raises(LimitExceededError):
        open_bundle(make(receipts=[passed]), limits=Limits(max_receipts=1))
    wire = bundle.header.to_wire()
    assert BundleHeader.from_wire(wire, Limits()) == bundle.header
    with pytest.raises(BundleFormatError):
        BundleHeader.from_wire({**wire, "receipts": []}, Limits())


def test_peek_header_reads_the_header_alone_and_checks_no_signature() -> None:
    from offsync import Identity, Replica
    from offsync.bundle import peek_header
    from offsync.errors import BundleFormatError, SignatureError

    rep = Replica.open(":memory:", identity=Identity(b"\x44" * 32, label="peek"))
    rep.put("residents", "1", {"name": "x"})
    [bundle] = rep.pack()
    header, _ = read_header(bundle)
    hlen = int.from_bytes(bundle[8:12], "big")
    assert peek_header(bundle[: 12 + hlen]) == header
    forged = bundle[:-1] + bytes([bundle[-1] ^ 1])
    with pytest.raises(SignatureError):
        read_header(forged)
    assert peek_header(forged) == header  # bookkeeping only: it never verifies
    with pytest.raises(BundleFormatError):
        peek_header(bundle[: 11 + hlen])
