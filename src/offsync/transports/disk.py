"""A courier's removable disk as a transport (USB stick or drive, FAT32 or exFAT).

One disk carries many sites' bundles at once. Layout under ``<mount>/OFFSYNC``::

    to-<32 hex of destination key>/
        <32 hex of bundle id>.ofb            a bundle, sealed to the destination
        from-<32 hex of sender>-<gen>.man    the sender's manifest: file, size, hash
    refused/                                 damaged or refused files, with a .txt why

Exporting (``send``) first spools the bundles on the local disk, checks that the
removable disk has room for all of them (plus a reserve) and refuses before writing
anything if not. It then writes each bundle under a temporary name, fsyncs, renames,
and reads it back to compare hashes. Only then does it write the manifest, under a new
generation number, and remove the older generations. Importing (``receive``) takes only
files listed in an intact manifest whose size and hash match, so a disk unplugged
mid-write leaves nothing that is applied as if whole: a torn bundle fails its hash, a
bundle the manifest does not list yet is ignored (and set aside), and a torn manifest
fails its own checksum.

Names are short lower-case ASCII and no file can exceed FAT32's 4 GiB - 1; bundles are
sealed to the destination's key by default, so a lost disk leaks no personal data.

``exchange(replica, mount)`` is the courier's stop: import everything on the disk for
this replica, then write what each site it heard from is due (and this replica's
receipt) onto the same disk for the return trip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import TransportError, UsageError
from ..identity import SiteRef, key_of
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..replica import Replica
from ..segment import hash32
from .base import Refused
from .folder import NAME_HEX, FolderTransport, file_name, peek_header, write_atomically

if TYPE_CHECKING:
    from ..sync import SyncReport

__all__ = ["FAT32_MAX_FILE", "DiskTransport", "exchange"]

#: The largest file FAT32 can hold.
FAT32_MAX_FILE = 4 * 1024**3 - 1
#: Default space left free on the disk after an export.
DEFAULT_RESERVE = 1024 * 1024
MANIFEST_FORMAT = "offsync-disk/1"
_MANIFEST_NAME = re.compile(r"^from-([0-9a-f]{32})-([0-9]{8})\.man$")


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hash32(canonical).hex()


def _drop_cache(fd: int) -> None:
    """Ask the OS to forget cached pages, so a read-back reads the device."""
    fadvise = getattr(os, "posix_fadvise", None)
    if fadvise is not None:
        with contextlib.suppress(OSError):
            fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class DiskTransport(FolderTransport):
    """This replica's view of a removable disk mounted at ``mount``.

    ``reserve_bytes`` is left free after an export. ``free_space`` measures the disk
    (default: ``shutil.disk_usage``); tests replace it to exercise a full disk.
    ``spool_dir`` is where an export is staged before the space check (default: the
    system temporary directory).
    """

    def __init__(
        self,
        mount: str | os.PathLike[str],
        me: SiteRef,
        peer: SiteRef | None = None,
        *,
        encrypt: bool = True,
        max_bundle_bytes: int | None = None,
        reserve_bytes: int = DEFAULT_RESERVE,
        free_space: Callable[[Path], int] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.mount = Path(mount)
        if not self.mount.is_dir():
            raise TransportError(f"no disk mounted at {self.mount}")
        if max_bundle_bytes is not None and max_bundle_bytes > FAT32_MAX_FILE:
            raise UsageError("bundles on a courier disk must stay under 4 GiB (FAT32)")
        super().__init__(
            self.mount / "OFFSYNC",
            me,
            peer,
            encrypt=encrypt,
            max_bundle_bytes=max_bundle_bytes,
            limits=limits,
        )
        self.reserve_bytes = reserve_bytes
        self._free_space = free_space or (lambda p: shutil.disk_usage(p).free)
        self.spool_dir = spool_dir

    # -- manifests ---------------------------------------------------------------------

    def _manifests(self, directory: Path) -> list[tuple[Path, str, int]]:
        """(path, sender prefix, generation) of every manifest file in ``directory``."""
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TransportError(f"cannot list {directory}: {exc}") from exc
        out = []
        for name in sorted(names):
            m = _MANIFEST_NAME.match(name)
            if m:
                out.append((directory / name, m.group(1), int(m.group(2))))
        return out

    def _load_manifest(self, path: Path) -> dict[str, tuple[int, bytes]]:
        """file name -> (size, hash) from an intact manifest; raises ValueError if not."""
        raw = path.read_bytes()
        if len(raw) > self.limits.max_header_bytes:
            raise ValueError("manifest too large")
        doc = json.loads(raw.decode("utf-8"))
        if type(doc) is not dict or doc.get("format") != MANIFEST_FORMAT:
            raise ValueError("not an offsync disk manifest")
        checksum = doc.pop("checksum", None)
        if checksum != _checksum(doc):
            raise ValueError("checksum differs (torn or altered)")
        out: dict[str, tuple[int, bytes]] = {}
        for entry in doc["bundles"]:
            name, size, digest = entry["file"], entry["size"], bytes.fromhex(entry["blake2b"])
            if type(name) is not str or type(size) is not int or len(digest) != 32:
                raise ValueError("malformed entry")
            out[name] = (size, digest)
        return out

    def _write_manifest(
        self, directory: Path, peer: bytes, entries: dict[str, tuple[int, bytes]]
    ) -> None:
        mine = [m for m in self._manifests(directory) if m[1] == self.me.hex()[:NAME_HEX]]
        generation = max((g for _, _, g in mine), default=0) + 1
        doc: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "sender": self.me.hex(),
            "recipient": peer.hex(),
            "generation": generation,
            "bundles": [
                {"file": name, "size": size, "blake2b": digest.hex()}
                for name, (size, digest) in sorted(entries.items())
            ],
        }
        doc["checksum"] = _checksum(doc)
        name = f"from-{self.me.hex()[:NAME_HEX]}-{generation:08d}.man"
        write_atomically(directory, name, json.dumps(doc, indent=1).encode())
        for path, _, _ in mine:  # superseded only once the new one is whole
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _my_entries(self, directory: Path) -> dict[str, tuple[int, bytes]]:
        entries: dict[str, tuple[int, bytes]] = {}
        for path, sender, _ in self._manifests(directory):
            if sender != self.me.hex()[:NAME_HEX]:
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                entries.update(self._load_manifest(path))
        return {n: e for n, e in entries.items() if (directory / n).exists()}

    # -- exporting ---------------------------------------------------------------------

    def send(self, bundles: Iterable[bytes]) -> int:
        peer = self._require_peer()
        directory = self.outbox(peer)
        with tempfile.TemporaryDirectory(prefix="offsync-spool-", dir=self.spool_dir) as spool:
            staged: list[tuple[str, int, bytes]] = []
            first_created = None
            for bundle in bundles:
                if len(bundle) > FAT32_MAX_FILE:
                    raise TransportError("a bundle over 4 GiB cannot go on a FAT32 disk")
                name = file_name(bundle)
                (Path(spool) / name).write_bytes(bundle)
                staged.append((name, len(bundle), hash32(bundle)))
                if first_created is None:
                    first_created = peek_header(Path(spool) / name, self.limits)
            need = sum(size for _, size, _ in staged) + 4096 + 200 * len(staged)
            free = self._free_space(self.mount)
            if need + self.reserve_bytes > free:
                raise TransportError(
                    f"not enough space on the disk at {self.mount}: this export needs "
                    f"{_mib(need)} and {_mib(self.reserve_bytes)} must stay free, but only "
                    f"{_mib(free)} is free. Nothing was written; free some space or use a "
                    "larger disk."
                )
            try:
                directory.mkdir(parents=True, exist_ok=True)
                entries = self._my_entries(directory)
                for name, size, digest in staged:
                    if entries.get(name) != (size, digest):
                        write_atomically(directory, name, (Path(spool) / name).read_bytes())
                        self._verify(directory / name, size, digest)
                    entries[name] = (size, digest)
                if first_created is not None:
                    self._prune(directory, first_created.created)
                entries = {n: e for n, e in entries.items() if (directory / n).exists()}
                self._write_manifest(directory, peer, entries)
            except OSError as exc:
                raise TransportError(
                    f"writing to the disk at {self.mount} failed: {exc}. Whatever was "
                    "written is not listed in a manifest and will not be imported; "
                    "export again."
                ) from exc
        return len(staged)

    def _verify(self, path: Path, size: int, digest: bytes) -> None:
        with path.open("rb") as f:
            _drop_cache(f.fileno())
            data = f.read()
        if len(data) != size or hash32(data) != digest:
            with contextlib.suppress(OSError):
                path.unlink()
            raise TransportError(
                f"read-back verification failed for {path}: the disk returned different "
                "bytes than were written (failing disk or a bad connection). Nothing from "
                "this export will be imported; try another disk."
            )

    # -- importing ---------------------------------------------------------------------

    def receive(self, knowledge: Knowledge) -> Iterator[bytes | Refused]:
        listed: dict[str, tuple[int, bytes]] = {}
        for path, _, _ in self._manifests(self.inbox):
            try:
                listed.update(self._load_manifest(path))
            except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                yield self._set_aside(
                    path,
                    f"damaged manifest ({exc}): the bundles it lists are not imported; "
                    "ask the sender to export again",
                )
        for path in self._bundle_files(self.inbox):
            expected = listed.get(path.name)
            if expected is None:
                yield self._set_aside(
                    path,
                    "not listed in any manifest: left by an export that did not finish "
                    "(disk unplugged?); not imported",
                )
                continue
            size, digest = expected
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                continue
            if actual != size:
                yield self._set_aside(
                    path, f"truncated or damaged: {actual} bytes where the manifest says {size}"
                )
                continue
            item = self._read(path, expected_hash=digest)
            if item is not None:
                yield item


def exchange(
    replica: Replica,
    mount: str | os.PathLike[str],
    peers: Sequence[SiteRef] = (),
    **options: Any,
) -> list[SyncReport]:
    """The courier's stop at one site: import, then write for the return trip.

    Imports every bundle on the disk meant for ``replica``, then runs a round for each
    site in ``peers`` and each site it received bundles from, so each finds what it
    lacks and this replica's receipt on the disk. Returns the ``SyncReport`` of every
    round (the import round first). ``options`` go to ``DiskTransport``.
    """
    from ..sync import sync  # sync imports the transports package

    inbound = DiskTransport(mount, replica.id, None, **options)
    reports = [sync(replica, inbound, push=False)]
    targets = [key_of(p) for p in peers]
    targets += sorted(s for s in inbound.senders if s not in targets and s != replica.id)
    for peer in targets:
        with DiskTransport(mount, replica.id, peer, **options) as transport:
            reports.append(sync(replica, transport))
    return reports
