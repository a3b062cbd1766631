"""Bundles: the unit of transfer, and the only bytes a peer ever hands us.

Layout (all integers big-endian; docs/spec.md is normative)::

    magic    6  b"OFSYNC"
    version  2  FORMAT_VERSION
    hlen     4  header length H
    header   H  canonical msgpack map
    blen     4  body length B
    body     B  one zstd frame (sealed-box encrypted when the header names a recipient)
    sig     64  ed25519 signature by header["sender"] over every byte before it

Opening a bundle checks framing and limits, verifies the sender's signature over the
exact bytes, and only then decrypts and decompresses, after checking the zstd frame's
declared size and window against the limits. Nothing is allocated from a size that
has not been checked first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import nacl.exceptions
import nacl.public
import nacl.signing
import zstandard

from .clock import MAX_HLC
from .encoding import packb, unpack_strict
from .errors import BundleFormatError, DecryptionError, LimitExceededError
from .identity import Identity, verify_signature
from .knowledge import Knowledge
from .limits import DEFAULT_LIMITS, Limits
from .receipt import Receipt
from .segment import Segment, hash32

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Bundle",
    "BundleHeader",
    "build_bundle",
    "frame_bundle",
    "open_bundle",
    "peek_header",
    "read_header",
]

MAGIC = b"OFSYNC"
FORMAT_VERSION = 1
SIG_BYTES = 64
_PREFIX = 12  # magic + version + hlen
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HEADER_KEYS = ("body_size", "created", "ranges", "receipts", "recipient", "segments", "sender")


@dataclass(frozen=True, slots=True)
class BundleHeader:
    sender: bytes
    recipient: bytes | None
    created: int
    ranges: Knowledge
    receipts: tuple[Receipt, ...]  # the sender's own first, then ones it passes on
    body_size: int
    segments: int

    @property
    def knowledge(self) -> Knowledge:
        """What the sender held when it packed this bundle."""
        return self.receipts[0].knowledge

    def to_wire(self) -> dict[str, Any]:
        return {
            "body_size": self.body_size,
            "created": self.created,
            "ranges": self.ranges.to_wire(),
            "receipts": [r.encode() for r in self.receipts],
            "recipient": self.recipient,
            "segments": self.segments,
            "sender": self.sender,
        }

    @classmethod
    def from_wire(cls, value: Any, limits: Limits) -> BundleHeader:
        if type(value) is not dict or tuple(value) != HEADER_KEYS:
            raise BundleFormatError(f"bundle header must be a map of exactly {HEADER_KEYS}")
        sender, recipient = value["sender"], value["recipient"]
        if type(sender) is not bytes or len(sender) != 32:
            raise BundleFormatError("header sender must be a 32-byte key")
        if recipient is not None and (type(recipient) is not bytes or len(recipient) != 32):
            raise BundleFormatError("header recipient must be nil or a 32-byte key")
        for name in ("created", "body_size", "segments"):
            v = value[name]
            if type(v) is not int or not 0 <= v <= MAX_HLC:
                raise BundleFormatError(f"header {name} must be an integer in [0, 2^63)")
        if value["body_size"] > limits.max_body_bytes:
            raise LimitExceededError(f"declared body of {value['body_size']} bytes over the limit")
        if value["segments"] > limits.max_segments:
            raise LimitExceededError(f"more than {limits.max_segments} segments in a bundle")
        raw_receipts = value["receipts"]
        if type(raw_receipts) is not list or not raw_receipts:
            raise BundleFormatError("header must carry at least the sender's receipt")
        if len(raw_receipts) > limits.max_receipts:
            raise LimitExceededError(f"more than {limits.max_receipts} receipts in a bundle header")
        receipts = tuple(Receipt.decode(r, limits) for r in raw_receipts)
        if receipts[0].replica != sender:
            raise BundleFormatError("the first receipt must be the sender's own")
        return cls(
            sender=sender,
            recipient=recipient,
            created=value["created"],
            ranges=Knowledge.from_wire(value["ranges"], limits),
            receipts=receipts,
            body_size=value["body_size"],
            segments=value["segments"],
        )


@dataclass(frozen=True, slots=True)
class Bundle:
    """An opened, verified bundle."""

    id: bytes
    header: BundleHeader
    segments: Sequence[Segment] = field(default=())
    size: int = 0


def build_bundle(
    identity: Identity,
    segments: Sequence[bytes],
    *,
    ranges: Knowledge,
    receipts: Sequence[Receipt],
    created: int,
    recipient: bytes | None = None,
    level: int = 3,
) -> bytes:
    """Frame, compress, optionally encrypt and sign encoded segments."""
    body = msgpack.packb(list(segments), use_bin_type=True)
    frame = zstandard.ZstdCompressor(
        level=level, write_content_size=True, write_checksum=True
    ).compress(body)
    if recipient is not None:
        box_key = nacl.signing.VerifyKey(recipient).to_curve25519_public_key()
        frame = bytes(nacl.public.SealedBox(box_key).encrypt(frame))
    header = BundleHeader(
        sender=identity.public_key,
        recipient=recipient,
        created=created,
        ranges=ranges,
        receipts=tuple(receipts),
        body_size=len(body),
        segments=len(segments),
    )
    return frame_bundle(identity, packb(header.to_wire()), frame)


def frame_bundle(identity: Identity, header: bytes, body: bytes) -> bytes:
    """Frame an encoded header and body and sign them: the layout above, nothing checked.

    ``build_bundle`` is the way to make a bundle; this is the framing alone, for tools
    and tests that need bundles with headers or bodies ``build_bundle`` would not make.
    """
    signed = b"".join(
        (
            MAGIC,
            FORMAT_VERSION.to_bytes(2, "big"),
            len(header).to_bytes(4, "big"),
            header,
            len(body).to_bytes(4, "big"),
            body,
        )
    )
    return signed + identity.sign(signed)


def peek_header(prefix: bytes, limits: Limits = DEFAULT_LIMITS) -> BundleHeader:
    """The header of a bundle from its first bytes, WITHOUT checking the bundle's
    signature: for bookkeeping on bundles one made oneself or only counts (what is in
    transit), never for deciding what to apply. ``prefix`` needs 12 + H bytes."""
    if len(prefix) < _PREFIX or prefix[:6] != MAGIC:
        raise BundleFormatError("not an offsync bundle (bad magic or too short)")
    hlen = int.from_bytes(prefix[8:12], "big")
    if hlen > limits.max_header_bytes:
        raise LimitExceededError(f"bundle header of {hlen} bytes over the limit")
    if len(prefix) < _PREFIX + hlen:
        raise BundleFormatError("bundle truncated inside its header")
    raw = unpack_strict(prefix[_PREFIX : _PREFIX + hlen], "bundle header")
    return BundleHeader.from_wire(raw, limits)


def read_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[BundleHeader, bytes]:
    """Check framing and the sender's signature; return the header and the raw body.

    Does not decrypt or decompress, so a relay or an inspector can use it on bundles it
    cannot open.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BundleFormatError("a bundle is bytes")
    data = bytes(data)
    if len(data) > limits.max_bundle_bytes:
        raise LimitExceededError(
            f"bundle of {len(data)} bytes over the limit of {limits.max_bundle_bytes}"
        )
    if len(data) < _PREFIX + 4 + SIG_BYTES or data[:6] != MAGIC:
        raise BundleFormatError("not an offsync bundle (bad magic or too short)")
    version = int.from_bytes(data[6:8], "big")
    if version != FORMAT_VERSION:
        raise BundleFormatError(
            f"bundle format version {version}; this offsync reads {FORMAT_VERSION}"
        )
    hlen = int.from_bytes(data[8:12], "big")
    if hlen > limits.max_header_bytes:
        raise LimitExceededError(f"bundle header of {hlen} bytes over the limit")
    body_at = _PREFIX + hlen + 4
    if body_at + SIG_BYTES > len(data):
        raise BundleFormatError("bundle truncated inside its header")
    blen = int.from_bytes(data[body_at - 4 : body_at], "big")
    end = body_at + blen
    if end + SIG_BYTES != len(data):
        raise BundleFormatError(
            "bundle length does not match its framing (truncated or trailing bytes)"
        )
    # The header names the signer, so parse it first, but trust nothing in it until the
    # signature over the exact bytes has been checked.
    header_value = unpack_strict(data[_PREFIX : _PREFIX + hlen], "bundle header")
    if type(header_value) is not dict or type(header_value.get("sender")) is not bytes:
        raise BundleFormatError("bundle header names no sender")
    sender = header_value["sender"]
    if len(sender) != 32:
        raise BundleFormatError("bundle sender must be a 32-byte key")
    verify_signature(sender, data[:end], data[end:])
    header = BundleHeader.from_wire(header_value, limits)
    if packb(header.to_wire()) != data[_PREFIX : _PREFIX + hlen]:
        raise BundleFormatError("bundle header is not canonically encoded")
    return header, data[body_at:end]


def _zstd_frame_length(frame: bytes) -> int:
    """Length of the single zstd frame at the start of ``frame`` (RFC 8878 section 3.1)."""
    try:
        pos = zstandard.frame_header_size(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError("body is not a zstd frame") from exc
    checksum = frame[4] & 0x04
    while True:
        if pos + 3 > len(frame):
            raise BundleFormatError("zstd frame truncated")
        bh = int.from_bytes(frame[pos : pos + 3], "little")
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        pos += 3 + (1 if btype == 1 else bsize)
        if btype == 3:
            raise BundleFormatError("zstd frame uses a reserved block type")
        if last:
            break
    return pos + (4 if checksum else 0)


def _decompress(frame: bytes, declared: int, limits: Limits) -> bytes:
    if frame[:4] != _ZSTD_MAGIC:
        raise BundleFormatError("body is not a zstd frame")
    try:
        params = zstandard.get_frame_parameters(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError("body has a damaged zstd frame header") from exc
    if params.content_size != declared:
        raise BundleFormatError("zstd frame size differs from the header's body_size")
    if params.content_size > limits.max_body_bytes:
        raise LimitExceededError("decompressed body over the limit")
    if params.window_size > limits.max_window_bytes:
        raise LimitExceededError(f"zstd window of {params.window_size} bytes over the limit")
    if params.dict_id != 0:
        raise BundleFormatError("zstd dictionaries are not used by offsync")
    if _zstd_frame_length(frame) != len(frame):
        raise BundleFormatError("bytes after the zstd frame")
    try:
        body = zstandard.ZstdDecompressor(max_window_size=limits.max_window_bytes).decompress(frame)
    except zstandard.ZstdError as exc:
        raise BundleFormatError(f"zstd frame does not decompress: {exc}") from exc
    if len(body) != declared:
        raise BundleFormatError("decompressed body has the wrong size")
    return bytes(body)


def open_bundle(
    data: bytes, identity: Identity | None = None, limits: Limits = DEFAULT_LIMITS
) -> Bundle:
    """Verify, decrypt (with ``identity``), decompress and parse a bundle."""
    header, frame = read_header(data, limits)
    if header.recipient is not None:
        if identity is None or identity.public_key != header.recipient:
            raise DecryptionError("bundle is encrypted for another site")
        try:
            frame = identity.unseal(frame)
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError) as exc:
            raise DecryptionError("encrypted bundle body does not open") from exc
    body = _decompress(frame, header.body_size, limits)
    try:
        raw_segments = msgpack.unpackb(
            body,
            raw=False,
            max_array_len=limits.max_segments,
            max_map_len=0,
            ext_hook=_no_ext,
            timestamp=3,
        )
    except BundleFormatError:
        raise
    except Exception as exc:
        raise BundleFormatError(f"bundle body is not valid msgpack ({type(exc).__name__})") from exc
    if type(raw_segments) is not list or len(raw_segments) != header.segments:
        raise BundleFormatError("bundle body does not hold the declared number of segments")
    segments = []
    carried: dict[bytes, list[tuple[int, int]]] = {}
    for raw in raw_segments:
        if type(raw) is not bytes:
            raise BundleFormatError("bundle body must be an array of encoded segments")
        seg = Segment.decode(raw, limits)
        carried.setdefault(seg.origin, []).append((seg.first_seq, seg.last_seq))
        segments.append(seg)
    if Knowledge(carried) != header.ranges:
        raise BundleFormatError("bundle ranges differ from the segments it carries")
    return Bundle(id=hash32(data), header=header, segments=segments, size=len(data))


def _no_ext(code: int, data: bytes) -> Any:
    raise BundleFormatError(f"msgpack extension type {code} is not allowed")
