"""A shared folder as a transport: a network share or a synced directory.

Layout under the folder's root (every name is plain ASCII, safe on FAT32 and SMB)::

    to-<32 hex of the destination's key>/   one outbox per destination
        <32 hex of the bundle id>.ofb        a bundle, named by its content hash
        .tmp-*.part                          a bundle being written (never read)
    refused/                                 bundles that were refused, with a .txt why

Writers put a bundle under a temporary name, fsync it, and rename it into place, so a
reader never sees half a file under a bundle name. A bundle is named by its hash, so
the same bundle written twice (by two relays, say) is one file, and it is checked
against its name when read. A reader applies a file and only then deletes it; if it
crashes in between, the file is applied again on the next round, which changes nothing.
Any number of sites may write and read the folder at once: names never collide, and
renames and deletes are atomic.

Every round leaves a bundle for the peer, if only to carry a receipt. Receipt-only
bundles that a newer round supersedes are removed, so a peer that is away for months
finds one receipt bundle, not thousands.

Whatever is in the folder is input from elsewhere, names included: a FIFO named like a
bundle would block a reader forever, and a device (or a link to ``/dev/zero``) never
ends. Files are opened without following a final symbolic link and without waiting
(``O_NOFOLLOW | O_NONBLOCK``), the opened descriptor must be a regular file, and no
read goes past the limit that applies (``read_regular``); anything else is refused with
its reason and set aside.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..bundle import BundleHeader, read_header
from ..bundle import peek_header as bundle_header
from ..errors import (
    LimitExceededError,
    OffsyncError,
    RemoteDataError,
    TransportError,
    UsageError,
)
from ..identity import SiteRef, key_of
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..segment import hash32
from .base import Refused, Transport

if TYPE_CHECKING:
    from .blobbox import BlobBox

__all__ = ["FolderTransport", "peek_header"]

SUFFIX = ".ofb"
NAME_HEX = 32  # hex digits of a key or bundle id used in names (128 bits)
_BUNDLE_NAME = re.compile(r"^[0-9a-f]{32}\.ofb$")  # NAME_HEX digits
STALE_TEMP_SECONDS = 3600.0


def file_name(bundle: bytes) -> str:
    return hash32(bundle).hex()[:NAME_HEX] + SUFFIX


def outbox_name(key: bytes) -> str:
    return "to-" + key.hex()[:NAME_HEX]


#: How a file from the medium is opened: never through a final symbolic link, never
#: waiting for a FIFO's writer (flags a platform lacks are left out).
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_READ_CHUNK = 1024 * 1024


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "a special file"


@contextlib.contextmanager
def open_regular(path: Path) -> Iterator[tuple[int, int]]:
    """``(descriptor, size)`` of the regular file at ``path``, opened for reading.

    A FIFO is opened without waiting for a writer, a final symbolic link is not
    followed, and the opened descriptor is checked with ``fstat``, so what is read is
    the regular file that was checked (no race with a rename). Raises
    ``RemoteDataError`` for anything else (a FIFO, a device, a socket, a directory, a
    symbolic link), ``FileNotFoundError`` if it is gone, ``OSError`` otherwise.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise RemoteDataError("a symbolic link, not a regular file") from exc
        if exc.errno == errno.ENXIO:  # a socket (or a device with nothing behind it)
            raise RemoteDataError("a special file, not a regular file") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RemoteDataError(f"{_kind(info.st_mode)}, not a regular file")
        yield fd, info.st_size
    finally:
        os.close(fd)


def read_upto(fd: int, n: int, size_hint: int = 0) -> bytes:
    """Up to ``n`` bytes from an open file, fewer only at its end. ``size_hint`` (what
    ``fstat`` said) lets the usual case be one read, without copying."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = os.read(fd, min(n - got, max(size_hint + 1 - got, _READ_CHUNK)))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_bounded(fd: int, size: int, max_bytes: int) -> bytes:
    """An open file to its end, but never more than ``max_bytes``: a file that grew past
    it since ``fstat`` said ``size`` raises ``LimitExceededError``."""
    data = read_upto(fd, max_bytes + 1, size)
    if len(data) > max_bytes:
        raise LimitExceededError(f"more than {max_bytes} bytes, over the limit")
    return data


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at ``path`` if it holds at most ``max_bytes``.

    How this package reads a whole small file from a shared folder or a courier disk
    (see ``open_regular``): ``RemoteDataError`` for what is not a regular file,
    ``LimitExceededError`` for one over ``max_bytes`` (checked before reading),
    ``OSError`` if it cannot be read.
    """
    with open_regular(path) as (fd, size):
        if size > max_bytes:
            raise LimitExceededError(f"{size} bytes, over the limit of {max_bytes}")
        return read_bounded(fd, size, max_bytes)


def peek_header(path: Path, limits: Limits = DEFAULT_LIMITS) -> BundleHeader | None:
    """The header of a bundle file, read without the body and without checking the
    bundle's signature; ``None`` if it is not readable (or not a regular file). For
    bookkeeping only (what is in transit); never for deciding what to apply."""
    try:
        with open_regular(path) as (fd, size):
            prefix = read_upto(fd, 12)
            if len(prefix) == 12:
                want = min(int.from_bytes(prefix[8:12], "big"), limits.max_header_bytes)
                prefix += read_upto(fd, want, min(want, size))
        return bundle_header(prefix, limits)
    except (OSError, OffsyncError):
        return None


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` via a temporary file, fsync and rename."""
    final = directory / name
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)
    return final


class FolderTransport(Transport):
    """This replica's view of a shared folder, sending to ``peer``.

    ``me`` and ``peer`` are site keys (or identities/replicas). Without a peer the
    transport only receives. ``encrypt=True`` seals bundles to the peer's key.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        me: SiteRef,
        peer: SiteRef | None = None,
        *,
        encrypt: bool = False,
        max_bundle_bytes: int | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.root = Path(root)
        self.me = key_of(me)
        self.peer = key_of(peer) if peer is not None else None
        self.recipient = self.peer if encrypt else None
        if max_bundle_bytes is not None:
            self.max_bundle_bytes = max_bundle_bytes
        self.limits = limits
        self.senders: set[bytes] = set()  # senders of the bundles received so far

    def __repr__(self) -> str:
        peer = self.peer.hex()[:12] if self.peer else None
        return f"<{type(self).__name__} {str(self.root)!r} me={self.me.hex()[:12]} peer={peer}>"

    # -- layout ------------------------------------------------------------------------

    def outbox(self, key: bytes) -> Path:
        return self.root / outbox_name(key)

    @property
    def inbox(self) -> Path:
        return self.outbox(self.me)

    @property
    def refused_dir(self) -> Path:
        return self.root / "refused"

    def _bundle_files(self, directory: Path) -> list[Path]:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TransportError(f"cannot list {directory}: {exc}") from exc
        files = [directory / n for n in names if _BUNDLE_NAME.match(n)]

        def mtime(p: Path) -> float:
            try:
                return p.lstat().st_mtime  # of the entry itself, never a link's target
            except OSError:
                return 0.0

        return sorted(files, key=lambda p: (mtime(p), p.name))

    def blob_mailbox(self) -> BlobBox:
        """Blob chunk files beside the bundles (``offsync.transports.blobbox``)."""
        from .blobbox import BlobBox  # it reads and writes files as this module does

        return BlobBox(self.root, self.me, self.peer, limits=self.limits)

    def _require_peer(self) -> bytes:
        if self.peer is None:
            raise UsageError(f"{self!r} has no peer to send to")
        return self.peer

    # -- sending -----------------------------------------------------------------------

    def knowledge(self) -> Knowledge:
        """What we left for the peer that it has not picked up yet, and what the peer
        holds according to the newest receipt it left for us (receipts are signed and
        checked; a bundle's own signature is checked when it is applied)."""
        held = Knowledge()
        if self.peer is None:
            return held
        for path in self._bundle_files(self.outbox(self.peer)):
            header = peek_header(path, self.limits)
            if header is not None and header.sender == self.me:
                held = held | header.ranges
        newest = None
        for path in self._bundle_files(self.inbox):
            header = peek_header(path, self.limits)
            if (
                header is not None
                and header.sender == self.peer
                and (newest is None or header.receipts[0].created > newest.created)
            ):
                newest = header.receipts[0]
        return held | newest.knowledge if newest is not None else held

    def send(self, bundles: Iterable[bytes]) -> int:
        peer = self._require_peer()
        directory = self.outbox(peer)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            n, first_created = 0, None
            for bundle in bundles:
                self._write(directory, bundle)
                if first_created is None:
                    first_created = read_header(bundle, self.limits)[0].created
                n += 1
            if first_created is not None:
                self._prune(directory, first_created)
        except OSError as exc:
            raise TransportError(f"cannot write to {directory}: {exc}") from exc
        return n

    def _write(self, directory: Path, bundle: bytes) -> Path:
        final = directory / file_name(bundle)
        with contextlib.suppress(OSError):
            info = final.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_size == len(bundle):
                return final  # the same bundle, already there (named by its hash)
        # Anything else under that name (a link, a FIFO, a torn copy) is replaced.
        return write_atomically(directory, final.name, bundle)

    def _prune(self, directory: Path, newer_than: int) -> None:
        """Drop our receipt-only bundles older than this round, and stale temp files."""
        for path in self._bundle_files(directory):
            header = peek_header(path, self.limits)
            if (
                header is not None
                and header.sender == self.me
                and header.segments == 0
                and header.created < newer_than
            ):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        now = time.time()
        for name in os.listdir(directory):
            if name.startswith(".tmp-"):
                path = directory / name
                with contextlib.suppress(OSError):
                    if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                        path.unlink()

    # -- receiving ---------------------------------------------------------------------

    def receive(self, knowledge: Knowledge) -> Iterator[bytes | Refused]:
        for path in self._bundle_files(self.inbox):
            item = self._read(path)
            if item is not None:
                yield item

    def _read(
        self, path: Path, listed: Collection[tuple[int, bytes]] | None = None
    ) -> bytes | Refused | None:
        """A bundle file's bytes if intact and for us; a Refused if damaged or not a
        regular file (set aside); None if gone or meant for someone else (left in place).

        ``listed``: the (size, hash) pairs a manifest gives for this name (courier
        disks); the file must match one of them.
        """
        reason = None
        try:
            with open_regular(path) as (fd, size):
                if size > self.limits.max_bundle_bytes:
                    reason = f"{size} bytes, over the bundle size limit"
                elif listed is not None and size not in {n for n, _ in listed}:
                    says = " or ".join(str(n) for n in sorted({n for n, _ in listed}))
                    reason = f"truncated or damaged: {size} bytes where the manifest says {says}"
                else:
                    data = read_bounded(fd, size, self.limits.max_bundle_bytes)
        except FileNotFoundError:
            return None  # another reader took it
        except RemoteDataError as exc:  # not a regular file, or it grew past the limit
            reason = f"{exc}: not read"
        except OSError as exc:
            return Refused(str(path), f"cannot read: {exc}")
        if reason is not None:
            return self._set_aside(path, reason)
        digest = hash32(data)
        if listed is not None and (len(data), digest) not in listed:
            return self._set_aside(path, "damaged: contents differ from the manifest's hash")
        if digest.hex()[:NAME_HEX] + SUFFIX != path.name:
            return self._set_aside(path, "damaged: contents do not match the file name")
        try:
            header, _ = read_header(data, self.limits)
        except RemoteDataError as exc:
            return self._set_aside(path, f"{type(exc).__name__}: {exc}")
        if header.recipient is not None and header.recipient != self.me:
            return None  # sealed for another site: leave it for them (see sync.forward)
        self.senders.add(header.sender)
        return data

    def _set_aside(self, path: Path, reason: str) -> Refused:
        """Move a refused entry out of the inbox, with a note saying why.

        The note is written as a new file and renamed into place, so an entry already
        under its name (a link planted on the medium, say) is replaced, never written
        through; a ``refused`` that is not a plain directory is not used.
        """
        try:
            self.refused_dir.mkdir(parents=True, exist_ok=True)
            if not stat.S_ISDIR(self.refused_dir.lstat().st_mode):
                raise NotADirectoryError(str(self.refused_dir))
            os.replace(path, self.refused_dir / path.name)
            write_atomically(self.refused_dir, path.name + ".txt", (reason + "\n").encode())
        except OSError:
            pass  # read-only medium: the refusal is still reported
        return Refused(str(path), reason)

    def acknowledge(self, bundle: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.inbox / file_name(bundle)).unlink()

    def reject(self, bundle: bytes, reason: str) -> None:
        path = self.inbox / file_name(bundle)
        if path.exists():
            self._set_aside(path, reason)
