"""Bundles of format 3 (version 00 03): the unit of transfer (docs/spec.md §9).

Layout (all integers big-endian)::

    magic    6  b"OFSYNC"
    version  2  FORMAT_VERSION (3)
    hlen     4  header length H
    header   H  canonical msgpack map
    blen     4  body length B
    body     B  msgpack array of encoded segments, whole or redacted (sealed-box
                encrypted when the header names a recipient)
    sig     64  ed25519 signature by header["sender"] over every byte before it

Against format 2 the header gains ``relays_for`` (the sites the sender relays for,
whose receipts it wants to carry back) and its ``ranges`` and receipts are stream-keyed
knowledge; the receipts are partial, restricted to what the receiver needs. Opening a
bundle checks framing and limits, verifies the sender's signature over the exact
bytes, and only then decrypts and parses; blocks are opened later, one at a time, each
after its origin's signature is checked. A format-2 bundle is refused (version).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import nacl.public
import nacl.signing

from .clock import MAX_HLC
from .encoding import packb
from .errors import BundleFormatError, DecryptionError, LimitExceededError, UsageError
from .identity import Identity, verify_signature
from .knowledge import Knowledge
from .limits import DEFAULT_LIMITS, Limits
from .receipt import Receipt
from .scope import Stream
from .segment import AnySegment, decode_segment, hash32
from .unpack import Budget, unpack

__all__ = [
    "FORMAT_VERSION",
    "HEADER_KEYS",
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
FORMAT_VERSION = 3
SIG_BYTES = 64
_PREFIX = 12  # magic + version + hlen
HEADER_KEYS = ("created", "ranges", "receipts", "recipient", "relays_for", "segments", "sender")


@dataclass(frozen=True, slots=True)
class BundleHeader:
    sender: bytes
    recipient: bytes | None
    created: int
    ranges: Knowledge
    receipts: tuple[Receipt, ...]  # the sender's own first, then ones it passes on
    segments: int
    relays_for: tuple[bytes, ...] = ()  # sorted, unique, without the sender

    @property
    def knowledge(self) -> Knowledge:
        """What the sender states it held when it packed this bundle (partial)."""
        return self.receipts[0].knowledge

    def to_wire(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "ranges": self.ranges.to_wire(),
            "receipts": [r.encode() for r in self.receipts],
            "recipient": self.recipient,
            "relays_for": list(self.relays_for),
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
        for name in ("created", "segments"):
            v = value[name]
            if type(v) is not int or not 0 <= v <= MAX_HLC:
                raise BundleFormatError(f"header {name} must be an integer in [0, 2^63)")
        if value["segments"] > limits.max_segments:
            raise LimitExceededError(f"more than {limits.max_segments} segments in a bundle")
        relays_for = _relays_for(value["relays_for"], sender, limits)
        raw_receipts = value["receipts"]
        if type(raw_receipts) is not list or not raw_receipts:
            raise BundleFormatError("header must carry at least the sender's receipt")
        if len(raw_receipts) > limits.max_receipts:
            raise LimitExceededError(f"more than {limits.max_receipts} receipts in a bundle header")
        if not all(type(r) is bytes for r in raw_receipts):
            raise BundleFormatError("header receipts are encoded receipts (bin)")
        if len(set(raw_receipts)) != len(raw_receipts):
            raise BundleFormatError("header receipts must be distinct")
        # Everything the header's knowledge statements build shares one budget.
        budget = Budget(limits.max_decode_bytes, "bundle header")
        receipts = tuple(Receipt.decode(r, limits, budget=budget) for r in raw_receipts)
        if receipts[0].replica != sender:
            raise BundleFormatError("the first receipt must be the sender's own")
        return cls(
            sender=sender,
            recipient=recipient,
            created=value["created"],
            ranges=Knowledge.from_wire(value["ranges"], limits, budget),
            receipts=receipts,
            segments=value["segments"],
            relays_for=relays_for,
        )


def _relays_for(value: Any, sender: bytes, limits: Limits) -> tuple[bytes, ...]:
    if type(value) is not list:
        raise BundleFormatError("header relays_for must be an array of site keys")
    if len(value) > limits.max_relays_for:
        raise LimitExceededError(f"header relays_for names more than {limits.max_relays_for} sites")
    if not all(type(k) is bytes and len(k) == 32 for k in value):
        raise BundleFormatError("header relays_for holds 32-byte site keys")
    if any(a >= b for a, b in pairwise(value)):
        raise BundleFormatError("header relays_for must be sorted and unique")
    if sender in value:
        raise BundleFormatError("a sender does not relay for itself")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Bundle:
    """An opened, verified bundle."""

    id: bytes
    header: BundleHeader
    segments: Sequence[AnySegment] = field(default=())
    size: int = 0


def build_bundle(
    identity: Identity,
    segments: Sequence[bytes],
    *,
    ranges: Knowledge,
    receipts: Sequence[Receipt],
    created: int,
    recipient: bytes | None = None,
    relays_for: Iterable[bytes] = (),
) -> bytes:
    """Frame, optionally encrypt, and sign encoded segments."""
    return build_bundle_body(
        identity,
        bundle_body(segments),
        len(segments),
        ranges=ranges,
        receipts=receipts,
        created=created,
        recipient=recipient,
        relays_for=relays_for,
    )


def bundle_body(segments: Sequence[bytes]) -> bytes:
    """The body of a bundle of these encoded segments, before any encryption: their
    canonical msgpack array, joined at once (``packb`` grows a buffer by doubling and
    then copies it, up to three times a 16 MiB body)."""
    parts = [_header(len(segments), _ARRAY_HEADERS)]
    for segment in segments:
        parts += (_header(len(segment), _BIN_HEADERS), segment)
    return b"".join(parts)


#: The shortest msgpack header for an array or a bin of a length: (below, prefix,
#: length bytes) in order; a fixarray holds its length in the prefix byte.
_ARRAY_HEADERS = ((16, 0x90, 0), (1 << 16, 0xDC, 2), (1 << 32, 0xDD, 4))
_BIN_HEADERS = ((1 << 8, 0xC4, 1), (1 << 16, 0xC5, 2), (1 << 32, 0xC6, 4))


def _header(n: int, headers: tuple[tuple[int, int, int], ...]) -> bytes:
    for below, prefix, size in headers:
        if n < below:
            return bytes([prefix | n]) if size == 0 else bytes([prefix]) + n.to_bytes(size, "big")
    raise UsageError("a bundle body's array or segment is too long for msgpack")


def build_bundle_body(
    identity: Identity,
    body: bytes,
    segments: int,
    *,
    ranges: Knowledge,
    receipts: Sequence[Receipt],
    created: int,
    recipient: bytes | None = None,
    relays_for: Iterable[bytes] = (),
) -> bytes:
    """``build_bundle`` of a ``bundle_body`` of ``segments`` segments, for a caller that
    lets the segments go before the bundle is framed (``Replica.iter_pack``: one copy
    of a 16 MiB bundle fewer)."""
    if recipient is not None and (type(recipient) is not bytes or len(recipient) != 32):
        raise UsageError("a recipient is a 32-byte site key")
    # Not checked against 2^63 here: tests make such bundles to check decoders.
    if type(created) is not int or not 0 <= created < 1 << 64:
        raise UsageError("a bundle's created is an HLC, an unsigned 64-bit int")
    relayed = tuple(sorted(set(relays_for)))
    if not all(type(k) is bytes and len(k) == 32 for k in relayed):
        raise UsageError("relays_for names 32-byte site keys")
    if identity.public_key in relayed:
        raise UsageError("a sender does not relay for itself")
    if not receipts or receipts[0].replica != identity.public_key:
        raise UsageError("a bundle carries its sender's own receipt first")
    if recipient is not None:
        box_key = nacl.signing.VerifyKey(recipient).to_curve25519_public_key()
        body = bytes(nacl.public.SealedBox(box_key).encrypt(body))
    header = BundleHeader(
        sender=identity.public_key,
        recipient=recipient,
        created=created,
        ranges=ranges,
        receipts=tuple(receipts),
        segments=segments,
        relays_for=relayed,
    )
    return frame_bundle(identity, packb(header.to_wire()), body)


def frame_bundle(identity: Identity, header: bytes, body: bytes) -> bytes:
    """Frame an encoded header and body and sign them: the layout above, nothing checked
    (for tools and tests that need bundles ``build_bundle`` would not make)."""
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


def _unpack_header(data: bytes, limits: Limits) -> Any:
    # {ranges: knowledge (five arrays deep), receipts: [bin, ...], ...}: six deep.
    return unpack(data, "bundle header", limits, max_depth=6)


def peek_header(prefix: bytes, limits: Limits = DEFAULT_LIMITS) -> BundleHeader:
    """The header of a bundle from its first bytes, WITHOUT checking the bundle's
    signature: for bookkeeping on bundles one made oneself or only counts, never for
    deciding what to apply. ``prefix`` needs 12 + H bytes."""
    if type(prefix) is not bytes:
        raise BundleFormatError("a bundle is bytes")
    if len(prefix) < _PREFIX or prefix[:6] != MAGIC:
        raise BundleFormatError("not an offsync bundle (bad magic or too short)")
    _check_version(prefix)
    hlen = int.from_bytes(prefix[8:12], "big")
    if hlen > limits.max_header_bytes:
        raise LimitExceededError(f"bundle header of {hlen} bytes over the limit")
    if len(prefix) < _PREFIX + hlen:
        raise BundleFormatError("bundle truncated inside its header")
    raw = _unpack_header(prefix[_PREFIX : _PREFIX + hlen], limits)
    return BundleHeader.from_wire(raw, limits)


def _check_version(data: bytes) -> None:
    version = int.from_bytes(data[6:8], "big")
    if version != FORMAT_VERSION:
        raise BundleFormatError(
            f"bundle format version {version}; this decoder reads format {FORMAT_VERSION}"
        )


def read_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[BundleHeader, bytes]:
    """Check framing and the sender's signature; return the header and the raw body.

    Does not decrypt or open blocks, so a relay or an inspector can use it on bundles it
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
    _check_version(data)
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
    header_value = _unpack_header(data[_PREFIX : _PREFIX + hlen], limits)
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


def open_bundle(
    data: bytes, identity: Identity | None = None, limits: Limits = DEFAULT_LIMITS
) -> Bundle:
    """Verify, decrypt (with ``identity``) and parse a bundle.

    The segments' blocks stay compressed: ``open_changes`` opens each in turn.
    """
    header, body = read_header(data, limits)
    if header.recipient is not None:
        if identity is None or identity.public_key != header.recipient:
            raise DecryptionError("bundle is encrypted for another site")
        try:
            body = identity.unseal(body)
        except DecryptionError as exc:
            raise DecryptionError("encrypted bundle body does not open") from exc
    raw_segments = unpack(body, "bundle body", limits, max_items=limits.max_segments, max_depth=1)
    if type(raw_segments) is not list or len(raw_segments) != header.segments:
        raise BundleFormatError("bundle body does not hold the declared number of segments")
    if not all(type(raw) is bytes for raw in raw_segments):
        raise BundleFormatError("bundle body must be an array of encoded segments")
    if packb(raw_segments) != body:
        raise BundleFormatError("bundle body is not canonically encoded")
    segments = [decode_segment(raw, limits) for raw in raw_segments]
    carried: dict[Stream, list[tuple[int, int]]] = {}
    for seg in segments:
        carried.setdefault(seg.stream, []).append((seg.first_seq, seg.last_seq))
    for runs in carried.values():
        runs.sort()
        if any(b[0] <= a[1] for a, b in pairwise(runs)):
            raise BundleFormatError("a bundle carries two segments that share seqs of a stream")
    if Knowledge(carried) != header.ranges:
        raise BundleFormatError("bundle ranges differ from the segments it carries")
    return Bundle(id=hash32(data), header=header, segments=segments, size=len(data))
