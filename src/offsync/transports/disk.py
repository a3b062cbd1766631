"""A courier's removable disk as a transport (USB stick or drive, FAT32 or exFAT).

One disk carries many sites' bundles at once. Layout under ``<mount>/OFFSYNC``::

    to-<32 hex of destination key>/
        <32 hex of bundle id>.ofb            a bundle, sealed to the destination
        from-<32 hex of sender>-<gen>.man    the sender's manifest: file, size, hash
    refused/                                 damaged or refused files, with a .txt why

Exporting (``send``) first spools the bundles on the local disk, checks that the
removable disk has room for all of them (plus a reserve) and refuses before writing
anything if not (``assume_free_bytes`` overrides a driver that reports a wrong figure).
It then writes each bundle under a temporary name, fsyncs, renames, and reads it back
to compare hashes. Only then does it write the manifest, under a new generation number,
and remove the older generations; a write that fails removes what this export wrote.
Importing (``receive``) takes only files listed in an intact manifest whose size and
hash match, so a disk unplugged mid-write leaves nothing that is applied as if whole: a
torn bundle fails its hash, a bundle the manifest does not list yet is ignored (and set
aside), and a torn manifest fails its own checksum. A manifest is bounded before it is
parsed (``Limits.max_header_bytes``, ``MANIFEST_MAX_DEPTH``) and checked against the
format field by field; a bad one is set aside with its reason and blocks nothing else.

Names are short lower-case ASCII and no file can exceed FAT32's 4 GiB - 1; bundles are
sealed to the destination's key by default, so a lost disk leaks no personal data.

A sender's manifest stays in the destination's directory until the destination has
answered it (``answered``), so the courier's stop (``offsync.sync.exchange``, which
drives rounds over this transport) can write a reply that did not fit the first time
once there is room.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LimitExceededError, RemoteDataError, TransportError, UsageError
from ..identity import SiteRef, key_of
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..segment import hash32
from .base import Refused
from .blobbox import BlobBox, SpaceBudget
from .folder import (
    _BUNDLE_NAME,
    NAME_HEX,
    FolderTransport,
    file_name,
    open_regular,
    peek_header,
    read_bounded,
    read_regular,
    write_atomically,
)

__all__ = ["FAT32_MAX_FILE", "DiskTransport"]

#: The largest file FAT32 can hold.
FAT32_MAX_FILE = 4 * 1024**3 - 1
#: Default space left free on the disk after an export.
DEFAULT_RESERVE = 1024 * 1024
MANIFEST_FORMAT = "offsync-disk/1"
#: How deep a manifest nests: an object, its list of bundles, one entry. JSON nested
#: deeper is refused before it is parsed (the parser recurses).
MANIFEST_MAX_DEPTH = 3
_MANIFEST_NAME = re.compile(r"^from-([0-9a-f]{32})-([0-9]{8})\.man$")
_KEY_HEX = re.compile(r"[0-9a-f]{64}")
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def _size(n: int) -> str:
    """Bytes for a reader: ``512 B``, ``2.0 KiB``, ``3.4 MiB``, ``1.9 GiB``."""
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit}"


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hash32(canonical).hex()


def _check_nesting(raw: bytes) -> None:
    """Refuse JSON nested deeper than a manifest ever is, before the parser recurses.

    Brackets count wherever they are, inside strings too: the strings of a manifest are
    hex digits, bundle file names and the format name, so nothing valid is refused.
    """
    depth = 0
    for byte in raw.translate(None, _NOT_A_BRACKET):
        if byte in b"[{":
            depth += 1
            if depth > MANIFEST_MAX_DEPTH:
                raise LimitExceededError(f"nested deeper than {MANIFEST_MAX_DEPTH} levels")
        else:
            depth -= 1


@dataclass(frozen=True, slots=True)
class _Manifest:
    sender: bytes
    entries: dict[str, tuple[int, bytes]]  # file name -> (size, BLAKE2b-256)


def _parse_manifest(raw: bytes, sender_prefix: str, recipient: bytes) -> _Manifest:
    """A manifest's content, checked against the format field by field, or
    ``RemoteDataError`` saying what is wrong (``LimitExceededError``: too deep)."""
    _check_nesting(raw)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, a number of too many digits
        raise RemoteDataError(f"not JSON: {exc}") from exc
    if type(doc) is not dict or doc.get("format") != MANIFEST_FORMAT:
        raise RemoteDataError("not an offsync disk manifest")
    checksum = doc.pop("checksum", None)
    if checksum != _checksum(doc):
        raise RemoteDataError("checksum differs (torn or altered)")
    sender, to, bundles = doc.get("sender"), doc.get("recipient"), doc.get("bundles")
    if not (
        type(sender) is str
        and _KEY_HEX.fullmatch(sender)
        and type(to) is str
        and _KEY_HEX.fullmatch(to)
        and type(bundles) is list
    ):
        raise RemoteDataError("malformed: sender, recipient or bundles missing or not valid")
    if sender[:NAME_HEX] != sender_prefix:
        raise RemoteDataError("its sender is not the one its file name says")
    if to != recipient.hex():
        raise RemoteDataError("addressed to another site than the directory it is in")
    entries: dict[str, tuple[int, bytes]] = {}
    for entry in bundles:
        name, size, digest = (
            (entry.get("file"), entry.get("size"), entry.get("blake2b"))
            if type(entry) is dict
            else (None, None, None)
        )
        if not (
            type(name) is str
            and _BUNDLE_NAME.match(name)
            and type(size) is int
            and 0 <= size <= FAT32_MAX_FILE
            and type(digest) is str
            and _KEY_HEX.fullmatch(digest)
        ):
            raise RemoteDataError("malformed bundle entry")
        entries[name] = (size, bytes.fromhex(digest))
    return _Manifest(bytes.fromhex(sender), entries)


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
    ``assume_free_bytes``, when given, is taken as the free space instead of what the
    disk reports: some drivers (FAT32 through a userspace driver) report 0 free on a
    disk with room. It only moves the check made before writing; if the disk really
    fills up, the export fails and removes what it wrote, as any failed write does.
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
        assume_free_bytes: int | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.mount = Path(mount)
        if not self.mount.is_dir():
            raise TransportError(f"no disk mounted at {self.mount}")
        if max_bundle_bytes is not None and max_bundle_bytes > FAT32_MAX_FILE:
            raise UsageError("bundles on a courier disk must stay under 4 GiB (FAT32)")
        if assume_free_bytes is not None and assume_free_bytes < 0:
            raise UsageError("assume_free_bytes cannot be negative")
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
        self.assume_free_bytes = assume_free_bytes
        self.spool_dir = spool_dir
        #: Senders of the intact manifests in this replica's directory: mail on the disk
        #: that has not been answered yet (``offsync.sync.exchange`` writes their replies).
        self.manifest_senders: set[bytes] = set()

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

    def _load_manifest(self, path: Path, sender_prefix: str, recipient: bytes) -> _Manifest:
        """An intact manifest, read as a regular file of bounded size; else
        ``RemoteDataError`` (or ``OSError``) saying why."""
        return _parse_manifest(
            read_regular(path, self.limits.max_header_bytes), sender_prefix, recipient
        )

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
        encoded = json.dumps(doc, indent=1).encode()
        if len(encoded) > self.limits.max_header_bytes:  # the reader would refuse it
            raise TransportError(
                f"{len(entries)} bundles for one site do not fit in one manifest "
                f"({_size(len(encoded))}, over {_size(self.limits.max_header_bytes)}); "
                "export with larger bundles (max_bundle_bytes)"
            )
        write_atomically(directory, name, encoded)
        for path, _, _ in mine:  # superseded only once the new one is whole
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _my_entries(self, directory: Path, peer: bytes) -> dict[str, tuple[int, bytes]]:
        entries: dict[str, tuple[int, bytes]] = {}
        for path, sender, _ in self._manifests(directory):
            if sender != self.me.hex()[:NAME_HEX]:
                continue
            with contextlib.suppress(OSError, RemoteDataError):
                manifest = self._load_manifest(path, sender, peer)
                if manifest.sender == self.me:
                    entries.update(manifest.entries)
        return {n: e for n, e in entries.items() if (directory / n).exists()}

    # -- exporting ---------------------------------------------------------------------

    def _free(self) -> int:
        if self.assume_free_bytes is not None:
            return self.assume_free_bytes
        try:
            return self._free_space(self.mount)
        except OSError as exc:
            raise TransportError(
                f"cannot tell how much space is free on the disk at {self.mount}: {exc}; "
                "measure it another way and pass it as assume_free_bytes"
            ) from exc

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
            free = self._free()
            if need + self.reserve_bytes > free:
                measured = "you said" if self.assume_free_bytes is not None else "the disk reports"
                raise TransportError(
                    f"not enough space on the disk at {self.mount} for the bundles to "
                    f"{peer.hex()[:12]}: they need {_size(need)} and {_size(self.reserve_bytes)} "
                    f"must stay free, but {measured} only {_size(free)} free. Nothing of this "
                    "export was written; free some space or use a larger disk. If the "
                    "disk's driver gets the free space wrong, give the real figure "
                    "(assume_free_bytes; --assume-free on the command line)."
                )
            written: list[Path] = []
            try:
                directory.mkdir(parents=True, exist_ok=True)
                entries = self._my_entries(directory, peer)
                for name, size, digest in staged:
                    if entries.get(name) != (size, digest):
                        path = directory / name
                        if not os.path.lexists(path):  # else another sender's copy, maybe
                            written.append(path)
                        write_atomically(directory, name, (Path(spool) / name).read_bytes())
                        self._verify(path, size, digest)
                    entries[name] = (size, digest)
                if first_created is not None:
                    self._prune(directory, first_created.created)
                entries = {n: e for n, e in entries.items() if (directory / n).exists()}
                self._write_manifest(directory, peer, entries)
            except OSError as exc:
                self._remove(written)
                raise TransportError(
                    f"writing to the disk at {self.mount} failed: {exc}. What this export "
                    "wrote was removed (anything left is not listed in a manifest and will "
                    "not be imported); export again."
                ) from exc
            except BaseException:
                self._remove(written)
                raise
        return len(staged)

    @staticmethod
    def _remove(paths: Iterable[Path]) -> None:
        """Take back the bundles a failed export wrote: nothing lists them, and on a
        full disk their space is what the next attempt needs."""
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink()

    def _verify(self, path: Path, size: int, digest: bytes) -> None:
        try:
            with open_regular(path) as (fd, actual):
                _drop_cache(fd)
                data = read_bounded(fd, actual, size)
        except (OSError, RemoteDataError):
            data = b""
        if len(data) != size or hash32(data) != digest:
            with contextlib.suppress(OSError):
                path.unlink()
            raise TransportError(
                f"read-back verification failed for {path}: the disk returned different "
                "bytes than were written (failing disk or a bad connection). Nothing from "
                "this export will be imported; try another disk."
            )

    def blob_mailbox(self) -> BlobBox:
        """Blob chunk files beside the bundles, written until the disk is full (less
        ``reserve_bytes``): what did not fit goes on the next disk. Temporary files of
        an unfinished write are removed at once (one courier's stop writes at a time)."""
        budget = SpaceBudget(self._free, self.reserve_bytes)
        return BlobBox(self.root, self.me, self.peer, limits=self.limits, budget=budget, temp_age=0)

    # -- importing ---------------------------------------------------------------------

    def receive(self, knowledge: Knowledge) -> Iterator[bytes | Refused]:
        listed: dict[str, set[tuple[int, bytes]]] = {}
        for path, sender, _ in self._manifests(self.inbox):
            try:
                manifest = self._load_manifest(path, sender, self.me)
            except FileNotFoundError:
                continue
            except (OSError, RemoteDataError) as exc:
                yield self._set_aside(
                    path,
                    f"damaged manifest ({exc}): the bundles it lists are not imported; "
                    "ask the sender to export again",
                )
                continue
            self.manifest_senders.add(manifest.sender)
            for name, entry in manifest.entries.items():
                listed.setdefault(name, set()).add(entry)
        for path in self._bundle_files(self.inbox):
            expected = listed.get(path.name)
            if expected is None:
                yield self._set_aside(
                    path,
                    "not listed in any manifest: left by an export that did not finish "
                    "(disk unplugged?); not imported",
                )
                continue
            item = self._read(path, expected)
            if item is not None:
                yield item

    def answered(self, peer: SiteRef) -> None:
        """A reply to ``peer`` was written: drop its manifests in this replica's
        directory once every bundle they list has left it (applied or set aside), so
        the next courier's stop does not answer the same mail again."""
        key = key_of(peer)
        prefix = key.hex()[:NAME_HEX]
        for path, sender, _ in self._manifests(self.inbox):
            if sender != prefix:
                continue
            try:
                manifest = self._load_manifest(path, sender, self.me)
            except (OSError, RemoteDataError):
                continue
            if manifest.sender == key and not any(
                os.path.lexists(self.inbox / name) for name in manifest.entries
            ):
                with contextlib.suppress(OSError):
                    path.unlink()
