"""Bundles (and the receipts in their headers): framing, signing, limits, tampering."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import zstandard

from offsync import Replica
from offsync.bundle import (
    FORMAT_VERSION,
    HEADER_KEYS,
    MAGIC,
    Bundle,
    BundleHeader,
    build_bundle,
    bundle_body,
    open_bundle,
    read_header,
)
from offsync.change import PUT, Change
from offsync.columns import encode_block
from offsync.compression import compress, decompress, raw_frame
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
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.receipt import RECEIPT_DOMAIN, Receipt
from offsync.scope import Partition, Stream
from offsync.segment import NO_PREVIOUS, Segment, hash32

SENDER = Identity(bytes([7]) * 32, "sender")
RECIPIENT = Identity(bytes([8]) * 32, "recipient")
STRANGER = Identity(bytes([9]) * 32, "stranger")
CREATED = 1_700_000_000_000 << 16
C = Partition("c")  # the collection the changes are in: one partition


def changes_of(first: int = 1, n: int = 2) -> list[Change]:
    return [
        Change(
            SENDER.public_key, first + i, CREATED + i, "c", f"k{i}", PUT, canonical_fields({"v": i})
        )
        for i in range(n)
    ]


def segment(first: int = 1, n: int = 2, prev: bytes = NO_PREVIOUS) -> Segment:
    return Segment.seal(SENDER, changes_of(first, n), prev, 3, secret=bytes([first]) * 32)


#: The uncompressed columns of ``changes_of()``: content for hand-made zstd frames.
COLUMNS = encode_block(changes_of(), C, bytes(32))[0]


def with_block(block: bytes) -> Segment:
    """Seqs 1-2 validly signed by SENDER around any block, as a hostile origin could."""
    return Segment.seal_block(SENDER, C, 1, 2, block, bytes(32), NO_PREVIOUS)


def make(
    segments: list[Segment] | None = None,
    recipient: bytes | None = None,
    receipts: list[Receipt] | None = None,
) -> bytes:
    segs = [segment()] if segments is None else segments
    carried: dict[Stream, list[tuple[int, int]]] = {}
    for s in segs:
        carried.setdefault(s.stream, []).append((s.first_seq, s.last_seq))
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
    header: dict[str, Any], body: bytes, signer: Identity = SENDER, version: int = FORMAT_VERSION
) -> bytes:
    """Frame and sign arbitrary header and body bytes, as a hostile sender could."""
    h = packb(header)
    signed = MAGIC + version.to_bytes(2, "big") + len(h).to_bytes(4, "big") + h
    signed += len(body).to_bytes(4, "big") + body
    return signed + signer.sign(signed)


def header_of(segments: int = 0, **extra: Any) -> dict[str, Any]:
    head = {
        "created": CREATED,
        "ranges": [],
        "receipts": [Receipt.issue(SENDER, CREATED, Knowledge()).encode()],
        "recipient": None,
        "relays_for": [],
        "segments": segments,
        "sender": SENDER.public_key,
    }
    head.update(extra)
    return head


def raw_zstd_frame(
    content: bytes,
    declared: int,
    window_log: int | None = None,
    *,
    dict_id: int = 0,
    block_type: int = 0,
) -> bytes:
    """A hand-made zstd frame holding ``content`` in one raw block, declaring any size
    (and, to test their refusal, any window, a dictionary id or a reserved block type)."""
    descriptor = 0b1100_0000 | (1 if dict_id else 0)  # 8-byte content size, 1-byte dict id
    if window_log is None:  # single segment: the window is the declared size
        head = bytes([descriptor | 0b0010_0000])
    else:  # a window descriptor follows
        head = bytes([descriptor, (window_log - 10) << 3])
    return (
        b"\x28\xb5\x2f\xfd"
        + head
        + (bytes([dict_id]) if dict_id else b"")
        + declared.to_bytes(8, "little")
        + ((len(content) << 3) | (block_type << 1) | 1).to_bytes(3, "little")  # last block
        + content
    )


# -- round trips -------------------------------------------------------------------------


def test_build_and_open() -> None:
    first = segment(1, 2)
    segs = [first, segment(3, 1, prev=first.hash)]
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
    assert h.ranges == Knowledge.of(Stream(SENDER.public_key, C), 1, 3)
    assert h.segments == 2
    assert h.knowledge == h.receipts[0].knowledge
    header, body = read_header(data)
    assert header == h
    # The body is not compressed again: the segments travel as their origin sealed them.
    assert body == packb([s.encode() for s in segs])
    assert bundle.segments[0].open_changes() == changes_of(1, 2)
    assert bundle.segments[1].open_changes() == changes_of(3, 1)


def test_framing_layout() -> None:
    data = make()
    assert data[:6] == b"OFSYNC"
    assert data[6:8] == b"\x00\x03" == FORMAT_VERSION.to_bytes(2, "big")
    hlen = int.from_bytes(data[8:12], "big")
    header = data[12 : 12 + hlen]
    blen = int.from_bytes(data[12 + hlen : 16 + hlen], "big")
    assert 16 + hlen + blen + 64 == len(data)
    verify_signature(SENDER.public_key, data[:-64], data[-64:])
    assert header == packb(read_header(data)[0].to_wire())
    assert HEADER_KEYS == (
        "created",
        "ranges",
        "receipts",
        "recipient",
        "relays_for",
        "segments",
        "sender",
    )
    assert tuple(msgpack.unpackb(header)) == HEADER_KEYS  # no body_size any more
    assert data[16 + hlen : 16 + hlen + blen] == packb([segment().encode()])


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
    assert segment().encode() in make()  # in the clear without a recipient ...
    assert segment().block not in data  # ... and not with one
    assert segment().encode() not in data


def test_encrypted_for_another_site() -> None:
    data = make(recipient=RECIPIENT.public_key)
    with pytest.raises(DecryptionError):
        open_bundle(data, STRANGER)
    with pytest.raises(DecryptionError):
        open_bundle(data)


def test_encrypted_body_that_does_not_open() -> None:
    # Validly signed by the sender, but the body is not a sealed box for the recipient.
    head = header_of(recipient=RECIPIENT.public_key)
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
    for version in (b"\x00\x01", b"\x00\x02", b"\x00\x04"):
        with pytest.raises(BundleFormatError, match="version"):
            open_bundle(data[:6] + version + data[8:])
    # Correctly signed bundles of format 1 (a compressed body, a body_size in the
    # header) and of a future version are refused too.
    old = frame({"body_size": 1, **header_of()}, compress(packb([]), 3), version=1)
    with pytest.raises(BundleFormatError, match="version 1"):
        open_bundle(old)
    with pytest.raises(BundleFormatError, match="version 4"):
        open_bundle(frame(header_of(), packb([]), version=4))


def test_not_bytes() -> None:
    with pytest.raises(BundleFormatError):
        open_bundle("OFSYNC")  # type: ignore[arg-type]


def test_signature_by_someone_else() -> None:
    body = packb([])
    good = frame(header_of(), body)
    open_bundle(good)
    with pytest.raises(SignatureError):
        open_bundle(frame(header_of(), body, signer=STRANGER))


def test_header_must_be_canonical_and_complete() -> None:
    body = packb([])
    open_bundle(frame(header_of(), body))
    head = header_of()
    del head["created"]
    with pytest.raises(BundleFormatError):
        open_bundle(frame(head, body))
    with pytest.raises(BundleFormatError):
        open_bundle(frame({**header_of(), "extra": 1}, body))
    with pytest.raises(BundleFormatError):  # format 1's header key, in a format 2 bundle
        open_bundle(frame({"body_size": len(body), **header_of()}, body))
    with pytest.raises(BundleFormatError):  # keys out of canonical order
        open_bundle(frame(dict(reversed(header_of().items())), body))
    with pytest.raises(BundleFormatError):  # receipt of someone else first
        open_bundle(
            frame(header_of(receipts=[Receipt.issue(STRANGER, 1, Knowledge()).encode()]), body)
        )
    with pytest.raises(BundleFormatError):  # ranges that the body does not carry
        open_bundle(
            frame(
                header_of(ranges=Knowledge.of(Stream(SENDER.public_key, C), 1, 1).to_wire()), body
            )
        )
    with pytest.raises(BundleFormatError):  # declared segment count differs
        open_bundle(frame(header_of(segments=1), body))


def test_body_must_be_a_canonical_array_of_segments() -> None:
    seg = segment().encode()
    good = packb([seg])
    assert good[:2] == b"\x91\xc4"  # fixarray of one bin8
    head = header_of(1, ranges=Knowledge.of(Stream(SENDER.public_key, C), 1, 2).to_wire())
    assert open_bundle(frame(head, good)).segments == [segment()]
    bodies = (
        compress(good, 3),  # compressed, as in format 1
        b"\xdc\x00\x01" + good[1:],  # array16 for one item
        b"\x91\xc5" + len(seg).to_bytes(2, "big") + seg,  # bin16 for a short segment
        good + b"\x00",
        good[:-1],
        b"",
    )
    for body in bodies:
        with pytest.raises(BundleFormatError):
            open_bundle(frame(head, body))


def test_body_holding_a_msgpack_timestamp_is_refused() -> None:
    body = b"\x91\xd6\xff\x00\x00\x00\x00"  # [timestamp32 0]: one item, not a bin
    with pytest.raises(BundleFormatError):
        open_bundle(frame(header_of(segments=1), body))


def test_bundle_limits() -> None:
    data = make()
    with pytest.raises(LimitExceededError):
        open_bundle(data, limits=Limits(max_bundle_bytes=len(data) - 1))
    with pytest.raises(LimitExceededError):
        open_bundle(data, limits=Limits(max_header_bytes=10))
    with pytest.raises(LimitExceededError):
        first = segment(1, 1)
        open_bundle(make([first, segment(2, 1, first.hash)]), limits=Limits(max_segments=1))
    with pytest.raises(LimitExceededError):
        open_bundle(data, limits=Limits(max_segment_changes=1))


def test_body_must_hold_encoded_segments() -> None:
    for value in ([1], [[1, 2]], {"a": 1}, [b"not a segment"]):
        with pytest.raises(BundleFormatError):
            open_bundle(frame(header_of(segments=1), packb(value)))


# -- segment blocks: the zstd frames inside a validly signed bundle ------------------------


def test_block_declaring_a_size_over_the_limit() -> None:
    huge = 1 << 40
    seg = with_block(raw_zstd_frame(COLUMNS, huge))
    seg.verify()
    bundle = open_bundle(make([seg]))  # opening a bundle opens no block ...
    with pytest.raises(LimitExceededError):
        bundle.segments[0].open_changes()  # ... each is opened, within limits, on its own
    rep = Replica.open(":memory:", identity=RECIPIENT)
    digest = rep.state_digest()
    with pytest.raises(LimitExceededError):
        rep.apply(make([seg]))
    assert rep.state_digest() == digest and not rep.knowledge()
    # Under a tighter limit, a modest declared size is refused the same way.
    exact = with_block(raw_zstd_frame(COLUMNS, len(COLUMNS)))
    assert exact.open_changes() == changes_of()
    assert exact.open_changes(Limits(max_block_bytes=len(COLUMNS))) == changes_of()
    with pytest.raises(LimitExceededError):
        exact.open_changes(Limits(max_block_bytes=len(COLUMNS) - 1))


def test_block_disagreeing_with_its_declared_size() -> None:
    for declared in (len(COLUMNS) - 1, len(COLUMNS) + 1, 1 << 20):
        with pytest.raises(BundleFormatError):
            with_block(raw_zstd_frame(COLUMNS, declared)).open_changes()


def test_block_window_too_large() -> None:
    ok = with_block(raw_zstd_frame(COLUMNS, len(COLUMNS), window_log=20))
    assert ok.open_changes() == changes_of()
    big_window = with_block(raw_zstd_frame(COLUMNS, len(COLUMNS), window_log=30))
    with pytest.raises(LimitExceededError, match="window"):
        big_window.open_changes()
    with pytest.raises(LimitExceededError, match="window"):
        ok.open_changes(Limits(max_window_bytes=1 << 19))


def test_single_segment_frames_over_the_window_limit_open() -> None:
    """A single-segment frame's window is its content size, bounded by max_block_bytes:
    raw frames (and any level) over max_window_bytes are valid (docs/spec.md §6.2)."""
    data = bytes(range(256)) * (9 * 4096)  # 9 MiB, over the 8 MiB window limit
    frame = raw_frame(data)
    assert frame[4] & 0x20  # single segment
    for frame in (raw_frame(data), compress(data, 3)):
        assert decompress(frame, 16 << 20, DEFAULT_LIMITS, "block") == data
        with pytest.raises(LimitExceededError):
            decompress(frame, 8 << 20, DEFAULT_LIMITS, "block")


def test_block_frame_problems() -> None:
    good = raw_zstd_frame(COLUMNS, len(COLUMNS))
    assert with_block(good).open_changes() == changes_of()
    checked = zstandard.ZstdCompressor(write_checksum=True).compress(COLUMNS)
    assert with_block(checked).open_changes() == changes_of()  # a checksum is allowed
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(COLUMNS)
    assert zstandard.get_frame_parameters(unsized).content_size == zstandard.CONTENTSIZE_UNKNOWN
    blocks: dict[bytes, str | None] = {  # block: what the refusal says
        b"": "not a zstd frame",
        b"not zstd at all": "not a zstd frame",
        COLUMNS: "not a zstd frame",  # the columns uncompressed
        good + b"\x00": "after the zstd frame",
        good[:-1]: None,  # truncated
        good + good: "after the zstd frame",
        unsized: "declare its content size",
        raw_zstd_frame(COLUMNS, len(COLUMNS), dict_id=7): "dictionaries",
        raw_zstd_frame(COLUMNS, len(COLUMNS), block_type=3): "reserved block type",
        checked[:-1] + bytes([checked[-1] ^ 1]): "does not decompress",  # bad checksum
        checked + b"\x00": "after the zstd frame",
        good[:5]: "damaged zstd frame header",
    }
    for block, says in blocks.items():
        seg = with_block(block)
        seg.verify()
        with pytest.raises(BundleFormatError, match=says):
            seg.open_changes()


# -- receipts ----------------------------------------------------------------------------


def test_receipt_round_trip_and_forgery() -> None:
    k = Knowledge(
        {Stream(SENDER.public_key, C): [(1, 5)], Stream(RECIPIENT.public_key, C): [(2, 3)]}
    )
    r = Receipt.issue(SENDER, 42, k)
    assert Receipt.decode(r.encode()) == r
    assert r.signature == SENDER.sign(RECEIPT_DOMAIN + packb([SENDER.public_key, 42, k.to_wire()]))
    forged = Receipt(
        SENDER.public_key, 42, k | Knowledge.of(Stream(STRANGER.public_key, C), 1, 1), r.signature
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
    passed = Receipt.issue(STRANGER, 5, Knowledge.of(Stream(STRANGER.public_key, C), 1, 9))
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


def test_body_is_the_canonical_msgpack_array_of_its_segments() -> None:
    # Joined at once instead of packed: the same bytes, every header length crossed.
    for count in (0, 1, 15, 16, 17):
        for size in (0, 1, 255, 256, 65_535, 65_536):
            segments = [bytes([i % 256]) * size for i in range(count)]
            body = bundle_body(segments)
            assert body == packb(segments)
    assert bundle_body([b""] * 65_536) == b"\xdd\x00\x01\x00\x00" + b"\xc4\x00" * 65_536
