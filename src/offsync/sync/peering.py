"""A centre's rounds with the other centres, on a schedule (``offsync serve --peer``).

Two or more centres of one deployment sync with each other as peers, each an ordinary
``offsync.sync`` round over HTTP: what a site delivered to one centre reaches the others
at the next round, and every receipt travels with it. ``Peering(replica, urls)`` runs,
every ``every`` seconds, one round with each peer in turn, in one background thread:

* **bounded**: one round per peer per period, never two at once; each round's requests
  have their timeouts and at most ``max_retries`` retries (fewer than a site's: the
  next period comes soon), and a period's rounds start only when the last one ended;
* **idempotent**: a round sends what the peer lacks by its receipts and applies what
  it offers; repeating one, or two centres syncing with each other at the same time,
  costs only duplicates, which change nothing;
* **observable**: each round is logged (``peer.round``, or ``peer.failed`` with the
  reason) on the logger ``offsync.peering``, and counted in the server's metrics when
  it has them (``offsync_peer_rounds_total{peer,outcome}``,
  ``offsync_peer_last_success_timestamp_seconds{peer}``; ``peer`` is a configured
  URL, so the series are bounded by the configuration).

A peer that is down is tried again the next period; nothing else waits on it. The
replica is shared with the server (its lock serialises them) or, for a PostgreSQL
centre of several workers, is one more connection to the shared store.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import OffsyncError, UsageError
from ..logs import event, short_key
from ..replica import Replica
from ..transports.base import Transport
from ..transports.locations import open_transport, parse_location
from .rounds import SyncReport, sync

__all__ = ["Peering", "PeeringRound"]

LOGGER = logging.getLogger("offsync.peering")
#: Default seconds between two periods of rounds.
DEFAULT_EVERY = 60.0


def _shown(url: str) -> str:
    """A URL as logs and metric labels show it: without user name or password."""
    return re.sub(r"//[^/@]*@", "//", url)


@dataclass(frozen=True, slots=True)
class PeeringRound:
    """One round with one peer: its report, or why it failed."""

    peer: str
    report: SyncReport | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.report is not None


class Peering:
    """Rounds with ``peers`` (URLs of the other centres) every ``every`` seconds.

    ``server_keys`` pins a peer's key by URL (answers signed by another key are refused;
    without one, the key of its first receipt is kept for the life of this object).
    ``metrics`` is an ``offsync.http.metrics.Metrics`` to count rounds in. ``options``
    go to each peer's ``HTTPTransport`` (``timeout``, ``encrypt``...).
    """

    def __init__(
        self,
        replica: Replica,
        peers: Sequence[str],
        *,
        every: float = DEFAULT_EVERY,
        server_keys: Mapping[str, bytes] | None = None,
        max_retries: int = 2,
        metrics: Any = None,
        **options: Any,
    ) -> None:
        if every <= 0:
            raise UsageError("the peering period must be positive (seconds)")
        for url in peers:
            if parse_location(url).kind != "http":
                raise UsageError(f"a peer centre is an http(s) URL, not {url}")
        if len(set(peers)) != len(peers):
            raise UsageError("a peer centre is named twice")
        self.replica = replica
        self.peers = list(peers)
        self.every = every
        self.metrics = metrics
        self._keys = dict(server_keys or {})
        self._options = {"max_retries": max_retries, **options}
        self._transports: dict[str, Transport] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Rounds run so far (all periods), for tests and status.
        self.rounds = 0

    def _transport(self, url: str) -> Transport:
        if url not in self._transports:
            self._transports[url] = open_transport(
                url, self.replica, self._keys.get(url), **self._options
            )
        return self._transports[url]

    def round_with(self, url: str) -> PeeringRound:
        """One round with the peer at ``url``; a failure is logged and returned."""
        shown = _shown(url)
        try:
            report = sync(self.replica, self._transport(url))
        except OffsyncError as exc:  # the peer, its link, or what it sent
            event(
                LOGGER,
                logging.WARNING,
                "peer.failed",
                peer=shown,
                error=type(exc).__name__,
                reason=str(exc),
            )
            self._count(shown, "failed")
            return PeeringRound(shown, None, f"{type(exc).__name__}: {exc}")
        event(
            LOGGER,
            logging.INFO,
            "peer.round",
            peer=shown,
            key=short_key(report.peer) if report.peer else None,
            applied=report.applied,
            duplicates=report.duplicates,
            quarantined=report.quarantined,
            sent_changes=report.sent_changes,
            sent_bundles=report.sent_bundles,
            refused=len(report.refused),
        )
        self._count(shown, "ok" if report.ok else "refused")
        return PeeringRound(shown, report)

    def _count(self, peer: str, outcome: str) -> None:
        self.rounds += 1
        if self.metrics is None:
            return
        self.metrics.peer_rounds.labels(peer=peer, outcome=outcome).inc()
        if outcome != "failed":
            self.metrics.peer_last_success.labels(peer=peer).set(time.time())

    def run_once(self) -> list[PeeringRound]:
        """One period: a round with each peer in turn."""
        return self._period(lambda: False)

    def _period(self, stopped: Callable[[], bool]) -> list[PeeringRound]:
        done = []
        for url in self.peers:
            if stopped():
                break
            done.append(self.round_with(url))
        return done

    def _loop(self, wait: Callable[[float], bool]) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self._period(self._stop.is_set)
            if wait(max(0.0, self.every - (time.monotonic() - started))):
                return

    def start(self) -> Peering:
        """Run periods in a background thread until ``stop``; the first one at once."""
        if self._thread is not None:
            raise UsageError("peering is running already")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop.wait,), name="offsync-peering", daemon=True
        )
        self._thread.start()
        event(LOGGER, logging.INFO, "peering.started", peers=len(self.peers), every=self.every)
        return self

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop after the round in progress; close the peers' connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    def __enter__(self) -> Peering:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
