"""The blob lane, sans I/O: what to send, in which chunks, and what a chunk may be.

Blobs travel beside bundles (issue 14, docs/design.md "Blobs"): after the bundle round,
each side offers the blobs that the records the peer now holds reference, minus what
the peer already holds, and asks for the blobs its own records reference and it lacks.
A blob travels in chunks of at most ``blob_chunk_bytes`` at byte offsets, and a
transfer resumes at the **held offset**: the bytes the receiver holds contiguously
from the start (like tus's ``Upload-Offset``). The receiver verifies the whole blob
against its reference before anything can read it; a chunk or blob that does not match
is refused and the blob dropped whole, and the lane moves on to the next blob. Records
never wait for blobs.

This module decides and checks; ``offsync.sync.blobs`` runs the lane against a peer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .blobs import HASH_BYTES, BlobRef, chunk_spans
from .errors import BlobError, LimitExceededError
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "MAX_LANE_QUERY",
    "BlobChunk",
    "BlobPeer",
    "BlobTransfer",
    "LaneReport",
    "check_hashes",
    "held_offset",
    "to_fetch",
    "to_send",
    "transfer_spans",
]

#: The most hashes one question "how much of these do you hold?" may name: bounds the
#: request and its answer (4096 x 32 bytes = 128 KiB); the lane asks in batches.
MAX_LANE_QUERY = 4096


@dataclass(frozen=True, slots=True)
class BlobChunk:
    """One chunk of a blob on its way: the blob's reference, where it goes, its bytes."""

    ref: BlobRef
    offset: int
    data: bytes

    def check(self, limits: Limits = DEFAULT_LIMITS) -> None:
        """Refuse a chunk larger than ``blob_chunk_bytes``, empty, or outside its blob."""
        if len(self.data) > limits.blob_chunk_bytes:
            raise LimitExceededError(
                f"a blob chunk is at most {limits.blob_chunk_bytes} bytes (blob_chunk_bytes),"
                f" not {len(self.data)}"
            )
        if self.ref.size > limits.max_blob_bytes:
            raise LimitExceededError(
                f"blob {self.ref.hex[:16]} declares {self.ref.size} bytes, over max_blob_bytes"
                f" ({limits.max_blob_bytes})"
            )
        end = self.offset + len(self.data)
        empty = not self.data and self.ref.size > 0  # only an empty blob has no bytes
        if type(self.offset) is not int or self.offset < 0 or empty or end > self.ref.size:
            raise BlobError(
                f"blob {self.ref.hex[:16]}: a chunk of {len(self.data)} bytes at {self.offset}"
                f" is outside its {self.ref.size} bytes"
            )


def held_offset(spans: Iterable[tuple[int, int]]) -> int:
    """The bytes held contiguously from the start, given ``(offset, length)`` spans by
    offset: where a resumed transfer starts (a chunk held beyond a gap is sent again)."""
    end = 0
    for pos, length in spans:
        if pos > end:
            break
        end = max(end, pos + length)
    return end


@dataclass(frozen=True, slots=True)
class BlobTransfer:
    """A blob to move, and where its receiver's copy ends."""

    ref: BlobRef
    offset: int = 0

    @property
    def remaining(self) -> int:
        return self.ref.size - self.offset


def to_send(refs: Iterable[BlobRef], held: Mapping[bytes, int]) -> list[BlobTransfer]:
    """The blobs of ``refs`` the peer lacks, each from the offset it holds (``held``:
    hash -> bytes held; absent: none), once per hash, smallest first so that many small
    blobs are not held up behind one large one."""
    out: dict[bytes, BlobTransfer] = {}
    for ref in refs:
        offset = held.get(ref.hash, -1)  # absent: nothing held (not even an empty blob)
        if ref.hash in out or offset >= ref.size:
            continue
        out[ref.hash] = BlobTransfer(ref, max(offset, 0))
    return sorted(out.values(), key=lambda t: (t.ref.size, t.ref.hash))


def to_fetch(
    wanted: Iterable[BlobRef], theirs: Mapping[bytes, int], ours: Mapping[bytes, int]
) -> list[BlobTransfer]:
    """The blobs of ``wanted`` (what our records reference and we lack) the peer holds
    whole (``theirs``), each from the offset we hold of it (``ours``), smallest first."""
    out: dict[bytes, BlobTransfer] = {}
    for ref in wanted:
        if ref.hash in out or theirs.get(ref.hash, -1) != ref.size:
            continue
        out[ref.hash] = BlobTransfer(ref, min(max(ours.get(ref.hash, 0), 0), ref.size))
    return sorted(out.values(), key=lambda t: (t.ref.size, t.ref.hash))


def transfer_spans(transfer: BlobTransfer, chunk_bytes: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of the chunks still to move, from the held offset on."""
    for pos, length in chunk_spans(transfer.remaining, chunk_bytes):
        yield transfer.offset + pos, length


def check_hashes(hashes: object) -> list[bytes]:
    """A question's list of blob hashes, refused unless it is one (bounded)."""
    if type(hashes) is not list:
        raise BlobError("a list of blob hashes is expected")
    if len(hashes) > MAX_LANE_QUERY:
        raise LimitExceededError(
            f"at most {MAX_LANE_QUERY} blob hashes per question, not {len(hashes)}"
        )
    if not all(type(h) is bytes and len(h) == HASH_BYTES for h in hashes):
        raise BlobError(f"a blob hash is {HASH_BYTES} bytes")
    return list(hashes)


class BlobPeer(Protocol):
    """The other side of the lane, as a transport offers it (``Transport.blob_peer``)."""

    #: The largest chunk the peer takes or gives.
    chunk_bytes: int

    def held(self, hashes: list[bytes]) -> dict[bytes, int]:
        """Of at most ``MAX_LANE_QUERY`` hashes, those the peer holds whole or in part:
        the bytes it holds (size when whole)."""
        ...

    def put_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        """Send one chunk; the bytes the peer now holds of the blob."""
        ...

    def get_chunk(self, ref: BlobRef, offset: int, length: int) -> bytes:
        """Fetch ``length`` bytes of a blob the peer holds whole, from ``offset``."""
        ...


@dataclass(slots=True)
class LaneReport:
    """What one run of the lane moved, and what it refused (it never stops for one)."""

    sent: int = 0  # blobs now held whole by the peer
    sent_bytes: int = 0  # chunk bytes sent (a resumed blob counts only what was left)
    received: int = 0  # blobs now held whole here
    received_bytes: int = 0
    #: ``(blob hash hex, reason)`` of each blob refused by either side.
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: Blobs (and their bytes still to write) that did not fit on a disk: the next
    #: disk carries them (``offsync.sync.mailblobs``).
    left: int = 0
    left_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.refused
