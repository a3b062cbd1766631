"""Blob chunks and want lists as files on a shared folder or a courier disk: pure, no I/O.

A mailbox (a folder, a disk) carries blobs beside the bundles as **chunk files**, one
per chunk of at most ``blob_chunk_bytes``, each sealed to its recipient exactly as a
bundle body is (libsodium sealed box to the recipient's X25519 key), so a lost disk or
a shared folder leaks no fingerprint. A file is named by its blob's hash and the
chunk's offset (``chunk_name``): the same chunk written twice is one file, and a reader
knows what a file claims to be before it opens it. A receiver also leaves a **want
list** for the sites it hears from: the blobs its records reference and it lacks, and
how much of each it holds, so a sender writes again only what did not arrive (a
refused chunk, a disk that was lost) and never what the receiver holds.

Layout of either file (docs/spec.md §16.3)::

    magic "OFBLOB" | version 00 01 | kind (01 chunk, 02 want list) | recipient key (32)
    | crypto_box_seal(canonical msgpack plain, X25519(recipient))

    chunk plain:     [hash bin(32), size uint, media_type str, offset uint, data bin]
    want list plain: [sender bin(32), created uint (ms), [[hash bin(32), held uint], ...]]

The seal hides the bytes; it does not prove who wrote them (anyone can seal to a public
key). A chunk is proven by its blob's hash, which the origin signed in the record: the
receiver verifies the whole blob before anything reads it, and drops it whole if it
does not match. The recipient key is in the clear so that a relay can tell whose file
it is without trying to open it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nacl.bindings
import nacl.public
import nacl.signing

from .blobs import HASH_BYTES, BlobRef
from .encoding import packb
from .errors import BlobError, DecryptionError, LimitExceededError, RemoteDataError, UsageError
from .lane import BlobChunk
from .limits import DEFAULT_LIMITS, Limits
from .unpack import unpack

__all__ = [
    "CHUNK_SUFFIX",
    "KIND_CHUNK",
    "KIND_WANT",
    "MAGIC",
    "WANT_SUFFIX",
    "WantList",
    "chunk_file_max",
    "chunk_name",
    "decode_chunk",
    "decode_want",
    "encode_chunk",
    "encode_want",
    "parse_chunk_name",
    "recipient_of",
    "want_name",
]

MAGIC = b"OFBLOB"
VERSION = b"\x00\x01"
KIND_CHUNK = 1
KIND_WANT = 2
HEADER_BYTES = len(MAGIC) + len(VERSION) + 1 + 32
#: What a sealed box adds: the ephemeral public key and the MAC.
SEAL_BYTES = 32 + 16
CHUNK_SUFFIX = ".ofc"
WANT_SUFFIX = ".ofw"
NAME_HEX = 32
#: Hex digits of a chunk's offset in its name: offsets up to 256 TiB.
OFFSET_HEX = 12
_CHUNK_NAME = re.compile(r"^([0-9a-f]{32})-([0-9a-f]{12})\.ofc$")
_WANT_NAME = re.compile(r"^want-([0-9a-f]{32})\.ofw$")


def chunk_file_max(limits: Limits = DEFAULT_LIMITS) -> int:
    """The largest chunk file a reader reads: a chunk of ``blob_chunk_bytes``, its
    reference, the header and the seal (a larger file is refused unread)."""
    return limits.blob_chunk_bytes + limits.max_media_type + HEADER_BYTES + SEAL_BYTES + 128


def chunk_name(digest: bytes, offset: int) -> str:
    """``<first 32 hex of the blob hash>-<offset, 12 hex>.ofc``."""
    if not 0 <= offset < 16**OFFSET_HEX:
        raise UsageError(f"a chunk offset in a file name is below 2^48, not {offset}")
    return f"{digest.hex()[:NAME_HEX]}-{offset:0{OFFSET_HEX}x}{CHUNK_SUFFIX}"


def parse_chunk_name(name: str) -> tuple[str, int] | None:
    """``(hash prefix hex, offset)`` of a chunk file name; None for any other name."""
    m = _CHUNK_NAME.match(name)
    return (m.group(1), int(m.group(2), 16)) if m else None


def want_name(sender: bytes) -> str:
    """``want-<first 32 hex of the wanting site's key>.ofw``."""
    return f"want-{sender.hex()[:NAME_HEX]}{WANT_SUFFIX}"


def parse_want_name(name: str) -> str | None:
    m = _WANT_NAME.match(name)
    return m.group(1) if m else None


def _seal(plain: bytes, recipient: bytes) -> bytes:
    if type(recipient) is not bytes or len(recipient) != 32:
        raise UsageError("a recipient is a 32-byte site key")
    box_key = nacl.signing.VerifyKey(recipient).to_curve25519_public_key()
    return bytes(nacl.public.SealedBox(box_key).encrypt(plain))


def _frame(kind: int, recipient: bytes, sealed: bytes) -> bytes:
    return MAGIC + VERSION + bytes([kind]) + recipient + sealed


def recipient_of(data: bytes, kind: int) -> bytes:
    """The recipient a blob file names, after checking its magic, version and kind
    (``RemoteDataError`` if it is not such a file)."""
    if len(data) < HEADER_BYTES + SEAL_BYTES or data[:6] != MAGIC:
        raise RemoteDataError("not an offsync blob file (magic)")
    if data[6:8] != VERSION:
        raise RemoteDataError(f"blob file version {data[6:8].hex()} is not 0001")
    if data[8] != kind:
        raise RemoteDataError(f"a blob file of kind {data[8]}, not {kind}")
    return data[9:HEADER_BYTES]


def _open(data: bytes, kind: int, unseal: object, me: bytes) -> bytes:
    """The plain bytes of a blob file for ``me``: ``unseal`` is ``Identity.unseal``."""
    if recipient_of(data, kind) != me:
        raise DecryptionError("a blob file sealed for another site")
    assert callable(unseal)
    try:
        plain = unseal(data[HEADER_BYTES:])
    except DecryptionError as exc:
        raise DecryptionError("a blob file that does not open (torn or altered)") from exc
    assert type(plain) is bytes
    return plain


def encode_chunk(chunk: BlobChunk, recipient: bytes) -> bytes:
    """A chunk file's bytes: the chunk and its blob's reference, sealed to ``recipient``."""
    ref = chunk.ref
    plain = packb([ref.hash, ref.size, ref.media_type, chunk.offset, chunk.data])
    return _frame(KIND_CHUNK, recipient, _seal(plain, recipient))


def decode_chunk(
    data: bytes, me: bytes, unseal: object, limits: Limits = DEFAULT_LIMITS
) -> BlobChunk:
    """Open a chunk file sealed to ``me`` and check it (``BlobChunk.check``): a file
    over ``chunk_file_max`` is ``LimitExceededError``; one that does not open is
    ``DecryptionError``; a malformed plain or chunk, ``BlobError`` (or a subclass)."""
    if len(data) > chunk_file_max(limits):
        raise LimitExceededError(
            f"a chunk file of {len(data)} bytes, over {chunk_file_max(limits)}"
        )
    plain = _open(data, KIND_CHUNK, unseal, me)
    try:
        value = unpack(plain, "blob chunk", limits, max_items=5, max_depth=1, canonical=True)
    except RemoteDataError as exc:
        raise BlobError(f"a chunk file that is not a chunk: {exc}") from exc
    if type(value) is not list or len(value) != 5:
        raise BlobError("a chunk file holds [hash, size, media_type, offset, data]")
    digest, size, media_type, offset, body = value
    if type(body) is not bytes or type(offset) is not int:
        raise BlobError("a chunk's offset is a uint and its data bin")
    ref = BlobRef.from_field({"$blob": [digest, size, media_type]}, limits)
    chunk = BlobChunk(ref, offset, body)
    chunk.check(limits)
    return chunk


@dataclass(frozen=True, slots=True)
class WantList:
    """What a site lacks of the blobs its records reference: hash -> bytes it holds
    (0: none), as of ``created`` (ms on the wanting site's clock)."""

    sender: bytes
    created: int
    held: dict[bytes, int]


def want_list_max(limits: Limits = DEFAULT_LIMITS) -> int:
    """The largest want list a reader reads (``max_header_bytes``)."""
    return limits.max_header_bytes


def want_capacity(limits: Limits = DEFAULT_LIMITS) -> int:
    """The most entries a want list holds within ``want_list_max`` (the rest are asked
    for next time)."""
    return (want_list_max(limits) - HEADER_BYTES - SEAL_BYTES - 64) // (HASH_BYTES + 12)


def encode_want(want: WantList, recipient: bytes, limits: Limits = DEFAULT_LIMITS) -> bytes:
    if len(want.held) > want_capacity(limits):
        raise LimitExceededError(f"a want list holds at most {want_capacity(limits)} blobs")
    entries = [[h, n] for h, n in sorted(want.held.items())]
    plain = packb([want.sender, want.created, entries])
    return _frame(KIND_WANT, recipient, _seal(plain, recipient))


def decode_want(
    data: bytes, me: bytes, unseal: object, limits: Limits = DEFAULT_LIMITS
) -> WantList:
    if len(data) > want_list_max(limits):
        raise LimitExceededError(f"a want list of {len(data)} bytes, over {want_list_max(limits)}")
    plain = _open(data, KIND_WANT, unseal, me)
    value = unpack(plain, "want list", limits, max_depth=3, canonical=True)
    if type(value) is not list or len(value) != 3:
        raise RemoteDataError("a want list holds [sender, created, entries]")
    sender, created, entries = value
    if type(sender) is not bytes or len(sender) != 32 or type(created) is not int:
        raise RemoteDataError("a want list's sender is bin(32) and created a uint")
    if type(entries) is not list:
        raise RemoteDataError("a want list's entries are an array")
    held: dict[bytes, int] = {}
    for entry in entries:
        if not (
            type(entry) is list
            and len(entry) == 2
            and type(entry[0]) is bytes
            and len(entry[0]) == HASH_BYTES
            and type(entry[1]) is int
            and entry[1] >= 0
        ):
            raise RemoteDataError("a want list entry is [hash bin(32), held uint]")
        held[entry[0]] = entry[1]
    return WantList(sender, created, held)
