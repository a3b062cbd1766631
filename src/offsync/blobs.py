"""Blob references, hashing, verification and chunking: pure, no I/O.

A blob is a large value (a photo, a fingerprint, a scanned form) that travels beside
records instead of inside them. A record field holds only its **reference**, the map
``{"$blob": [hash, size, media_type]}`` (docs/spec.md, "Blob references"), so the
origin's signature covers the blob through its hash, and a record can be applied and
read before its blob arrives. Stores keep the bytes (``offsync.stores.blobs``); this
module says what a reference is and checks bytes against one.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from .encoding import decode_fields, packb
from .errors import BlobError, BlobReferenceError, LimitExceededError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .unpack import unpack

__all__ = [
    "BLOB_KEY",
    "BLOB_MARK",
    "BlobHasher",
    "BlobRef",
    "BlobVerifier",
    "blob_hash",
    "check_references",
    "chunk_spans",
    "field_references",
    "is_reference",
    "read_chunks",
    "references",
]

#: The one key of the map that is a blob reference. ``$`` starts no name an application
#: would pick by accident; a map with this key and any other key is ordinary data.
BLOB_KEY = "$blob"
#: The canonical msgpack of ``BLOB_KEY``: field bytes without it hold no reference.
BLOB_MARK = b"\xa5" + BLOB_KEY.encode()
HASH_BYTES = 32
#: Sizes are < 2^63, like every other count of the format.
MAX_SIZE = (1 << 63) - 1
DEFAULT_MEDIA_TYPE = "application/octet-stream"


def blob_hash(data: bytes) -> bytes:
    """H (BLAKE2b-256, no key, salt or personalisation) of a blob's bytes."""
    return hashlib.blake2b(data, digest_size=HASH_BYTES).digest()


def _check_media_type(media_type: object, limits: Limits) -> str:
    if type(media_type) is not str:
        raise BlobReferenceError("a blob's media type is a str")
    # A few media types recur in millions of references (indexing them on every write):
    # those already found good skip the checks.
    if (media_type, limits.max_media_type) in _GOOD_MEDIA_TYPES:
        return media_type
    raw = media_type.encode("utf-8", "surrogatepass")
    if not 3 <= len(raw) <= limits.max_media_type:
        raise BlobReferenceError(
            f"a blob's media type is 3 to {limits.max_media_type} bytes, not {len(raw)}"
        )
    if (
        any(not 0x20 <= b <= 0x7E for b in raw)
        or b"/" not in raw[1:-1]
        or raw[:1] == b" "
        or raw[-1:] == b" "
    ):
        raise BlobReferenceError(
            f"a blob's media type is printable ASCII of the form type/subtype: {media_type!r}"
        )
    if len(_GOOD_MEDIA_TYPES) < _MAX_GOOD_MEDIA_TYPES:
        _GOOD_MEDIA_TYPES.add((media_type, limits.max_media_type))
    return media_type


#: Media types found well-formed, with the limit they were checked against (bounded:
#: media types from peers could otherwise fill it).
_GOOD_MEDIA_TYPES: set[tuple[str, int]] = set()
_MAX_GOOD_MEDIA_TYPES = 256


@dataclass(frozen=True, slots=True)
class BlobRef:
    """What a record field holds of a blob: its hash, exact size and media type."""

    hash: bytes
    size: int
    media_type: str = DEFAULT_MEDIA_TYPE

    def __post_init__(self) -> None:
        if type(self.hash) is not bytes or len(self.hash) != HASH_BYTES:
            raise BlobReferenceError(f"a blob's hash is {HASH_BYTES} bytes")
        if type(self.size) is not int or not 0 <= self.size <= MAX_SIZE:
            raise BlobReferenceError("a blob's size is an int, 0 <= size < 2^63")
        _check_media_type(self.media_type, DEFAULT_LIMITS)

    @property
    def hex(self) -> str:
        """The hash in lower-case hex: how people, logs and file names see a blob."""
        return self.hash.hex()

    def field(self) -> dict[str, Any]:
        """The value to put in a record field."""
        return {BLOB_KEY: [self.hash, self.size, self.media_type]}

    def to_bytes(self) -> bytes:
        """The canonical msgpack of ``field()`` (the vectors pin it)."""
        return packb(self.field())

    @classmethod
    def from_field(cls, value: object, limits: Limits = DEFAULT_LIMITS) -> BlobRef:
        """Read a reference from a field value; a malformed one is refused."""
        if not is_reference(value):
            raise BlobReferenceError(f"a blob reference is a map whose only key is {BLOB_KEY!r}")
        body = value[BLOB_KEY]  # type: ignore[index]
        if type(body) not in (list, tuple) or len(body) != 3:
            raise BlobReferenceError("a blob reference holds [hash, size, media_type]")
        digest, size, media_type = body
        if type(digest) is not bytes:
            raise BlobReferenceError(f"a blob's hash is bin({HASH_BYTES})")
        return cls(digest, size, _check_media_type(media_type, limits))

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> BlobRef:
        """Decode the msgpack of a reference that came from elsewhere."""
        if not isinstance(data, bytes):
            raise BlobReferenceError("a blob reference is bytes")
        if len(data) > 64 + limits.max_media_type:
            raise LimitExceededError("a blob reference is longer than any well-formed one")
        return cls.from_field(unpack(data, "blob reference", limits), limits)


def is_reference(value: object) -> bool:
    """Whether ``value`` claims to be a blob reference (it may still be malformed)."""
    return type(value) is dict and len(value) == 1 and BLOB_KEY in value


def _walk(value: object) -> Iterator[object]:
    """Values that claim to be references, in the order they appear (depth first, maps
    by key), without recursion (values nest up to 500 deep)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if is_reference(v):
            yield v
        elif type(v) is dict:
            stack.extend(v[k] for k in sorted(v, reverse=True))
        elif type(v) in (list, tuple):
            stack.extend(reversed(v))  # type: ignore[call-overload]


def references(fields: Mapping[str, Any]) -> list[BlobRef]:
    """The well-formed references anywhere in ``fields`` (nested in arrays and maps).

    A malformed one in data from a peer is not a reference: the record is applied as
    data, and no blob is awaited for it (docs/spec.md, "Blob references").
    """
    found = []
    for v in _walk(dict(fields)):
        try:
            found.append(BlobRef.from_field(v))
        except BlobReferenceError:
            continue
    return found


def ref_order(ref: BlobRef) -> tuple[bytes, int, bytes]:
    """The order in which a record's references are listed (by hash, then size and
    media type): stores index them as a set, so no other order survives."""
    return ref.hash, ref.size, ref.media_type.encode()


def field_references(fields: bytes | None) -> tuple[BlobRef, ...]:
    """The distinct well-formed references in a record's stored field bytes, in
    ``ref_order``: what a store's reference index holds for that record. Bytes without
    ``BLOB_MARK`` hold none and are not decoded (the common case costs one search)."""
    if not fields or BLOB_MARK not in fields:
        return ()
    found: set[BlobRef] = set()
    stack: list[Any] = [decode_fields(fields)]
    while stack:  # as ``references`` finds them, without keeping their order
        v = stack.pop()
        kind = type(v)
        if kind is dict:
            if len(v) == 1 and BLOB_KEY in v:
                with contextlib.suppress(BlobReferenceError):
                    found.add(BlobRef.from_field(v))
            else:
                stack.extend(v.values())
        elif kind is list or kind is tuple:
            stack.extend(v)
    return tuple(sorted(found, key=ref_order))


def check_references(fields: Mapping[str, Any] | None, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse local fields that hold a malformed reference (writers never write one)."""
    for v in _walk(dict(fields or {})):
        BlobRef.from_field(v, limits)


class BlobHasher:
    """Hashes a blob as its bytes go by, to make its reference."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._h = hashlib.blake2b(digest_size=HASH_BYTES)
        self._limits = limits
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._limits.max_blob_bytes:
            raise LimitExceededError(
                f"a blob is at most {self._limits.max_blob_bytes} bytes (max_blob_bytes)"
            )
        self._h.update(chunk)

    def ref(self, media_type: str = DEFAULT_MEDIA_TYPE) -> BlobRef:
        return BlobRef(self._h.digest(), self.size, media_type)


class BlobVerifier:
    """Checks bytes, in order, against a reference: refuses the first byte beyond its
    size at once, and a wrong hash or a short blob at ``finish``."""

    def __init__(self, ref: BlobRef, limits: Limits = DEFAULT_LIMITS) -> None:
        if ref.size > limits.max_blob_bytes:
            raise LimitExceededError(
                f"blob {ref.hex[:16]} declares {ref.size} bytes, over max_blob_bytes"
                f" ({limits.max_blob_bytes})"
            )
        self.ref = ref
        self._h = hashlib.blake2b(digest_size=HASH_BYTES)
        self.seen = 0

    def update(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.seen > self.ref.size:
            raise BlobError(
                f"blob {self.ref.hex[:16]} is larger than the {self.ref.size} bytes declared"
            )
        self._h.update(chunk)

    def finish(self) -> None:
        if self.seen != self.ref.size:
            raise BlobError(
                f"blob {self.ref.hex[:16]} has {self.seen} bytes, not the {self.ref.size} declared"
            )
        if self._h.digest() != self.ref.hash:
            raise BlobError(f"blob {self.ref.hex[:16]}: its bytes do not match its hash")


def chunk_spans(size: int, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each chunk of a blob of ``size`` bytes, in order."""
    if chunk_bytes < 1:
        raise UsageError("chunks are at least one byte")
    for offset in range(0, size, chunk_bytes):
        yield offset, min(chunk_bytes, size - offset)


def read_chunks(stream: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    """The bytes of ``stream`` in chunks of ``chunk_bytes`` (the last one shorter)."""
    if chunk_bytes < 1:
        raise UsageError("chunks are at least one byte")
    while True:
        chunk = stream.read(chunk_bytes)
        if not chunk:
            return
        if not isinstance(chunk, bytes):
            raise UsageError("a blob is read from a binary stream")
        yield chunk
