"""Segments: runs of one origin's consecutive changes, signed by that origin.

A segment is sealed once and never re-cut, so relays store and forward it byte for
byte and every change stays verifiable end to end. Its changes travel as one zstd frame
(the block) compressed by the origin when it seals them: compression is paid once, and
no relay, centre or re-pack ever compresses again. The signature covers the block's
hash, so it is checked before the block is decompressed. Segments of one origin form a
hash chain (each names its predecessor's hash), which is how a fork — the same seqs
issued twice, say by a site restored from an old backup — becomes visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .change import Change, decode_changes, encode_changes
from .compression import compress, decompress
from .errors import BundleFormatError, LimitExceededError, UsageError
from .identity import Identity, verify_signature
from .limits import DEFAULT_LIMITS, Limits
from .scope import Stream, whole
from .unpack import unpack

__all__ = ["NO_PREVIOUS", "Segment", "hash32"]

SEGMENT_DOMAIN = b"offsync/segment/v2\x00"
NO_PREVIOUS = bytes(32)
MAX_SEQ = (1 << 63) - 1


def hash32(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _signing_message(
    origin: bytes, first: int, last: int, block_hash: bytes, prev_hash: bytes
) -> bytes:
    return b"".join(
        (
            SEGMENT_DOMAIN,
            origin,
            first.to_bytes(8, "big"),
            last.to_bytes(8, "big"),
            block_hash,
            prev_hash,
        )
    )


@dataclass(frozen=True, slots=True)
class Segment:
    origin: bytes
    first_seq: int
    last_seq: int
    prev_hash: bytes
    block: bytes  # one zstd frame of the encoded changes (change.encode_changes)
    signature: bytes

    def __post_init__(self) -> None:
        if not (
            type(self.origin) is bytes
            and len(self.origin) == 32
            and type(self.prev_hash) is bytes
            and len(self.prev_hash) == 32
            and type(self.signature) is bytes
            and len(self.signature) == 64
            and type(self.block) is bytes
        ):
            raise UsageError("segment origin and prev_hash are 32 bytes, signature 64")
        if not (
            type(self.first_seq) is int
            and type(self.last_seq) is int
            and 1 <= self.first_seq <= self.last_seq <= MAX_SEQ
        ):
            raise UsageError("segment seq range out of order")

    @property
    def stream(self) -> Stream:
        """The stream it is a run of: in format 2, its origin's one stream."""
        return whole(self.origin)

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def signing_message(self) -> bytes:
        return _signing_message(
            self.origin, self.first_seq, self.last_seq, hash32(self.block), self.prev_hash
        )

    @property
    def hash(self) -> bytes:
        """Identifies the segment and is what the next segment of its origin chains to."""
        return hash32(self.signing_message)

    @classmethod
    def seal(
        cls,
        identity: Identity,
        changes: Sequence[Change],
        prev_hash: bytes,
        level: int,
        values: Sequence[dict[str, Any] | None] | None = None,
    ) -> Segment:
        """Encode, compress (zstd ``level``) and sign ``identity``'s consecutive changes
        (``values``: their fields decoded, if the caller has them: ``encode_changes``)."""
        if (
            not changes
            or changes[0].origin != identity.public_key
            or changes[-1].seq - changes[0].seq + 1 != len(changes)
        ):
            raise UsageError("a segment seals its signer's own consecutive changes")
        return cls.seal_block(
            identity,
            changes[0].seq,
            len(changes),
            compress(encode_changes(changes, values), level),
            prev_hash,
        )

    @classmethod
    def seal_block(
        cls, identity: Identity, first_seq: int, count: int, block: bytes, prev_hash: bytes
    ) -> Segment:
        """Sign an already compressed block (tests and tools that need odd blocks)."""
        if (
            type(first_seq) is not int
            or type(count) is not int
            or type(block) is not bytes
            or type(prev_hash) is not bytes
            or len(prev_hash) != 32
        ):
            raise UsageError("a segment is a block of count changes from first_seq")
        last = first_seq + count - 1
        if not 1 <= first_seq <= last <= MAX_SEQ:
            raise UsageError(f"a segment's seqs run from 1 to at most {MAX_SEQ}, count >= 1")
        msg = _signing_message(identity.public_key, first_seq, last, hash32(block), prev_hash)
        return cls(identity.public_key, first_seq, last, prev_hash, block, identity.sign(msg))

    def verify(self) -> None:
        """Raise ``SignatureError`` unless the origin signed exactly this segment."""
        verify_signature(self.origin, self.signing_message, self.signature)

    def open_changes(self, limits: Limits = DEFAULT_LIMITS) -> list[Change]:
        """Decompress (within limits) and decode the changes; call ``verify`` first."""
        data = decompress(self.block, limits.max_block_bytes, limits, "segment block")
        changes = decode_changes(data, self.origin, self.first_seq, limits)
        if len(changes) != self.count:
            raise BundleFormatError("segment holds a different number of changes than it claims")
        return changes

    def to_wire(self) -> list[Any]:
        return [
            self.origin,
            self.first_seq,
            self.last_seq,
            self.prev_hash,
            self.block,
            self.signature,
        ]

    def encode(self) -> bytes:
        return msgpack.packb(self.to_wire(), use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Segment:
        """Parse (not verify) one encoded segment."""
        if type(data) is not bytes:
            raise BundleFormatError("a segment is bytes")
        if len(data) > limits.max_bundle_bytes:
            raise LimitExceededError("segment larger than the bundle limit")
        value = unpack(data, "segment", limits, max_depth=1)
        if type(value) is not list or len(value) != 6:
            raise BundleFormatError("a segment is an array of 6 items")
        origin, first, last, prev, block, sig = value
        if not (
            type(origin) is bytes
            and len(origin) == 32
            and type(prev) is bytes
            and len(prev) == 32
            and type(sig) is bytes
            and len(sig) == 64
            and type(block) is bytes
            and type(first) is int
            and type(last) is int
            and 1 <= first <= last <= MAX_SEQ
        ):
            raise BundleFormatError("segment fields have the wrong types or ranges")
        if (first == 1) != (prev == NO_PREVIOUS):
            # No origin has a predecessor of its first segment, and every later one has
            # one: malformed, not a fork (docs/spec.md §5).
            raise BundleFormatError(
                "a segment's prev_hash is 32 zero bytes exactly when its first_seq is 1"
            )
        if last - first + 1 > limits.max_segment_changes:
            raise LimitExceededError(
                f"segment carries more than {limits.max_segment_changes} changes"
            )
        segment = cls(origin, first, last, prev, block, sig)
        if segment.encode() != data:
            raise BundleFormatError("segment is not canonically encoded")
        return segment
