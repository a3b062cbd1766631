"""Where a store keeps blobs: the ``BlobStore`` interface and its in-memory form.

A blob is written as chunks at byte offsets, in any order and over any number of
sessions (``begin``, ``write_chunk``, ``staged`` to resume), and becomes visible only
when ``finish`` has read every byte back in order and found exactly the size and hash
its reference declares. Until then it is *staged*: ``has`` is false, ``open`` refuses
it, and a crash leaves only staged chunks, which a later ``begin`` resumes or
``collect`` drops. A refused blob is dropped whole; no other blob is touched.

Subclasses supply a few primitives (rows of a table, or entries of a dict); the rules
are here, once. ``offsync.testing.check_blob_store`` checks an implementation.
"""

from __future__ import annotations

import copy
import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, NamedTuple

from ..blobs import BlobRef, BlobVerifier, read_chunks
from ..errors import BlobError, LimitExceededError, MissingBlobError, UsageError
from ..limits import DEFAULT_LIMITS, Limits

__all__ = ["BlobInfo", "BlobStore", "MemoryBlobStore"]


class BlobInfo(NamedTuple):
    hash: bytes
    size: int
    complete: bool  # False: staged, not visible
    created: int  # ms (the caller's clock) when it was begun


class BlobStore(ABC):
    """Blobs by hash: staged in chunks, verified whole, then visible."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    # -- primitives --------------------------------------------------------------

    @abstractmethod
    def _tx(self) -> AbstractContextManager[None]:
        """A transaction: everything inside it is kept, or nothing."""

    @abstractmethod
    def _info(self, digest: bytes) -> BlobInfo | None: ...

    @abstractmethod
    def _add(self, info: BlobInfo) -> None:
        """Record a staged blob (``info.hash`` is not known yet)."""

    @abstractmethod
    def _put_chunk(self, digest: bytes, pos: int, data: bytes) -> None:
        """Keep ``data`` at ``pos``, replacing a chunk already at ``pos``."""

    @abstractmethod
    def _spans(self, digest: bytes) -> list[tuple[int, int]]:
        """``(pos, length)`` of the chunks held, by ``pos``."""

    @abstractmethod
    def _chunk(self, digest: bytes, pos: int) -> bytes: ...

    @abstractmethod
    def _complete(self, digest: bytes) -> None: ...

    @abstractmethod
    def _drop(self, digests: list[bytes]) -> None:
        """Remove blobs and their chunks."""

    @abstractmethod
    def _all(self) -> list[BlobInfo]: ...

    # -- the interface -------------------------------------------------------------

    def begin(self, ref: BlobRef, now: int) -> bool:
        """Stage ``ref`` for writing; False when it is already held whole (nothing to do).

        Beginning a blob already staged keeps its chunks, so a transfer resumes.
        """
        if ref.size > self.limits.max_blob_bytes:
            raise LimitExceededError(
                f"blob {ref.hex[:16]} declares {ref.size} bytes, over max_blob_bytes"
                f" ({self.limits.max_blob_bytes})"
            )
        with self._tx():
            info = self._info(ref.hash)
            if info is not None and info.size != ref.size:
                if info.complete:
                    raise BlobError(
                        f"blob {ref.hex[:16]} is held with {info.size} bytes, not {ref.size}"
                    )
                self._drop([ref.hash])  # a staged blob of another size: start again
                info = None
            if info is None:
                self._add(BlobInfo(ref.hash, ref.size, False, now))
                return True
            return not info.complete

    def write_chunk(self, ref: BlobRef, pos: int, data: bytes) -> None:
        """Keep one chunk of a staged blob at byte offset ``pos`` (any order)."""
        if not isinstance(data, bytes):
            raise UsageError("a chunk is bytes")
        if len(data) > self.limits.blob_chunk_bytes:
            raise LimitExceededError(
                f"a blob chunk is at most {self.limits.blob_chunk_bytes} bytes (blob_chunk_bytes)"
            )
        if type(pos) is not int or pos < 0 or pos + len(data) > ref.size or not data:
            raise BlobError(
                f"blob {ref.hex[:16]}: a chunk of {len(data)} bytes at {pos} is outside its"
                f" {ref.size} bytes"
            )
        with self._tx():
            info = self._info(ref.hash)
            if info is None or info.size != ref.size:
                raise UsageError(f"blob {ref.hex[:16]} is not begun: call begin first")
            if not info.complete:
                self._put_chunk(ref.hash, pos, data)

    def staged(self, digest: bytes) -> list[tuple[int, int]]:
        """``(offset, length)`` of the chunks held of a blob, by offset: what a resumed
        transfer need not send again."""
        return self._spans(digest)

    def finish(self, ref: BlobRef) -> None:
        """Make a staged blob visible after checking every byte; a blob that does not
        match (gap, overlap, size, hash) is dropped and refused with ``BlobError``."""
        with self._tx():
            info = self._info(ref.hash)
            if info is None or info.size != ref.size:
                raise UsageError(f"blob {ref.hex[:16]} is not begun: call begin first")
            if info.complete:
                return
        try:
            self._verify(ref)
        except BlobError:
            with self._tx():
                self._drop([ref.hash])
            raise
        with self._tx():
            self._complete(ref.hash)

    def _verify(self, ref: BlobRef) -> None:
        check = BlobVerifier(ref, self.limits)
        end = 0
        for pos, length in self._spans(ref.hash):
            if pos != end:
                what = "overlap" if pos < end else "leave a gap"
                raise BlobError(f"blob {ref.hex[:16]}: its chunks {what} at byte {min(pos, end)}")
            check.update(self._chunk(ref.hash, pos))
            end = pos + length
        check.finish()

    def put(self, ref: BlobRef, stream: BinaryIO, now: int) -> None:
        """Write a whole blob from ``stream`` (begin, chunks, finish)."""
        if not self.begin(ref, now):
            return
        pos = 0
        for chunk in read_chunks(stream, self.limits.blob_chunk_bytes):
            if pos + len(chunk) > ref.size:
                with self._tx():
                    self._drop([ref.hash])
                raise BlobError(f"blob {ref.hex[:16]} is larger than the {ref.size} declared")
            self.write_chunk(ref, pos, chunk)
            pos += len(chunk)
        self.finish(ref)

    def held(self, digest: bytes) -> int | None:
        """How much of a blob is here: its size when whole, the bytes staged
        contiguously from the start when not (where a transfer resumes), None when
        nothing is (``offsync.lane``)."""
        info = self._info(digest)
        if info is None:
            return None
        if info.complete:
            return info.size
        end = 0
        for pos, length in self._spans(digest):
            if pos > end:
                break
            end = max(end, pos + length)
        return end

    def read(self, ref: BlobRef, offset: int, length: int) -> bytes:
        """``length`` bytes of a held blob from ``offset`` (fewer at its end), read from
        the chunks that cover them: what the lane sends of a blob, one chunk at a time."""
        info = self._info(ref.hash)
        if info is None or not info.complete or info.size != ref.size:
            raise MissingBlobError(f"blob {ref.hex} is not held here (yet)")
        if type(offset) is not int or offset < 0 or length < 0 or offset > ref.size:
            raise UsageError(f"blob {ref.hex[:16]}: no bytes at {offset} (size {ref.size})")
        if length > self.limits.blob_chunk_bytes:
            raise LimitExceededError(
                f"a blob chunk is at most {self.limits.blob_chunk_bytes} bytes (blob_chunk_bytes)"
            )
        end = min(ref.size, offset + length)
        out = bytearray()
        for pos, size in self._spans(ref.hash):
            if pos + size <= offset or pos >= end:
                continue
            data = self._chunk(ref.hash, pos)
            out += data[max(0, offset - pos) : end - pos]
        return bytes(out)

    def has(self, digest: bytes) -> bool:
        info = self._info(digest)
        return info is not None and info.complete

    def missing(self, digests: Iterable[bytes]) -> set[bytes]:
        """Those of ``digests`` not held whole."""
        return {d for d in set(digests) if not self.has(d)}

    def open(self, ref: BlobRef) -> BinaryIO:
        """The bytes of a held blob as a stream, read chunk by chunk from the store."""
        info = self._info(ref.hash)
        if info is None or not info.complete:
            raise MissingBlobError(f"blob {ref.hex} is not held here (yet)")
        if info.size != ref.size:
            raise BlobError(f"blob {ref.hex[:16]} is held with {info.size} bytes, not {ref.size}")
        return io.BufferedReader(_ChunkReader(self, ref.hash), buffer_size=1 << 16)

    def delete(self, digests: Iterable[bytes]) -> None:
        """Forget blobs, whole or staged (unknown hashes are ignored)."""
        with self._tx():
            self._drop(sorted(set(digests)))

    def blobs(self) -> list[BlobInfo]:
        """Every blob held or staged, by hash."""
        return sorted(self._all())


class _ChunkReader(io.RawIOBase):
    """A read-only stream over a blob's chunks, one chunk in memory at a time."""

    def __init__(self, store: BlobStore, digest: bytes) -> None:
        self._store = store
        self._digest = digest
        self._spans: Iterator[tuple[int, int]] = iter(store._spans(digest))
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            span = next(self._spans, None)
            if span is None:
                return 0
            self._buf = memoryview(self._store._chunk(self._digest, span[0]))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class MemoryBlobStore(BlobStore):
    """Blobs in dicts: for tests and for ``MemoryStore``."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._guard = threading.RLock()
        self._infos: dict[bytes, BlobInfo] = {}
        self._chunks: dict[bytes, dict[int, bytes]] = {}

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._guard:
            saved = dict(self._infos), {d: dict(c) for d, c in self._chunks.items()}
            try:
                yield
            except BaseException:
                self._infos.clear()
                self._infos.update(saved[0])
                self._chunks.clear()
                self._chunks.update(saved[1])
                raise

    def with_limits(self, limits: Limits) -> MemoryBlobStore:
        """The same blobs, checked against other limits."""
        other = copy.copy(self)
        other.limits = limits
        return other

    def _info(self, digest: bytes) -> BlobInfo | None:
        return self._infos.get(digest)

    def _add(self, info: BlobInfo) -> None:
        self._infos[info.hash] = info
        self._chunks[info.hash] = {}

    def _put_chunk(self, digest: bytes, pos: int, data: bytes) -> None:
        self._chunks[digest][pos] = data

    def _spans(self, digest: bytes) -> list[tuple[int, int]]:
        return sorted((p, len(d)) for p, d in self._chunks.get(digest, {}).items())

    def _chunk(self, digest: bytes, pos: int) -> bytes:
        return self._chunks[digest][pos]

    def _complete(self, digest: bytes) -> None:
        self._infos[digest] = self._infos[digest]._replace(complete=True)

    def _drop(self, digests: list[bytes]) -> None:
        for d in digests:
            self._infos.pop(d, None)
            self._chunks.pop(d, None)

    def _all(self) -> list[BlobInfo]:
        return list(self._infos.values())
