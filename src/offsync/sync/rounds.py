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
receipts it carries are bounded by what the peer needs (docs/spec.md §6). A refused bundle is reported, set aside through the transport and
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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..bundle import BundleHeader, peek_header
from ..errors import PeerRefusedError, RemoteDataError, TransportError
from ..knowledge import Knowledge
from ..lane import LaneReport
from ..replica import ApplyReport, Replica
from ..segment import hash32
from ..transports.base import Refused, Transport
from .blobs import sync_blobs
from .mailblobs import mail_blobs
from .readers import may_receive

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
) -> SyncReport:
    """Run one round: receive and apply what the peer offers, learn what it holds, send
    what it lacks; if anything was sent, receive once more (see below)."""
    report = SyncReport(peer=transport.peer)
    try:
        _round(replica, transport, report, max_bytes, pull, push)
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
            report.blobs = lane = sync_blobs(replica, peer, push=push, pull=pull)
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
) -> None:
    asked = replica.knowledge()
    allowed = pull and _pull(replica, transport, report)
    if push and not may_receive(replica, transport.peer):
        report.peer = transport.peer
        report.withheld = True
        push = False
    if push:
        peer = transport.peer
        # A pull answer carries the peer's fresh receipt, bounded by what we stated we
        # hold: asking for its knowledge again adds nothing (over HTTP it would move a
        # receipt of every origin the server holds).
        # An HTTP pull answered with no bundle says our last receipt of it is current
        # (spec-v3 §15.3): as good as an answer; /knowledge's narrower receipt would
        # replace the one we pass on to the sites behind us.
        answered = transport.receipt_in_pull and (
            any(r.sender == peer for r in report.received)
            or bool(getattr(transport, "receipt_current", False))
        )
        theirs = Knowledge() if answered else transport.knowledge() or Knowledge()
        report.peer = peer
        if peer is not None:
            # The union of what its receipts said: one may be restricted (spec §6).
            theirs = theirs | replica.peer_knowledge(peer).get(peer, Knowledge())
        report.peer_knowledge = theirs
        bundles = replica.iter_pack(
            theirs,
            max_bytes=max_bytes or transport.max_bundle_bytes,
            recipient=transport.recipient,
            receiver=peer,
            quiet=peer is not None,
            always=peer is None,
        )
        sent: list[BundleHeader] = []
        report.sent_bundles = transport.send(_counted(bundles, report, sent))
        if peer is not None and sent:  # taken by the transport: not said again
            replica.told(peer, sent)
    if allowed and (report.sent_changes or not asked <= replica.knowledge()):
        # A live peer (HTTP) answers this second pull with a receipt that covers what
        # we just pushed, so one round tells the origin it arrived. For a mailbox it is
        # one more look at an inbox that is almost always empty. Knowledge that shrank
        # in the first pull: the peer's receipt claims own seqs this site holds only
        # unsealed (restored from a backup taken before it sealed them), which its
        # knowledge now leaves out, so this pull brings them back as the peer holds them.
        _pull(replica, transport, report)


def _record_receipts(replica: Replica, transport: Transport, report: SyncReport) -> None:
    """Record the receipts the transport learnt outside bundles (``Transport.receipts``):
    an upload answered with the server's receipt shows as delivered without a pull."""
    for receipt in transport.receipts():
        try:
            if replica.record_receipt(receipt):
                report.receipts += 1
        except RemoteDataError:
            continue  # a receipt that does not verify tells us nothing


def _pull(replica: Replica, transport: Transport, report: SyncReport) -> bool:
    """Receive and apply; False if the peer refused to let us pull (reported)."""
    try:
        _take(replica, transport, report)
    except PeerRefusedError as exc:
        # Refused reading (HTTP 401/403/...): report it; pushing may still be allowed.
        source = getattr(transport, "url", None) or repr(transport)
        report.refused.append(Refused(f"pull from {source}", str(exc)))
        return False
    finally:
        report.peer = report.peer or transport.peer
    return True


def _take(replica: Replica, transport: Transport, report: SyncReport) -> None:
    """Receive and apply what ``transport`` offers."""
    for item in transport.receive(replica.knowledge()):
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
        transport.acknowledge(item)


def _counted(
    bundles: Iterable[bytes], report: SyncReport, headers: list[BundleHeader]
) -> Iterator[bytes]:
    for bundle in bundles:
        header = peek_header(bundle)  # made just now by the replica: no need to verify
        headers.append(header)
        report.sent_changes += header.ranges.count()
        report.sent_bytes += len(bundle)
        yield bundle
