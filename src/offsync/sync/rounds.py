"""One sync round over any transport, and the report it returns.

``sync(replica, transport)`` takes what the other side offers, learns what it holds,
and sends exactly what it lacks, in bundles no larger than the transport carries.
Pulling first means the bundles we send carry a receipt that covers what we just
applied. A live peer (HTTP) answers each upload with its fresh receipt; the round
records those in the replica (``Transport.receipts``, ``Replica.record_receipt``), so
a push-only round already shows what the peer holds. When the round sent changes it
pulls once more, which brings a mailbox peer's news too. A round sends a bundle only
when it has changes to send or something new to say (a receipt the peer has not had
from us: ``Replica.iter_pack(quiet=True)``), so an idle round uploads nothing; the
receipts it carries are bounded by what the peer needs (docs/spec.md §8.2). A refused bundle is reported, set aside through the transport and
never applied; it does not end the round. Nor does a peer that refuses to let us pull
(``PeerRefusedError`` at the pull: a certificate it does not know yet, say): that is
reported and the push goes on, so what this site wrote still gets delivered. Other
transport failures (``TransportError``) end the round: what was applied stays
applied, and the next round picks up where this one stopped, because applying a bundle
twice changes nothing.

After the records, a transport that carries blobs (``Transport.blob_peer``: HTTP, a
loopback; ``Transport.blob_mailbox``: a folder, a disk) runs the blob lane
(``offsync.sync.blobs``, ``offsync.sync.mailblobs``): records never wait for it, a
refused blob is reported and the others go on, and a broken link there is reported
(``Refused("blobs", ...)``) rather than raised, since the records already arrived.

A round may stop at a byte budget (``max_bytes_per_round``, docs/spec.md §9.5): each
direction moves about that many bundle bytes, in the packer's priority order (births
and doses before bulk corrections, as ``Replica(priorities=...)`` says), and the rest
goes next round (``SyncReport.more``). Knowledge stays exact: each side states what
arrived, so the next round sends exactly what is still missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..bundle import BundleHeader, peek_header
from ..errors import PeerRefusedError, RemoteDataError, TransportError, UsageError
from ..knowledge import Knowledge
from ..lane import LaneReport
from ..replica import ApplyReport, Replica
from ..scope import Scope
from ..segment import hash32
from ..transports.base import Refused, Transport
from .blobs import sync_blobs
from .mailblobs import mail_blobs
from .readers import receiver_scope

__all__ = ["SyncReport", "bundle_name", "sync"]


@dataclass(slots=True)
class SyncReport:
    """What one round did, for logs and for the clerk's screen."""

    peer: bytes | None = None
    received: list[ApplyReport] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    sent_bundles: int = 0
    sent_changes: int = 0
    sent_bytes: int = 0
    #: What we believed the peer held when packing (its receipts, plus what it said).
    peer_knowledge: Knowledge = field(default_factory=Knowledge)
    #: Receipts the transport learnt outside bundles that told us something new.
    receipts: int = 0
    #: What the blob lane moved after the records (None: the transport carries none).
    blobs: LaneReport | None = None
    #: Nothing was sent: in trust mode the peer may not read (not certified now, or not
    #: named, so whoever reads the folder or disk is unknown).
    withheld: bool = False
    #: The round stopped at its byte budget (``max_bytes_per_round``): more may be
    #: waiting on one side or the other, for the next round.
    more: bool = False
    #: The bytes of the bundles received and applied (``sent_bytes``: those sent).
    received_bytes: int = 0

    @property
    def applied(self) -> int:
        return sum(r.applied for r in self.received)

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.received)

    @property
    def quarantined(self) -> int:
        return sum(r.quarantined for r in self.received)

    @property
    def conflicts(self) -> list[tuple[str, str]]:
        return [c for r in self.received for c in r.conflicts]

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.refused

    def __str__(self) -> str:
        peer = self.peer.hex()[:12] if self.peer else "?"
        return (
            f"sync with {peer}: received {len(self.received)} bundles "
            f"({self.applied} changes applied, {self.duplicates} duplicates, "
            f"{self.quarantined} quarantined), refused {len(self.refused)}, "
            f"sent {self.sent_bundles} bundles ({self.sent_changes} changes, "
            f"{self.sent_bytes} bytes)"
        )


def bundle_name(bundle: bytes) -> str:
    """A bundle's id in hex, as it appears in reports and file names."""
    return hash32(bundle).hex()


def sync(
    replica: Replica,
    transport: Transport,
    *,
    max_bytes: int | None = None,
    pull: bool = True,
    push: bool = True,
    max_bytes_per_round: int | None = None,
) -> SyncReport:
    """Run one round: receive and apply what the peer offers, learn what it holds, send
    what it lacks; if anything was sent, receive once more (see below).

    ``max_bytes_per_round``: a byte budget for each direction. Sending stops before the
    bundle that would go over it (bundles are then packed no larger than it; the first
    always goes, so every round makes progress); receiving stops after the bundle that
    reaches it (a bundle read is applied, never wasted). What was left is sent, in
    priority order, by the next round; ``SyncReport.more`` says so."""
    if max_bytes_per_round is not None and max_bytes_per_round <= 0:
        raise UsageError("max_bytes_per_round must be positive (None: no budget)")
    report = SyncReport(peer=transport.peer)
    try:
        _round(replica, transport, report, max_bytes, pull, push, max_bytes_per_round)
    finally:
        # Also after a failed round: what the peer acknowledged before it is known.
        _record_receipts(replica, transport, report)
    _lane(replica, transport, report, pull=pull, push=push)
    return report


def _lane(
    replica: Replica, transport: Transport, report: SyncReport, pull: bool, push: bool
) -> None:
    """Blobs after records (which never wait for them): a refused blob is reported and
    the lane goes on; a broken link ends the lane, reported, and the next round resumes
    each blob from the offset its receiver holds."""
    try:
        box = transport.blob_mailbox()
        if box is not None:
            report.blobs = lane = mail_blobs(replica, box, push=push, pull=pull)
        else:
            peer = transport.blob_peer()
            if peer is None:
                return
            scope = receiver_scope(replica, transport.peer) if push else Scope.nothing()
            report.blobs = lane = sync_blobs(
                replica, peer, push=push and bool(scope), pull=pull, scope=scope
            )
    except TransportError as exc:
        report.refused.append(Refused("blobs", f"{type(exc).__name__}: {exc}"))
        return
    report.refused.extend(Refused(f"blob {h[:16]}", why) for h, why in lane.refused)


def _round(
    replica: Replica,
    transport: Transport,
    report: SyncReport,
    max_bytes: int | None,
    pull: bool,
    push: bool,
    budget: int | None = None,
) -> None:
    asked = replica.knowledge()
    relays = replica.relays_for
    if relays and hasattr(transport, "relays_for"):  # a pull says whom we relay for (HTTP)
        transport.relays_for = tuple(sorted({*transport.relays_for, *relays}))
    allowed = pull and _pull(replica, transport, report, budget)
    # Only the peer's read scope travels to it (everything in open mode; nothing for a
    # key no authority certified now): docs/operations.md, "Who may read".
    scope = receiver_scope(replica, transport.peer) if push else Scope.nothing()
    if push and not scope:
        report.peer = transport.peer
        report.withheld = True
        push = False
    if push:
        peer = transport.peer
        # A pull answer carries the peer's fresh receipt, bounded by what we stated we
        # hold: asking for its knowledge again adds nothing (over HTTP it would move a
        # receipt of every origin the server holds).
        # An HTTP pull answered with no bundle says our last receipt of it is current
        # (docs/spec.md §15.3): as good as an answer; /knowledge's narrower receipt would
        # replace the one we pass on to the sites behind us.
        answered = transport.receipt_in_pull and (
            any(r.sender == peer for r in report.received)
            or bool(getattr(transport, "receipt_current", False))
        )
        theirs = Knowledge() if answered else transport.knowledge() or Knowledge()
        report.peer = peer
        if peer is not None:
            # The union of what its receipts said: one may be restricted (docs/spec.md §8.1).
            theirs = theirs | replica.peer_knowledge(peer).get(peer, Knowledge())
        report.peer_knowledge = theirs
        size = max_bytes or transport.max_bundle_bytes
        bundles = replica.iter_pack(
            theirs,
            max_bytes=size if budget is None else min(size, budget),
            recipient=transport.recipient,
            receiver=peer,
            quiet=peer is not None,
            always=peer is None,
            scope=None if scope.is_everything else scope,
        )
        sent: list[BundleHeader] = []
        report.sent_bundles = transport.send(_counted(bundles, report, sent, budget))
        if peer is not None and sent:  # taken by the transport: not said again
            replica.told(peer, sent)
    spent = budget is not None and report.received_bytes >= budget
    if allowed and not spent and (report.sent_changes or not asked <= replica.knowledge()):
        # A live peer (HTTP) answers this second pull with a receipt that covers what
        # we just pushed, so one round tells the origin it arrived. For a mailbox it is
        # one more look at an inbox that is almost always empty. Knowledge that shrank
        # in the first pull: the peer's receipt claims own seqs this site holds only
        # unsealed (restored from a backup taken before it sealed them), which its
        # knowledge now leaves out, so this pull brings them back as the peer holds them.
        _pull(replica, transport, report, budget)


def _record_receipts(replica: Replica, transport: Transport, report: SyncReport) -> None:
    """Record the receipts the transport learnt outside bundles (``Transport.receipts``):
    an upload answered with the server's receipt shows as delivered without a pull."""
    for receipt in transport.receipts():
        try:
            if replica.record_receipt(receipt):
                report.receipts += 1
        except RemoteDataError:
            continue  # a receipt that does not verify tells us nothing


def _pull(
    replica: Replica, transport: Transport, report: SyncReport, budget: int | None = None
) -> bool:
    """Receive and apply; False if the peer refused to let us pull (reported)."""
    try:
        _take(replica, transport, report, budget)
    except PeerRefusedError as exc:
        # Refused reading (HTTP 401/403/...): report it; pushing may still be allowed.
        source = getattr(transport, "url", None) or repr(transport)
        report.refused.append(Refused(f"pull from {source}", str(exc)))
        return False
    finally:
        report.peer = report.peer or transport.peer
    return True


def _take(
    replica: Replica, transport: Transport, report: SyncReport, budget: int | None = None
) -> None:
    """Receive and apply what ``transport`` offers, until ``budget`` bytes arrived."""
    items = transport.receive(replica.knowledge())
    try:
        _apply_all(replica, transport, report, items, budget)
    finally:
        close = getattr(items, "close", None)  # a pull answer left unread is closed
        if close is not None:
            close()


def _apply_all(
    replica: Replica,
    transport: Transport,
    report: SyncReport,
    items: Iterable[bytes | Refused],
    budget: int | None,
) -> None:
    for item in items:
        if isinstance(item, Refused):
            report.refused.append(item)
            continue
        try:
            applied = replica.apply(item)
        except RemoteDataError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            report.refused.append(Refused(bundle_name(item), reason))
            transport.reject(item, reason)
            continue
        report.received.append(applied)
        report.received_bytes += len(item)
        transport.acknowledge(item)
        if budget is not None and report.received_bytes >= budget:
            report.more = True  # what may be left waits for the next round
            return


def _counted(
    bundles: Iterator[bytes],
    report: SyncReport,
    headers: list[BundleHeader],
    budget: int | None = None,
) -> Iterator[bytes]:
    for bundle in bundles:
        if budget is not None and headers and report.sent_bytes + len(bundle) > budget:
            report.more = True  # the rest, in priority order, goes next round
            close = getattr(bundles, "close", None)
            if close is not None:
                close()
            return
        header = peek_header(bundle)  # made just now by the replica: no need to verify
        headers.append(header)
        report.sent_changes += header.ranges.count()
        report.sent_bytes += len(bundle)
        yield bundle
