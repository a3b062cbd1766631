"""Blob chunk files in a mailbox (a shared folder or a courier disk): the file side of
the blob lane over mailboxes (``offsync.sync.mailblobs`` decides what moves).

Layout, beside the bundles of each destination (docs/spec.md §16.3)::

    to-<D>/blobs/<hh>/<H>-<offset>.ofc   a chunk sealed to D; hh = first 2 hex of H,
                                         H = first 32 hex of the blob hash
    to-<D>/blobs/want-<S>.ofw            what S lacks of the blobs its records
                                         reference, sealed to D (S asks D)
    refused/<name>, refused/<name>.txt   a chunk file set aside, and why

The 256 ``hh`` directories keep each directory small: FAT32 takes at most 65,536
entries per directory, and a long name uses several. A chunk file is written under a
temporary name (``.tmp-*.part``), fsynced and renamed, so a torn file never carries a
chunk name; a file already there under the name and size is the same chunk and is not
written again (deduplication and resumption at chunk granularity). A reader opens files
as ``open_regular`` does (no links, no FIFOs, bounded), so whatever sits on the medium
is only ever data.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..blobfile import (
    WantList,
    chunk_file_max,
    chunk_name,
    decode_want,
    encode_chunk,
    encode_want,
    want_list_max,
    want_name,
)
from ..errors import OffsyncError, RemoteDataError, TransportError
from ..lane import BlobChunk
from ..limits import DEFAULT_LIMITS, Limits
from .folder import STALE_TEMP_SECONDS, open_regular, outbox_name, read_bounded, write_atomically

__all__ = ["CLUSTER_BYTES", "BlobBox", "NoRoom", "SpaceBudget"]

BLOBS_DIR = "blobs"
#: What a file is counted as on a disk, at the least: FAT32's cluster on a large volume
#: (a 15 KB fingerprint takes 32 KiB there), plus its directory entries.
CLUSTER_BYTES = 32 * 1024
_ENTRY_BYTES = 512


class NoRoom(TransportError):
    """The medium has no room for the next chunk file (its space budget, or ENOSPC)."""


class SpaceBudget:
    """The space an export may still fill on a disk: what is free when it starts, minus
    the reserve, less each file written (rounded up to a cluster). Measured once, so a
    figure given by hand (``assume_free_bytes``) is never taken for more than it is."""

    def __init__(self, free: Callable[[], int], reserve: int) -> None:
        self._free = free
        self.reserve = reserve
        self.left: int | None = None

    def take(self, size: int) -> bool:
        if self.left is None:
            self.left = self._free() - self.reserve
        cost = -(-size // CLUSTER_BYTES) * CLUSTER_BYTES + _ENTRY_BYTES
        if cost > self.left:
            return False
        self.left -= cost
        return True


class BlobBox:
    """This replica's blob files on a mailbox rooted at ``root`` (the folder's root, or
    ``<mount>/OFFSYNC``): it reads chunks and want lists left for ``me``, and writes
    chunks and its want list for ``peer``.

    ``budget`` bounds what writing may fill (a disk); ``temp_age`` is how old a
    temporary file of an unfinished write must be before it is removed (0 on a disk,
    which one courier's stop writes at a time).
    """

    def __init__(
        self,
        root: Path,
        me: bytes,
        peer: bytes | None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        budget: SpaceBudget | None = None,
        temp_age: float = STALE_TEMP_SECONDS,
    ) -> None:
        self.root = root
        self.me = me
        self.peer = peer
        self.limits = limits
        self.budget = budget
        self.temp_age = temp_age
        self._made: set[Path] = set()
        #: Chunk files were written and not flushed to the device yet (``flush``).
        self.unsynced = False

    def __repr__(self) -> str:
        peer = self.peer.hex()[:12] if self.peer else None
        return f"<BlobBox {str(self.root)!r} me={self.me.hex()[:12]} peer={peer}>"

    @property
    def inbox(self) -> Path:
        return self.root / outbox_name(self.me) / BLOBS_DIR

    @property
    def outbox(self) -> Path:
        if self.peer is None:
            raise TransportError(f"{self!r} has no peer to write blobs for")
        return self.root / outbox_name(self.peer) / BLOBS_DIR

    @property
    def refused_dir(self) -> Path:
        return self.root / "refused"

    # -- writing -----------------------------------------------------------------------

    def chunk_path(self, digest: bytes, offset: int) -> Path:
        return self.outbox / digest.hex()[:2] / chunk_name(digest, offset)

    def present(self, digest: bytes, offset: int) -> bool:
        """A chunk file already there under its name (same chunk: written, not yet
        taken): not written again. Its size is checked when it is read."""
        with contextlib.suppress(OSError):
            return stat.S_ISREG(self.chunk_path(digest, offset).lstat().st_mode)
        return False

    def write_chunk(self, chunk: BlobChunk) -> int:
        """Seal ``chunk`` to the peer and write it; its file's size. ``NoRoom`` when the
        budget or the medium has no room for it (nothing of it stays)."""
        peer = self.peer
        if peer is None:
            raise TransportError(f"{self!r} has no peer to write blobs for")
        data = encode_chunk(chunk, peer)
        if self.budget is not None and not self.budget.take(len(data)):
            raise NoRoom("no room left on the disk for the next blob chunk")
        directory = self.chunk_path(chunk.ref.hash, chunk.offset).parent
        try:
            self._mkdir(directory)
            _write_renamed(directory, chunk_name(chunk.ref.hash, chunk.offset), data)
            self.unsynced = True
        except OSError as exc:
            raise NoRoom(f"cannot write a blob chunk to {directory}: {exc}") from exc
        return len(data)

    def write_want(self, want: WantList) -> None:
        """Leave this replica's want list for the peer (replacing the previous one);
        an empty one removes the previous one (no list: nothing wanted)."""
        assert self.peer is not None
        if not want.held:
            self.remove(self.outbox / want_name(self.me))
            return
        data = encode_want(want, self.peer, self.limits)
        if self.budget is not None and not self.budget.take(len(data)):
            raise NoRoom("no room left on the disk for the list of missing blobs")
        try:
            self._mkdir(self.outbox)
            write_atomically(self.outbox, want_name(self.me), data)
        except OSError as exc:
            raise NoRoom(f"cannot write to {self.outbox}: {exc}") from exc

    def carry(self, name: str, data: bytes, subdir: str | None = None) -> None:
        """Write a file another site sealed for the peer, as it is (a relay carrying
        chunk files unopened: ``offsync.sync.forward``)."""
        if self.budget is not None and not self.budget.take(len(data)):
            raise NoRoom("no room left on the disk for the next blob file")
        directory = self.outbox / subdir if subdir else self.outbox
        try:
            self._mkdir(directory)
            _write_renamed(directory, name, data)
            self.unsynced = True
        except OSError as exc:
            raise NoRoom(f"cannot write a blob file to {directory}: {exc}") from exc

    def want_files(self) -> Iterator[Path]:
        """Want lists left for this replica (whoever wrote them)."""
        for name in sorted(_listdir(self.inbox)):
            if name.startswith("want-") and name.endswith(".ofw"):
                yield self.inbox / name

    def flush(self) -> None:
        """Make the chunk files written so far durable, at once: one flush of the
        file systems rather than an fsync per file (thousands of small files on a USB
        disk). Until then a file may be lost or torn by a crash; a torn one does not
        open, is refused, and the want list brings it again."""
        if self.unsynced:
            sync = getattr(os, "sync", None)
            if sync is not None:
                sync()
            self.unsynced = False

    def _mkdir(self, directory: Path) -> None:
        if directory not in self._made:
            directory.mkdir(parents=True, exist_ok=True)
            self._made.add(directory)

    def clean_temps(self) -> int:
        """Remove temporary files of unfinished writes in the peer's blob directories
        older than ``temp_age`` (a disk unplugged mid-write, say); how many."""
        if self.peer is None:
            return 0
        now, gone = time.time(), 0
        for directory in self._dirs(self.outbox):
            for name in _listdir(directory):
                if not name.startswith(".tmp-"):
                    continue
                path = directory / name
                with contextlib.suppress(OSError):
                    if now - path.lstat().st_mtime >= self.temp_age:
                        path.unlink()
                        gone += 1
        return gone

    # -- reading -----------------------------------------------------------------------

    def chunk_files(self) -> Iterator[Path]:
        """Chunk files left for this replica, by name (a blob's chunks by offset)."""
        for directory in self._dirs(self.inbox):
            if directory == self.inbox:
                continue
            for name in sorted(_listdir(directory)):
                if name.endswith(".ofc") and not name.startswith("."):
                    yield directory / name

    def stray_files(self) -> Iterator[Path]:
        """Files of the inbox's chunk directories that carry no chunk name (half-written
        temporaries are left to their writer)."""
        for directory in self._dirs(self.inbox):
            if directory == self.inbox:
                continue
            for name in sorted(_listdir(directory)):
                if not name.endswith(".ofc") and not name.startswith(".tmp-"):
                    yield directory / name

    def read(self, path: Path, limit: int | None = None) -> bytes:
        """A chunk file's bytes, bounded by ``chunk_file_max`` (or ``limit``);
        ``RemoteDataError`` for what is not a regular file of that size, ``OSError``
        if it cannot be read."""
        limit = limit or chunk_file_max(self.limits)
        with open_regular(path) as (fd, size):
            if size > limit:
                raise RemoteDataError(f"{size} bytes, over the chunk file limit of {limit}")
            return read_bounded(fd, size, limit)

    def read_want(self, unseal: Callable[[bytes], bytes]) -> WantList | None:
        """The peer's newest want list for this replica, or None (absent or unreadable:
        a damaged one is set aside and the peer writes another next time)."""
        if self.peer is None:
            return None
        path = self.inbox / want_name(self.peer)
        try:
            with open_regular(path) as (fd, size):
                data = read_bounded(fd, size, want_list_max(self.limits))
            want = decode_want(data, self.me, unseal, self.limits)
        except FileNotFoundError:
            return None
        except (OSError, OffsyncError) as exc:
            self.set_aside(path, f"damaged list of missing blobs ({exc})")
            return None
        return want if want.sender == self.peer else None

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def set_aside(self, path: Path, reason: str) -> None:
        """Move a refused file out of the inbox into ``refused/`` with a note saying why
        (as ``FolderTransport`` does for bundles); on a read-only medium it stays."""
        try:
            self.refused_dir.mkdir(parents=True, exist_ok=True)
            if not stat.S_ISDIR(self.refused_dir.lstat().st_mode):
                return  # a link or a file planted as refused/: never written through
            os.replace(path, self.refused_dir / path.name)
            write_atomically(self.refused_dir, path.name + ".txt", (reason + "\n").encode())
        except OSError:
            pass

    @staticmethod
    def _dirs(base: Path) -> Iterator[Path]:
        """``base`` and its ``hh`` subdirectories (real directories only, no links)."""
        yield base
        for name in sorted(_listdir(base)):
            if len(name) == 2 and all(c in "0123456789abcdef" for c in name):
                path = base / name
                with contextlib.suppress(OSError):
                    if stat.S_ISDIR(path.lstat().st_mode):
                        yield path


def _write_renamed(directory: Path, name: str, data: bytes) -> None:
    """Write under a temporary name and rename into place (never a torn file under a
    chunk name from this process), without an fsync: ``BlobBox.flush`` makes the lot
    durable."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TransportError(f"cannot list {directory}: {exc}") from exc
