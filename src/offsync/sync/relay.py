"""Carrying bundles on unopened: how a relay passes on bundles sealed for someone else.

``forward(source, target)`` carries bundles from one transport to another as they are,
without opening them. A bundle the next hop refuses is set aside through the source
with the reason and the rest go on; a failure that may clear stops the pass and loses
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PeerRefusedError
from ..knowledge import Knowledge
from ..transports.base import Refused, Transport
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

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.refused

    def __str__(self) -> str:
        return f"forwarded {len(self.forwarded)} bundles, refused {len(self.refused)}"


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
    return report
