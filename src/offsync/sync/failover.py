"""One sync round with whichever of several centres answers (docs/scale.md, "Several
centres").

A deployment may run two or more centres that sync with each other as peers. A site is
given all their addresses; ``sync_any(replica, transports)`` runs one round
(``offsync.sync``) with the first that answers, in the order given, and says which one
took it. What moves a round on to the next centre, and what does not:

* **Fail over** on a ``TransportError`` that is about *that* centre: its link is down
  or times out, it answers 5xx/503 beyond its retries, its disk is full (507), or
  something else answers at its address (``UnverifiedAnswerError``: a wrong key, a
  portal). Another centre may well answer.
* **Never fail over** on a clear refusal (``PeerRefusedError``: a bundle refused as
  malformed, too large, badly signed). The same bytes would be refused by every
  centre, and sending them around only hides the problem; the refusal is raised.
  A ``RemoteDataError`` (what a centre sent does not verify) is reported by the round
  as usual and does not end it.

Failing over half-way through a round is safe: what the first centre sent was applied
and stays applied, its receipts are recorded (``offsync.sync`` records them even when
the round fails), and the next centre is asked afresh what it lacks. Receipts of any
centre count for delivery (``offsync.delivery.Delivery`` with every centre's key).
When every centre fails, ``RetryableTransportError`` names each one and its reason:
the site keeps working and tries again later, or sends by disk.

The caller chooses the order (``prefer_last`` puts a centre that answered last time
first, so a centre that is down for months costs one timeout per round only once it
stops being first). Transports are opened by the caller (``open_transport``) and are
not closed here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import PeerRefusedError, RetryableTransportError, TransportError, UsageError
from ..logs import event
from ..replica import Replica
from ..transports.base import Transport
from .rounds import SyncReport, sync

__all__ = ["FailoverReport", "Failure", "prefer_last", "sync_any"]

LOGGER = logging.getLogger("offsync.sync")


@dataclass(frozen=True, slots=True)
class Failure:
    """A centre that did not take the round, and why (an error class and its words)."""

    where: str
    error: str
    reason: str


@dataclass(slots=True)
class FailoverReport:
    """The round with the centre that took it, and the centres tried before it."""

    report: SyncReport
    #: Index (in the order given to ``sync_any``) and name of the centre that answered.
    index: int
    where: str
    failures: list[Failure] = field(default_factory=list)


def where_of(transport: Transport) -> str:
    """A transport's address for reports: its URL (HTTP), folder, or repr."""
    for name in ("url", "root", "mount"):
        value = getattr(transport, name, None)
        if value is not None:
            return str(value)
    return repr(transport)


def prefer_last(addresses: Sequence[str], last: str | None) -> list[int]:
    """The order to try ``addresses`` in: ``last`` (the one that answered last time)
    first if it is among them, then the others as given."""
    order = list(range(len(addresses)))
    if last in addresses:
        first = addresses.index(last)
        order.remove(first)
        order.insert(0, first)
    return order


def sync_any(
    replica: Replica,
    transports: Sequence[Transport],
    *,
    max_bytes: int | None = None,
    pull: bool = True,
    push: bool = True,
    max_bytes_per_round: int | None = None,
) -> FailoverReport:
    """One round with the first of ``transports`` that answers (see the module);
    ``max_bytes_per_round``: the round's byte budget, as ``sync`` takes it."""
    if not transports:
        raise UsageError("sync_any needs at least one transport (a centre's address)")
    failures: list[Failure] = []
    for index, transport in enumerate(transports):
        where = where_of(transport)
        try:
            report = sync(
                replica,
                transport,
                max_bytes=max_bytes,
                pull=pull,
                push=push,
                max_bytes_per_round=max_bytes_per_round,
            )
        except PeerRefusedError:
            raise  # the same bytes would be refused anywhere
        except TransportError as exc:
            failure = Failure(where, type(exc).__name__, str(exc))
            failures.append(failure)
            event(
                LOGGER,
                logging.WARNING,
                "centre.failover",
                centre=where,
                error=failure.error,
                reason=failure.reason,
                left=len(transports) - index - 1,
            )
            continue
        if failures:
            event(LOGGER, logging.INFO, "centre.took", centre=where, after=len(failures))
        return FailoverReport(report, index, where, failures)
    raise RetryableTransportError(
        "no centre answered: "
        + "; ".join(f"{f.where}: {f.error}: {f.reason}" for f in failures)
        + ". Nothing is lost: sync again later, or send by disk"
    )
