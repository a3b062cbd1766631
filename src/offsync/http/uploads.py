"""Resumable uploads on disk: partial files, their locks, and what a chunk may do.

A chunked upload (``Content-Range``) keeps its bytes in ``<id>-<total>.part`` in the
upload directory, so a broken connection or a restart resumes where it broke. Several
processes (uvicorn workers) may share the directory: a chunk is checked and appended
holding an exclusive ``flock`` on ``<id>.lock`` there, so a resumed upload may land on
any worker (POSIX only; on Windows give each process its own directory).

``Uploads`` decides everything about an upload but reading the request: the server
streams the body into the ``Appender`` that ``plan`` leads to, and the tests drive the
same object with no server at all. It uses no HTTP library; a refused chunk raises a
``Refusal`` (``offsync.http.refusals``) that the server answers as it is.
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..knowledge import Knowledge
from .bodies import UploadStatus
from .ranges import ChunkRange, ContentRange
from .refusals import bad_request, busy, conflict, too_large

if sys.platform != "win32":
    import fcntl

__all__ = ["Append", "Appender", "Held", "Partial", "Uploads"]

#: Bytes of a chunk kept in memory before they are written.
WRITE_BUFFER = 1024 * 1024
#: Bundle ids applied recently, answered as duplicates without reading the body.
RECENT_IDS = 10_000

#: Who uploaded a bundle and what it carried: what its duplicate's answer states (a
#: receipt bounded by the uploader's needs, docs/spec.md §8.2).
Uploader = tuple[bytes, Knowledge]


@dataclass(frozen=True, slots=True)
class Partial:
    """A partial upload: its file, the total it is for, and the bytes held."""

    path: Path
    total: int
    size: int


@dataclass(frozen=True, slots=True)
class Append:
    """Append the chunk's ``size`` bytes to ``path`` (``Uploads.appender``)."""

    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class Held:
    """No bytes to take: the ``received`` bytes at ``path`` are what there is."""

    path: Path
    received: int


class Uploads:
    """The partial uploads in ``directory``, bounded in size, count and age.

    ``max_upload_bytes`` bounds one bundle; at most ``max_partial`` partial uploads
    are kept (beyond, the one untouched longest gives way), and one untouched for
    ``ttl`` seconds is dropped; ``busy_timeout`` bounds the wait for an id's lock.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_upload_bytes: int,
        max_partial: int,
        ttl: float,
        busy_timeout: float,
    ) -> None:
        self.directory = directory
        self.max_upload_bytes = max_upload_bytes
        self.max_partial = max_partial
        self.ttl = ttl
        self.busy_timeout = busy_timeout
        #: Ids applied recently (by this process), oldest first, with their uploader.
        self.done: OrderedDict[str, Uploader | None] = OrderedDict()

    # -- what is held ------------------------------------------------------------------

    def remember(self, bundle_id: str, uploader: Uploader | None = None) -> None:
        """``bundle_id`` was applied (sent by ``uploader``, carrying what it says): answer
        it as a duplicate from now on."""
        self.done[bundle_id] = uploader
        self.done.move_to_end(bundle_id)
        while len(self.done) > RECENT_IDS:
            self.done.popitem(last=False)

    def path(self, bundle_id: str, total: int) -> Path:
        return self.directory / f"{bundle_id}-{total}.part"

    def find(self, bundle_id: str) -> Partial | None:
        """The partial upload of ``bundle_id``, if one is held."""
        for path in self.directory.glob(f"{bundle_id}-*.part"):
            try:
                return Partial(path, int(path.name[65:-5]), path.stat().st_size)
            except (ValueError, OSError):
                continue
        return None

    def status(self, bundle_id: str) -> UploadStatus:
        """What ``GET /bundles/{id}`` answers: how much to resume from."""
        if bundle_id in self.done:
            return UploadStatus(id=bundle_id, received=None, complete=True)
        found = self.find(bundle_id)
        if found is None:
            return UploadStatus(id=bundle_id, received=0, complete=False)
        return UploadStatus(id=bundle_id, received=found.size, total=found.total, complete=False)

    def check_size(self, size: int) -> None:
        """Refuse (413, naming the limit) a bundle larger than this server takes."""
        if size > self.max_upload_bytes:
            raise too_large(
                f"bundle of {size} bytes over this server's limit of {self.max_upload_bytes}",
                limit=self.max_upload_bytes,
            )

    # -- one Content-Range request -----------------------------------------------------

    def plan(self, bundle_id: str, rng: ContentRange, length: int | None) -> Append | Held:
        """Where a ``Content-Range`` request's bytes go, or a Refusal saying why not.

        Call holding the id's lock (``lock``). ``length`` is the declared body length.
        A chunk must start exactly where the held bytes end; a commit (``bytes
        */TOTAL``) takes no bytes and leads to what is held.
        """
        if rng.total == 0:  # no bundle is empty; nor is any upload ("bytes */0" was a 500)
            raise bad_request("Content-Range does not fit the body or total")
        found = self.find(bundle_id)
        if found is not None and found.total != rng.total:
            raise conflict("an upload of this id with another total is held")
        if found is None:
            if isinstance(rng, ChunkRange) and not self.make_room():
                raise busy()
            path, held = self.path(bundle_id, rng.total), 0
        else:
            path, held = found.path, found.size
        if not isinstance(rng, ChunkRange):
            return Held(path, held)
        if not rng.fits(length):
            raise bad_request("Content-Range does not fit the body or total")
        if rng.first != held:
            raise conflict(
                f"chunk starts at {rng.first} but the server holds {held} bytes: resume there",
                received=held,
            )
        return Append(path, rng.size)

    def appender(self, step: Append) -> Appender:
        return Appender(step.path, step.size)

    def make_room(self) -> bool:
        """Drop partial uploads untouched for ``ttl``, and make room for one more.

        Partial uploads are anonymous (a bundle is authenticated only once whole), so at
        ``max_partial`` the one untouched longest gives way (its uploader starts it
        again) rather than the newcomer being refused: uploads abandoned by the thousand
        cannot hold every slot for a week. False only if every slot is being written to
        at this moment.
        """
        now = time.time()
        live = self._sweep(now)
        excess = len(live) + 1 - self.max_partial
        for _, path in sorted(live):
            if excess <= 0:
                break
            lock = self.directory / f"{path.name[:64]}.lock"
            held = _lock_file(lock, timeout=0)
            if held is None:
                continue  # a chunk of it is arriving now
            try:
                path.unlink(missing_ok=True)
                excess -= 1
            finally:
                _unlock_file(held, lock, remove=True)
        return excess <= 0

    def _sweep(self, now: float) -> list[tuple[float, Path]]:
        """Remove what is older than ``ttl``; the partial files left, by last touch."""
        live: list[tuple[float, Path]] = []
        for path in self.directory.glob("*.part"):
            try:
                touched = path.stat().st_mtime
                if now - touched > self.ttl:
                    path.unlink()
                else:
                    live.append((touched, path))
            except OSError:
                continue
        for path in self.directory.glob("*.lock"):  # left by uploads never finished
            try:
                if now - path.stat().st_mtime > self.ttl:
                    held = _lock_file(path, timeout=0)
                    if held is not None:
                        _unlock_file(held, path, remove=True)
            except OSError:
                continue
        return live

    # -- the lock of one id, shared by every process on the directory ------------------

    def lock(self, bundle_id: str) -> int | None:
        """Hold the upload of ``bundle_id`` against every process sharing the directory;
        the lock's file descriptor, or None if another held it past ``busy_timeout``."""
        return _lock_file(self.directory / f"{bundle_id}.lock", self.busy_timeout)

    def unlock(self, bundle_id: str, held: int) -> None:
        """Release; the lock file goes too once no partial upload of the id is left."""
        path = self.directory / f"{bundle_id}.lock"
        _unlock_file(held, path, remove=self.find(bundle_id) is None)


class Appender:
    """Appends one chunk to a partial file: at most ``expected`` bytes (the rest is not
    ours to keep), buffered, and fsynced on ``close`` so that whatever arrived before a
    broken connection stays and the upload resumes where it broke."""

    def __init__(self, path: Path, expected: int) -> None:
        self.expected = expected
        self.taken = 0
        self._buffer = bytearray()
        self._fh = open(path, "ab")  # noqa: SIM115 - closed by close()

    def take(self, data: bytes) -> bool:
        """Keep ``data``; True when enough is buffered to ``flush`` now."""
        if self.taken + len(data) > self.expected:
            # (A Content-Length mismatch; h11 refuses that anyway.)
            data = data[: self.expected - self.taken]
        self.taken += len(data)
        self._buffer += data
        return len(self._buffer) >= WRITE_BUFFER

    def flush(self) -> None:
        self._fh.write(bytes(self._buffer))
        self._buffer.clear()

    def close(self) -> int:
        """Write and fsync what is buffered; the size of the partial file."""
        try:
            self.flush()
            self._fh.flush()
            os.fsync(self._fh.fileno())
        finally:
            size = self._fh.tell()
            self._fh.close()
        return size


def _lock_file(path: Path, timeout: float) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if need be), or None after ``timeout``.

    A holder may remove the file when done (``_unlock_file``), so a lock taken on a file
    that is no longer at ``path`` is let go and taken again on the new one.
    """
    if sys.platform == "win32":  # pragma: no cover - one process per upload_dir there
        return -1
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            continue
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)


def _unlock_file(fd: int, path: Path, *, remove: bool) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        if remove:
            path.unlink(missing_ok=True)  # still held: nobody locks the old file after this
    finally:
        os.close(fd)  # releases the flock
