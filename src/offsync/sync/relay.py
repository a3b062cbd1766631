"""Carrying bundles on unopened: how a relay passes on bundles sealed for someone else.

``forward(source, target)`` carries bundles from one transport to another as they are,
without opening them. A bundle the next hop refuses is set aside through the source
with the reason and the rest go on; a failure that may clear stops the pass and loses
nothing.

Blob chunk files sealed for the same site go after the bundles, unopened, when the
next hop is a mailbox (a folder, another disk). A server cannot take them (it takes
only chunks it can verify, in the clear over TLS): a relay that must pass blobs on
over HTTP imports the disk as the site it is (``offsync.sync.exchange``) and syncs
onward, and the blob lane (``offsync.sync.blobs``) carries them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from ..blobfile import CHUNK_SUFFIX, KIND_CHUNK, KIND_WANT, recipient_of, want_list_max
from ..errors import PeerRefusedError, RemoteDataError
from ..knowledge import Knowledge
from ..transports.base import Refused, Transport
from ..transports.blobbox import BlobBox, NoRoom
from .rounds import bundle_name

__all__ = ["ForwardReport", "forward"]


@dataclass(slots=True)
class ForwardReport:
    """What one ``forward`` pass did: the bundles the next hop took, and those refused
    (damaged on the source, or refused by the next hop), each with why."""

    #: Ids (hex) of the bundles the next hop took, in order; removed from the source.
    forwarded: list[str] = field(default_factory=list)
    #: Set aside on the source, never offered again: ``Refused(source or id, reason)``.
    refused: list[Refused] = field(default_factory=list)
    #: Blob files (chunks, want lists) sealed for the addressee carried onward unopened.
    blob_files: int = 0
    #: Blob files left on the source: the next hop is not a mailbox (a server takes
    #: only chunks it can verify; the addressee imports these from the medium), or it
    #: is full.
    blob_files_left: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.refused

    def __str__(self) -> str:
        text = f"forwarded {len(self.forwarded)} bundles, refused {len(self.refused)}"
        if self.blob_files or self.blob_files_left:
            text += f"; {self.blob_files} blob files carried, {self.blob_files_left} left"
        return text


def _refuses_the_bundle(exc: PeerRefusedError) -> bool:
    """Whether the next hop refused this bundle for what it is (it does not verify,
    cannot be opened there, or is larger than that hop takes: HTTP 422 or 413), so
    offering it again will not help; any other refusal (a wrong address, a proxy, an
    authentication problem, bytes corrupted on the way) is about the path, and every
    bundle would meet it: the pass stops and the bundle stays where it is."""
    return exc.status in (413, 422) and exc.error != "BundleIdMismatch"


def forward(source: Transport, target: Transport) -> ForwardReport:
    """Carry every bundle ``source`` offers to ``target`` unopened.

    A relay uses this for bundles sealed to another site (it cannot open them): build
    ``source`` as the addressee's view of the medium (e.g. ``DiskTransport(mount,
    me=centre_key)``) and ``target`` as the path onward. Each bundle is removed from
    ``source`` only after ``target`` took it. A bundle ``target`` refuses for what it
    is (``PeerRefusedError``: it does not verify there, or is too large for that hop)
    is set aside through ``source.reject`` with the reason, reported, and the pass goes
    on, so one bad bundle never holds up those behind it. Other transport failures
    (``RetryableTransportError``: the next hop is down or busy) end the pass with the
    exception; what was not forwarded stays on ``source`` for the next pass.
    """
    report = ForwardReport()
    for item in source.receive(Knowledge()):
        if isinstance(item, Refused):
            report.refused.append(item)
            continue
        try:
            taken = target.send([item])
        except PeerRefusedError as exc:
            if not _refuses_the_bundle(exc):
                raise
            reason = f"refused by the next hop: {exc.error}: {exc.reason} (HTTP {exc.status})"
            source.reject(item, reason)
            report.refused.append(Refused(bundle_name(item), reason))
            continue
        if taken == 1:
            source.acknowledge(item)
            report.forwarded.append(bundle_name(item))
    _forward_blob_files(source, target, report)
    return report


def _forward_blob_files(source: Transport, target: Transport, report: ForwardReport) -> None:
    """Carry the blob files sealed for the source's addressee (after its bundles, which
    never wait for them) to the target's mailbox for the same site, unopened; files are
    removed from the source once written onward and flushed, ``_CARRY_BATCH`` at a time
    (a backlog of 200,000 files is never listed at once). A next hop that is not a
    mailbox for that site (a server) leaves them where they are, counted."""
    box = source.blob_mailbox()
    if box is None:
        return
    files = chain(box.chunk_files(), box.want_files())
    onward = target.blob_mailbox()
    if onward is None or onward.peer != box.me:
        report.blob_files_left += sum(1 for _ in files)
        return
    carried: list[Path] = []
    try:
        for path in files:
            carried_it = _carry(box, onward, path, report)
            if carried_it is None:  # no room onward: this file and the rest stay
                report.blob_files_left += 1 + sum(1 for _ in files)
                return
            if carried_it:
                carried.append(path)
            if len(carried) == _CARRY_BATCH:
                _settle(box, onward, carried, report)
    finally:
        _settle(box, onward, carried, report)


#: Files carried onward between two flushes of the target (and removals at the source).
_CARRY_BATCH = 4096


def _settle(box: BlobBox, onward: BlobBox, carried: list[Path], report: ForwardReport) -> None:
    """Make the files carried durable onward, then remove them from the source."""
    onward.flush()  # durable onward before anything leaves the source
    for path in carried:
        box.remove(path)
    report.blob_files += len(carried)
    carried.clear()


def _carry(box: BlobBox, onward: BlobBox, path: Path, report: ForwardReport) -> bool | None:
    """Carry one file onward (True), or set it aside refused (False); None when there
    is no room onward."""
    kind = KIND_CHUNK if path.suffix == CHUNK_SUFFIX else KIND_WANT
    try:
        data = box.read(path, want_list_max(box.limits) if kind == KIND_WANT else None)
        if recipient_of(data, kind) != box.me:
            raise RemoteDataError("sealed for another site than the one it is left for")
    except (OSError, RemoteDataError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        box.set_aside(path, reason)
        report.refused.append(Refused(path.name, reason))
        return False
    try:
        onward.carry(path.name, data, path.parent.name if kind == KIND_CHUNK else None)
    except NoRoom:
        return None
    return True
