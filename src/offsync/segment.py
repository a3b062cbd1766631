"""Segments of format 3: runs of one stream's consecutive changes, signed by their
origin, with a commitment that makes erasure verifiable (docs/spec.md §6).

A segment is sealed once and never re-cut, so relays store and forward it byte for
byte. Its signature covers the block's hash, checked before the block is opened, and a
**commitment**: one salted hash per change over its field bytes, hashed together with
the skeleton (everything but the field values). A receiver of a whole segment need not
recompute it (``H(block)`` already authenticates everything), so the apply path pays
nothing for it. After an erasure a replica holds a **redacted** form instead: the
block without the erased rows' values and without the secret, the salts of the other
rows and the hashes of the erased ones. Its receiver rebuilds every per-change hash and
checks the commitment, so the origin's one signature still authenticates what is left,
and nobody can test a guess of an erased value (the salt of an erased row left with
it). Both forms have the same segment hash, so chains, duplicates and knowledge do
not change.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from operator import add
from typing import TYPE_CHECKING, Any

from .change import PUT, Change
from .columns import SECRET_BYTES, decode_block, encode_block, encode_redacted_block
from .compression import compress, decompress, raw_frame
from .encoding import packb
from .errors import BundleFormatError, ForkError, LimitExceededError, SignatureError, UsageError
from .identity import Identity, verify_signature
from .limits import DEFAULT_LIMITS, Limits
from .scope import Partition, Stream, check_collection, check_prefix, new_partition, new_stream
from .unpack import unpack

__all__ = [
    "COMMIT_DOMAIN",
    "DEFAULT_LEVEL",
    "NO_PREVIOUS",
    "SALT_BYTES",
    "SALT_DOMAIN",
    "SEGMENT_DOMAIN",
    "AnySegment",
    "RedactedSegment",
    "Segment",
    "commitment_of",
    "decode_segment",
    "hash32",
    "partition_hash",
    "salts_of",
]

SEGMENT_DOMAIN = b"offsync/segment/v3\x00"
SALT_DOMAIN = b"offsync/salt/v3\x00"
COMMIT_DOMAIN = b"offsync/commit/v3\x00"
NO_PREVIOUS = bytes(32)
MAX_SEQ = (1 << 63) - 1
SALT_BYTES = 16
HASH_BYTES = 32
#: The zstd level offsync seals and redacts at (any level is valid; receivers open
#: every level at the same speed).
DEFAULT_LEVEL = 15
#: Items of a whole segment and of a redacted one.
SEGMENT_ITEMS = 9
REDACTED_ITEMS = 10


def hash32(data: bytes) -> bytes:
    """``H``: BLAKE2b with a 32-byte digest."""
    return hashlib.blake2b(data, digest_size=32).digest()


_blake = partial(hashlib.blake2b, digest_size=32)


def partition_hash(partition: Partition) -> bytes:
    """``H(msgpack([collection, prefix]))``: what the signed message says of the
    partition (fixed width, so the message needs no length prefix)."""
    return hash32(packb([partition.collection, partition.prefix]))


def salts_of(secret: bytes, n: int) -> bytes:
    """The 16-byte salts of a segment's n changes, one after another:
    ``SHAKE256("offsync/salt/v3" ‖ 0x00 ‖ secret)``, its first 16·n bytes."""
    return hashlib.shake_256(SALT_DOMAIN + secret).digest(SALT_BYTES * n)


def row_hashes(salts: bytes, fields: Sequence[bytes | None]) -> list[bytes]:
    """``v_i = H(salt_i ‖ fields_i)`` of each change (fields empty for a delete)."""
    cut = [salts[i : i + SALT_BYTES] for i in range(0, len(salts), SALT_BYTES)]
    return [h.digest() for h in map(_blake, map(add, cut, (f or b"" for f in fields)))]


def commitment_of(skeleton: bytes, hashes: Iterable[bytes]) -> bytes:
    """``H("offsync/commit/v3" ‖ 0x00 ‖ H(skeleton) ‖ v_0 ‖ … ‖ v_{n-1})``."""
    return hash32(COMMIT_DOMAIN + hash32(skeleton) + b"".join(hashes))


def _signing_message(
    origin: bytes,
    partition: Partition,
    first: int,
    last: int,
    block_hash: bytes,
    commitment: bytes,
    prev_hash: bytes,
) -> bytes:
    return b"".join(
        (
            SEGMENT_DOMAIN,
            origin,
            partition_hash(partition),
            first.to_bytes(8, "big"),
            last.to_bytes(8, "big"),
            block_hash,
            commitment,
            prev_hash,
        )
    )


def _check_header(
    origin: Any, partition: Any, first: Any, last: Any, prev: Any, error: type[Exception]
) -> None:
    if not (type(origin) is bytes and len(origin) == 32):
        raise error("a segment's origin is a 32-byte key")
    if not isinstance(partition, Partition):
        raise error("a segment's partition is a Partition")
    if not (type(prev) is bytes and len(prev) == 32):
        raise error("a segment's prev_hash is 32 bytes")
    if not (type(first) is int and type(last) is int and 1 <= first <= last <= MAX_SEQ):
        raise error("a segment's seqs are 1 <= first_seq <= last_seq < 2^63")
    if (first == 1) != (prev == NO_PREVIOUS):
        raise error("a stream's first segment, and only it, has prev_hash 32 zero bytes")


class _Signed:
    """What both forms of a segment share: the header its origin signed, and so its
    stream, its hash and the signature check (a redacted form's content is checked
    against the commitment when it is opened)."""

    __slots__ = ()
    origin: bytes
    partition: Partition
    first_seq: int
    last_seq: int
    prev_hash: bytes
    commitment: bytes
    signature: bytes
    if TYPE_CHECKING:  # a whole segment's is H(block); a redacted form carries it

        @property
        def block_hash(self) -> bytes: ...

    @property
    def stream(self) -> Stream:
        return new_stream(self.origin, self.partition)

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    @property
    def signing_message(self) -> bytes:
        return _signing_message(
            self.origin,
            self.partition,
            self.first_seq,
            self.last_seq,
            self.block_hash,
            self.commitment,
            self.prev_hash,
        )

    @property
    def hash(self) -> bytes:
        """Identifies the segment (in both forms) and is what the next segment of its
        stream chains to."""
        return hash32(self.signing_message)

    def verify(self) -> None:
        """Raise ``SignatureError`` unless the origin signed this segment's header."""
        verify_signature(self.origin, self.signing_message, self.signature)


@dataclass(frozen=True, slots=True)
class Segment(_Signed):
    """A whole segment: the block as its origin sealed it."""

    origin: bytes
    partition: Partition
    first_seq: int
    last_seq: int
    prev_hash: bytes
    block: bytes  # one zstd frame of [skeleton, content, secret] (columns.encode_block)
    commitment: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_header(
            self.origin, self.partition, self.first_seq, self.last_seq, self.prev_hash, UsageError
        )
        if not (
            type(self.block) is bytes
            and type(self.commitment) is bytes
            and len(self.commitment) == 32
            and type(self.signature) is bytes
            and len(self.signature) == 64
        ):
            raise UsageError("a segment's block is bytes, commitment 32 bytes, signature 64")

    @property
    def block_hash(self) -> bytes:
        return hash32(self.block)

    @classmethod
    def seal(
        cls,
        identity: Identity,
        changes: Sequence[Change],
        prev_hash: bytes,
        level: int | None = DEFAULT_LEVEL,
        *,
        secret: bytes | None = None,
        limits: Limits = DEFAULT_LIMITS,
        values: Sequence[dict[str, Any] | None] | None = None,
    ) -> Segment:
        """Encode, commit, compress (zstd ``level``; None: a raw frame) and sign
        ``identity``'s consecutive changes of one stream. ``secret`` (32 bytes) is
        random unless given (the known-answer vectors fix it). ``values``: each
        change's fields as ``decode_fields`` gives them (None: decoded here), which a
        writer holds for its own changes: the block is then built without decoding."""
        if (
            not changes
            or changes[0].origin != identity.public_key
            or any(c.origin != identity.public_key for c in changes)
            or changes[-1].seq - changes[0].seq + 1 != len(changes)
            or any(c.seq != changes[0].seq + i for i, c in enumerate(changes))
        ):
            raise UsageError("a segment seals its signer's own consecutive changes")
        if secret is None:
            secret = secrets.token_bytes(SECRET_BYTES)
        partition = Partition(changes[0].collection, changes[0].prefix)
        plain, skeleton = encode_block(changes, partition, secret, limits, values)
        if len(plain) > limits.max_block_bytes:
            raise UsageError(f"a block is at most {limits.max_block_bytes} bytes")
        hashes = row_hashes(salts_of(secret, len(changes)), [c.fields for c in changes])
        block = raw_frame(plain) if level is None else compress(plain, level)
        return cls.seal_block(
            identity,
            partition,
            changes[0].seq,
            len(changes),
            block,
            commitment_of(skeleton, hashes),
            prev_hash,
        )

    @classmethod
    def seal_block(
        cls,
        identity: Identity,
        partition: Partition,
        first_seq: int,
        count: int,
        block: bytes,
        commitment: bytes,
        prev_hash: bytes,
    ) -> Segment:
        """Sign an already compressed block (tests and tools that need odd blocks)."""
        if type(first_seq) is not int or type(count) is not int or type(block) is not bytes:
            raise UsageError("a segment is a block of count changes from first_seq")
        last = first_seq + count - 1
        _check_header(identity.public_key, partition, first_seq, last, prev_hash, UsageError)
        msg = _signing_message(
            identity.public_key, partition, first_seq, last, hash32(block), commitment, prev_hash
        )
        return cls(
            identity.public_key,
            partition,
            first_seq,
            last,
            prev_hash,
            block,
            commitment,
            identity.sign(msg),
        )

    def open_block(self, limits: Limits = DEFAULT_LIMITS) -> tuple[list[Change], bytes, bytes]:
        """The changes, the secret and the skeleton's bytes; call ``verify`` first."""
        data = decompress(self.block, limits.max_block_bytes, limits, "segment block")
        block = decode_block(data, self.origin, self.partition, self.first_seq, limits)
        if len(block.changes) != self.count:
            raise BundleFormatError("segment holds a different number of changes than it claims")
        assert block.secret is not None
        return block.changes, block.secret, packb(block.skeleton)

    def open_changes(self, limits: Limits = DEFAULT_LIMITS) -> list[Change]:
        """Decompress (within limits) and decode the changes; call ``verify`` first.
        The commitment is not checked: ``H(block)`` authenticates them already."""
        data = decompress(self.block, limits.max_block_bytes, limits, "segment block")
        changes = decode_block(data, self.origin, self.partition, self.first_seq, limits).changes
        if len(changes) != self.count:
            raise BundleFormatError("segment holds a different number of changes than it claims")
        return changes

    def check_commitment(self, limits: Limits = DEFAULT_LIMITS) -> None:
        """``ForkError`` if the signed commitment is not that of the block: the origin
        signed a false one (kept as evidence, reason ``fork: false commitment``)."""
        changes, secret, skeleton = self.open_block(limits)
        hashes = row_hashes(salts_of(secret, len(changes)), [c.fields for c in changes])
        if commitment_of(skeleton, hashes) != self.commitment:
            raise ForkError(
                "false commitment: the origin signed another commitment than its block's"
            )

    def redact(
        self,
        erased: Iterable[int],
        *,
        level: int | None = DEFAULT_LEVEL,
        limits: Limits = DEFAULT_LIMITS,
    ) -> RedactedSegment:
        """The redacted form without the field values of the changes at indexes
        ``erased`` (0 is ``first_seq``; puts only). ``ForkError`` if the origin's
        commitment is false (then no redaction can verify)."""
        changes, secret, skeleton = self.open_block(limits)
        salts = salts_of(secret, len(changes))
        hashes = row_hashes(salts, [c.fields for c in changes])
        if commitment_of(skeleton, hashes) != self.commitment:
            raise ForkError(
                "false commitment: the origin signed another commitment than its block's"
            )
        rows = _erasable(erased, changes, ())
        return _redacted(self, changes, skeleton, rows, salts, hashes, level)

    def to_wire(self) -> list[Any]:
        return [
            self.origin,
            self.partition.collection,
            self.partition.prefix,
            self.first_seq,
            self.last_seq,
            self.prev_hash,
            self.block,
            self.commitment,
            self.signature,
        ]

    def encode(self) -> bytes:
        return packb(self.to_wire())

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Segment:
        """Parse (not verify) one encoded whole segment."""
        segment = decode_segment(data, limits)
        if not isinstance(segment, Segment):
            raise BundleFormatError("a redacted segment where a whole one was expected")
        return segment


def _erasable(
    erased: Iterable[int], changes: Sequence[Change], already: Sequence[int]
) -> list[int]:
    try:
        rows = sorted(set(erased) | set(already))
    except TypeError as exc:
        raise UsageError("erased rows are indexes (ints) of the segment's changes") from exc
    if not rows:
        raise UsageError("a redaction erases at least one change")
    for i in rows:
        if type(i) is not int or not 0 <= i < len(changes):
            raise UsageError(f"erased row {i!r} is not an index of the segment's changes")
        if changes[i].op != PUT:
            raise UsageError(
                "only puts are erased (deletes and erase orders hold no personal data)"
            )
    return rows


def _redacted(
    segment: Segment | RedactedSegment,
    changes: Sequence[Change],
    skeleton: bytes,
    rows: list[int],
    salts: bytes,
    hashes: Sequence[bytes],
    level: int | None,
) -> RedactedSegment:
    gone = set(rows)
    fields = [None if i in gone else c.fields for i, c in enumerate(changes)]
    plain = encode_redacted_block(skeleton, fields)
    kept = b"".join(
        salts[i * SALT_BYTES : (i + 1) * SALT_BYTES] for i in range(len(changes)) if i not in gone
    )
    return RedactedSegment(
        segment.origin,
        segment.partition,
        segment.first_seq,
        segment.last_seq,
        segment.prev_hash,
        segment.block_hash,
        segment.commitment,
        segment.signature,
        raw_frame(plain) if level is None else compress(plain, level),
        tuple(rows),
        kept,
        b"".join(hashes[i] for i in rows),
    )


@dataclass(frozen=True, slots=True)
class RedactedSegment(_Signed):
    """A segment after an erasure: its origin's signature and commitment, the block
    without the erased rows' values (``rblock``), the erased row indexes, the salts of
    the other rows and the hashes ``v_i`` of the erased ones (§6.3)."""

    origin: bytes
    partition: Partition
    first_seq: int
    last_seq: int
    prev_hash: bytes
    block_hash: bytes
    commitment: bytes
    signature: bytes
    rblock: bytes
    erased: tuple[int, ...]
    salts: bytes
    hashes: bytes

    def __post_init__(self) -> None:
        _check_header(
            self.origin, self.partition, self.first_seq, self.last_seq, self.prev_hash, UsageError
        )
        _check_redaction(
            self.count,
            (self.block_hash, self.commitment, self.signature, self.rblock),
            self.erased,
            self.salts,
            self.hashes,
            UsageError,
        )

    def _open(self, limits: Limits) -> tuple[list[Change], bytes, list[bytes]]:
        data = decompress(self.rblock, limits.max_block_bytes, limits, "redacted block")
        block = decode_block(
            data, self.origin, self.partition, self.first_seq, limits, erased=self.erased
        )
        changes = block.changes
        if len(changes) != self.count:
            raise BundleFormatError("segment holds a different number of changes than it claims")
        skeleton = packb(block.skeleton)
        gone = dict(zip(self.erased, range(len(self.erased)), strict=True))
        kept = row_hashes(self.salts, [c.fields for i, c in enumerate(changes) if i not in gone])
        given = iter(kept)
        hashes = [
            self.hashes[gone[i] * 32 : gone[i] * 32 + 32] if i in gone else next(given)
            for i in range(len(changes))
        ]
        if commitment_of(skeleton, hashes) != self.commitment:
            raise SignatureError("the redacted segment does not match its origin's commitment")
        return changes, skeleton, hashes

    def open_changes(self, limits: Limits = DEFAULT_LIMITS) -> list[Change]:
        """The changes, erased puts with ``fields`` None, after checking the content
        against the signed commitment (``SignatureError``); call ``verify`` first."""
        return self._open(limits)[0]

    def redact(
        self,
        erased: Iterable[int],
        *,
        level: int | None = DEFAULT_LEVEL,
        limits: Limits = DEFAULT_LIMITS,
    ) -> RedactedSegment:
        """This redaction with more rows erased (a later erasure of another record)."""
        changes, skeleton, hashes = self._open(limits)
        rows = _erasable(erased, changes, self.erased)
        # One salt per row again; an already erased row's is never used.
        gone = set(self.erased)
        kept = iter(range(0, len(self.salts), SALT_BYTES))
        per_row = b"".join(
            bytes(SALT_BYTES) if i in gone else self.salts[(k := next(kept)) : k + SALT_BYTES]
            for i in range(len(changes))
        )
        return _redacted(self, changes, skeleton, rows, per_row, hashes, level)

    def to_wire(self) -> list[Any]:
        return [
            self.origin,
            self.partition.collection,
            self.partition.prefix,
            self.first_seq,
            self.last_seq,
            self.prev_hash,
            self.block_hash,
            self.commitment,
            self.signature,
            [self.rblock, list(self.erased), self.salts, self.hashes],
        ]

    def encode(self) -> bytes:
        return packb(self.to_wire())


AnySegment = Segment | RedactedSegment


def _check_redaction(
    n: int,
    items: tuple[Any, Any, Any, Any],
    erased: Any,
    salts: Any,
    hashes: Any,
    error: type[Exception],
) -> None:
    """The checks of a redacted form that need no opening (§6.3)."""
    block_hash, commitment, signature, rblock = items
    if not (
        type(block_hash) is bytes
        and len(block_hash) == 32
        and type(commitment) is bytes
        and len(commitment) == 32
        and type(signature) is bytes
        and len(signature) == 64
        and type(rblock) is bytes
        and type(salts) is bytes
        and type(hashes) is bytes
        and type(erased) is tuple
    ):
        raise error("a redacted segment's items have the wrong types")
    if not erased or not all(type(i) is int for i in erased):
        raise error("a redaction erases at least one change, named by its index")
    if erased[0] < 0 or erased[-1] >= n or any(a >= b for a, b in pairwise(erased)):
        raise error("erased indexes are sorted, unique and within the segment")
    if len(salts) != SALT_BYTES * (n - len(erased)) or len(hashes) != HASH_BYTES * len(erased):
        raise error("a redaction holds a salt per kept change and a hash per erased one")


def decode_segment(data: bytes, limits: Limits = DEFAULT_LIMITS) -> AnySegment:
    """Parse (not verify) one encoded segment, whole or redacted (untrusted input)."""
    if type(data) is not bytes:
        raise BundleFormatError("a segment is bytes")
    if len(data) > limits.max_bundle_bytes:
        raise LimitExceededError("segment larger than the bundle limit")
    # A redacted segment's redaction is an array holding the array of erased rows.
    value = unpack(data, "segment", limits, max_depth=3)
    if type(value) is not list or len(value) not in (SEGMENT_ITEMS, REDACTED_ITEMS):
        raise BundleFormatError("a segment is an array of 9 items (10 when redacted)")
    origin, collection, prefix, first, last, prev = value[:6]
    check_collection(collection, BundleFormatError, LimitExceededError)
    check_prefix(prefix, BundleFormatError, LimitExceededError)
    partition = new_partition(collection, prefix)
    _check_header(origin, partition, first, last, prev, BundleFormatError)
    if last - first + 1 > limits.max_segment_changes:
        raise LimitExceededError(f"segment carries more than {limits.max_segment_changes} changes")
    segment: AnySegment
    if len(value) == SEGMENT_ITEMS:
        block, commitment, signature = value[6:]
        if not (
            type(block) is bytes
            and type(commitment) is bytes
            and len(commitment) == 32
            and type(signature) is bytes
            and len(signature) == 64
        ):
            raise BundleFormatError("segment fields have the wrong types")
        segment = Segment(origin, partition, first, last, prev, block, commitment, signature)
    else:
        block_hash, commitment, signature, redaction = value[6:]
        if type(redaction) is not list or len(redaction) != 4:
            raise BundleFormatError("a redaction is [rblock, erased, salts, hashes]")
        rblock, erased, salts, hashes = redaction
        if type(erased) is not list:
            raise BundleFormatError("a redaction's erased rows are an array")
        rows = tuple(erased)
        items = (block_hash, commitment, signature, rblock)
        _check_redaction(last - first + 1, items, rows, salts, hashes, BundleFormatError)
        segment = RedactedSegment(origin, partition, first, last, prev, *items, rows, salts, hashes)
    if segment.encode() != data:
        raise BundleFormatError("segment is not canonically encoded")
    return segment
