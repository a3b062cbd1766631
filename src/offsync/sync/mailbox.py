"""A stop at a mailbox: a courier's disk or a shared folder.

A mailbox holds bundles left for each site (one ``to-<key>`` directory per
destination). A stop at one site runs several rounds over it: one that takes
everything left for this replica, then one per site to answer, each leaving what that
site lacks and this replica's receipt. Whom to answer is the driver's decision, made
here and not in a transport (transports know nothing of rounds) nor in the command
line: the sites named, and every site this stop received bundles from. In trust mode
only sites that may read (``TrustStore.may_read``: certified now, or an authority) are
answered; the others are listed in ``ExchangeReport.withheld``, so a bundle signed by a
stranger's key never earns that key a copy of the registry.

* ``exchange(replica, mount, peers)`` — the courier's stop at a removable disk. It also
  answers the senders whose manifests still wait in this replica's directory (mail
  that a full disk kept it from answering last time), if it has heard from them
  before. A reply that cannot be written is reported (``NotWritten``), never raised:
  the import stands, and the other replies are still tried.
* ``exchange_folder(replica, folder, peers)`` — the same stop at a shared folder. A
  failure to write ends it with the exception, as a round over the folder does.

Both return an ``ExchangeReport`` and open their transports with
``offsync.transports.open_transport``, so an option the transport does not take is a
``UsageError`` before anything is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import TransportError
from ..identity import SiteRef, key_of
from ..replica import Replica
from ..transports.locations import open_transport
from .readers import may_receive
from .rounds import SyncReport, sync

__all__ = ["ExchangeReport", "NotWritten", "exchange", "exchange_folder"]


@dataclass(frozen=True, slots=True)
class NotWritten:
    """A reply that a courier's stop could not write onto the disk, and why."""

    peer: bytes
    reason: str


@dataclass(slots=True)
class ExchangeReport:
    """What a stop did: the import, each reply written, each reply not written.

    A reply that is not written does not undo the import: what was applied stays
    applied, and the next ``exchange`` with room on the disk writes the reply.
    ``withheld`` lists the sites not answered because they may not read (trust mode:
    no certificate in force); that is the policy working, not a failure.
    ``where`` names the mailbox in ``str(report)``.
    """

    imported: SyncReport
    replies: list[SyncReport] = field(default_factory=list)
    not_written: list[NotWritten] = field(default_factory=list)
    withheld: list[bytes] = field(default_factory=list)
    where: str = "the disk"

    @property
    def rounds(self) -> list[SyncReport]:
        """The import round, then each reply round that was written."""
        return [self.imported, *self.replies]

    @property
    def applied(self) -> int:
        return sum(r.applied for r in self.rounds)

    @property
    def ok(self) -> bool:
        """True when nothing was refused and every reply was written."""
        return not self.not_written and all(r.ok for r in self.rounds)

    def __str__(self) -> str:
        lines = [f"imported from {self.where}: {self.applied} changes applied"]
        lines += [f"reply written: {r}" for r in self.replies]
        lines += [
            f"reply to {n.peer.hex()[:12]} NOT written: {n.reason} The import is kept; "
            "free space on the disk and run the exchange again to write the reply."
            for n in self.not_written
        ]
        lines += [
            f"no reply to {k.hex()[:12]}: not certified to read here (trust mode)"
            for k in self.withheld
        ]
        return "\n".join(lines)


def _reply_to(
    replica: Replica, peers: Sequence[SiteRef], senders: Collection[bytes]
) -> list[bytes]:
    """The sites a stop answers: those named, then those it received bundles from."""
    targets = [key_of(p) for p in peers]
    targets += sorted(s for s in senders if s not in targets and s != replica.id)
    return targets


def _readers(replica: Replica, targets: list[bytes], report: ExchangeReport) -> list[bytes]:
    """``targets`` that may read; in trust mode the others go to ``report.withheld``."""
    readers = [t for t in targets if may_receive(replica, t)]
    report.withheld += [t for t in targets if t not in readers]
    return readers


def exchange(
    replica: Replica,
    mount: str | os.PathLike[str],
    peers: Sequence[SiteRef] = (),
    **options: Any,
) -> ExchangeReport:
    """The courier's stop at one site: import, then write for the return trip.

    Imports every bundle on the disk meant for ``replica``, then runs a round for each
    site in ``peers``, each site it received bundles from, and each site whose manifest
    is still waiting in this replica's directory (mail not answered yet, from a site
    this replica has heard from), so each finds what it lacks and this replica's
    receipt on the disk. A reply that cannot be written (a full disk) is reported in
    ``ExchangeReport.not_written`` and the other replies are still tried; the import
    stands. ``options`` go to ``DiskTransport``.
    """
    inbound = open_transport(mount, replica.id, kind="disk", **options)
    report = ExchangeReport(sync(replica, inbound, push=False))
    targets = _reply_to(replica, peers, inbound.senders)
    waiting = inbound.manifest_senders - set(targets) - {replica.id}
    if waiting:
        heard = replica.receipts()  # never write for a key only a manifest names
        targets += sorted(s for s in waiting if s in heard)
    for peer in _readers(replica, targets, report):
        try:
            with open_transport(mount, replica.id, peer, kind="disk", **options) as transport:
                report.replies.append(sync(replica, transport))
        except TransportError as exc:
            report.not_written.append(NotWritten(peer, str(exc)))
            continue
        inbound.answered(peer)
    return report


def exchange_folder(
    replica: Replica,
    folder: str | os.PathLike[str],
    peers: Sequence[SiteRef] = (),
    *,
    may_reply: Callable[[], bool] | None = None,
    **options: Any,
) -> ExchangeReport:
    """A stop at a shared folder: take what is left there for ``replica``, then leave
    for each site in ``peers`` and each site it received bundles from what that site
    lacks, and this replica's receipt.

    ``may_reply`` is asked once, after the import: False leaves nothing in the folder
    (the command line holds back a restored site's replies until a peer has answered).
    ``options`` go to ``FolderTransport`` (``encrypt=True`` seals each reply to its
    site). A write that fails ends the stop with ``TransportError``; what was imported
    stays applied, and the next stop carries on.
    """
    with open_transport(folder, replica.id, kind="folder", **options) as inbound:
        report = ExchangeReport(sync(replica, inbound, push=False), where="the folder")
    if may_reply is not None and not may_reply():
        return report
    for peer in _readers(replica, _reply_to(replica, peers, inbound.senders), report):
        with open_transport(folder, replica.id, peer, kind="folder", **options) as transport:
            report.replies.append(sync(replica, transport))
    return report
