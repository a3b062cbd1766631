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
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..bundle import BundleHeader, read_header
from ..bundle import peek_header as bundle_header
from ..errors import OffsyncError, RemoteDataError, TransportError, UsageError
from ..identity import SiteRef, key_of
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..segment import hash32
from .base import Refused, Transport

__all__ = ["FolderTransport", "peek_header"]

SUFFIX = ".ofb"
NAME_HEX = 32  # hex digits of a key or bundle id used in names (128 bits)
_BUNDLE_NAME = re.compile(r"^[0-9a-f]{32}\.ofb$")  # NAME_HEX digits
STALE_TEMP_SECONDS = 3600.0


def file_name(bundle: bytes) -> str:
    return hash32(bundle).hex()[:NAME_HEX] + SUFFIX


def outbox_name(key: bytes) -> str:
    return "to-" + key.hex()[:NAME_HEX]


def peek_header(path: Path, limits: Limits = DEFAULT_LIMITS) -> BundleHeader | None:
    """The header of a bundle file, read without the body and without checking the
    bundle's signature; ``None`` if it is not readable. For bookkeeping only (what is in
    transit); never for deciding what to apply."""
    try:
        with path.open("rb") as f:
            prefix = f.read(12)
            if len(prefix) == 12:
                prefix += f.read(min(int.from_bytes(prefix[8:12], "big"), limits.max_header_bytes))
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
                return p.stat().st_mtime
            except OSError:
                return 0.0

        return sorted(files, key=lambda p: (mtime(p), p.name))

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
        if final.exists() and final.stat().st_size == len(bundle):
            return final  # the same bundle, already there (named by its hash)
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

    def _read(self, path: Path, expected_hash: bytes | None = None) -> bytes | Refused | None:
        """A bundle file's bytes if intact and for us; a Refused if damaged; None if gone
        or meant for someone else (left in place)."""
        try:
            size = path.stat().st_size
            if size > self.limits.max_bundle_bytes:
                return self._set_aside(path, f"{size} bytes, over the bundle size limit")
            data = path.read_bytes()
        except FileNotFoundError:
            return None  # another reader took it
        except OSError as exc:
            return Refused(str(path), f"cannot read: {exc}")
        digest = hash32(data)
        if expected_hash is not None and digest != expected_hash:
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
        """Move a refused file out of the inbox, with a note saying why."""
        try:
            self.refused_dir.mkdir(parents=True, exist_ok=True)
            os.replace(path, self.refused_dir / path.name)
            (self.refused_dir / (path.name + ".txt")).write_text(reason + "\n", encoding="utf-8")
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
