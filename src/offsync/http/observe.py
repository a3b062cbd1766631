"""What the server tells its operator: log events (logger ``offsync.server``) and, when
they are on, Prometheus metrics (``offsync.http.metrics``).

Routes and the app call one method of ``Observer`` per thing that happened; it decides
what is logged at which level and what is counted, in one place. Events name sites by
their key's short id and, where one is known, their label (a certificate's in trust
mode, else the app's ``site_labels``); never a record's key or value (``offsync.logs``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from ..logs import event, short_key
from ..replica import ApplyReport, Replica
from .metrics import Metrics
from .refusals import Refusal

__all__ = ["LOGGER", "Observer"]

LOGGER = logging.getLogger("offsync.server")


class Observer:
    """The server's log events and metrics (``metrics`` None: logs only)."""

    def __init__(
        self,
        replica: Replica,
        *,
        metrics: Metrics | None = None,
        site_labels: Mapping[bytes, str] | None = None,
    ) -> None:
        self.replica = replica
        self.metrics = metrics
        self.site_labels = dict(site_labels or {})

    # -- who -----------------------------------------------------------------------------

    def label(self, key: bytes) -> str | None:
        """The label of a known site: certified (trust mode), else given to the app;
        None for any other key."""
        trust = self.replica.trust_store
        if trust is not None:
            cert = trust.certificates.get(key)
            if cert is not None:
                return cert.label
        return self.site_labels.get(key)

    def _who(self, key: bytes) -> dict[str, object]:
        return {"site": short_key(key), "label": self.label(key) or None}

    def contact(self, key: bytes) -> None:
        """A site delivered a bundle it signed, or pulled with a signed request."""
        if self.metrics is None:
            return
        now = time.time()
        label = self.label(key)
        if label is None:
            self.metrics.unknown_contact.set(now)
        else:
            self.metrics.last_contact.labels(short_key(key), label).set(now)

    # -- uploads -------------------------------------------------------------------------

    def received(self, size: int) -> None:
        if self.metrics is not None and size:
            self.metrics.bytes_received.inc(size)

    def applied(self, report: ApplyReport, size: int, seconds: float) -> None:
        event(
            LOGGER,
            logging.INFO,
            "upload.applied",
            **self._who(report.sender),
            bundle=report.bundle_id.hex(),
            bytes=size,
            applied=report.applied,
            duplicates=report.duplicates,
            quarantined=report.quarantined,
            conflicts=len(report.conflicts),
            ms=round(seconds * 1000, 1),
        )
        self.contact(report.sender)
        m = self.metrics
        if m is None:
            return
        m.bundles_received.labels("applied").inc()
        m.changes.labels("applied").inc(report.applied)
        m.changes.labels("duplicate").inc(report.duplicates)
        m.changes.labels("quarantined").inc(report.quarantined)
        m.apply_seconds.observe(seconds)

    def duplicate(self, bundle_id: str) -> None:
        """An upload of a bundle this process applied recently: answered from memory."""
        event(LOGGER, logging.INFO, "upload.duplicate", bundle=bundle_id)
        if self.metrics is not None:
            self.metrics.bundles_received.labels("duplicate").inc()

    def chunk(self, bundle_id: str, received: int, total: int) -> None:
        event(
            LOGGER, logging.DEBUG, "upload.chunk", bundle=bundle_id, received=received, total=total
        )

    def disconnected(self, bundle_id: str) -> None:
        event(LOGGER, logging.INFO, "upload.disconnected", bundle=bundle_id)

    # -- pulls ---------------------------------------------------------------------------

    def pulled(self, site: bytes, bundles: int, size: int, *, complete: bool) -> None:
        if self.metrics is not None:
            self.metrics.pulls.labels("bundles" if bundles else "idle").inc()
        event(
            LOGGER,
            logging.INFO,
            "pull.served",
            **self._who(site),
            bundles=bundles,
            bytes=size,
            complete=complete,
        )

    def digests_differ(self, site: bytes) -> None:
        """A pull's group digests differ from ours: answered 409 with the groups."""
        if self.metrics is not None:
            self.metrics.pulls.labels("groups").inc()
        event(LOGGER, logging.INFO, "pull.groups", **self._who(site))

    def sent(self, size: int) -> None:
        if self.metrics is not None:
            self.metrics.bundles_sent.inc()
            self.metrics.bytes_sent.inc(size)

    def pull_broken(self, site: bytes, exc: BaseException) -> None:
        """A pull answer that stopped after it began: its status was sent already."""
        event(
            LOGGER,
            logging.ERROR,
            "pull.broken",
            **self._who(site),
            error=type(exc).__name__,
            reason=str(exc),
        )

    # -- refusals and failures -----------------------------------------------------------

    def refused(self, refusal: Refusal, method: str, path: str, site: bytes | None) -> None:
        """Any error answer: a 503 or a not-ready store (warning), a full disk (error), a
        refused request (warning; a resumable upload's 409 is routine: info)."""
        status = refusal.status
        if status == 507:
            level, name = logging.ERROR, "storage.full"
        elif status == 503:
            level, name = logging.WARNING, "busy"
        else:
            level = logging.INFO if status == 409 else logging.WARNING
            name = "refused"
        who = self._who(site) if site is not None else {}
        event(
            LOGGER,
            level,
            name,
            status=status,
            error=refusal.body.error,
            reason=refusal.body.reason,
            method=method,
            path=path,
            **who,
        )
        if self.metrics is not None:
            self.metrics.refused.labels(str(status), refusal.body.error).inc()

    def failed(self, exc: BaseException, method: str, path: str) -> None:
        """A bug of the server's (500); uvicorn logs the traceback."""
        event(
            LOGGER,
            logging.ERROR,
            "server.error",
            status=500,
            error=type(exc).__name__,
            method=method,
            path=path,
        )

    def not_ready(self, exc: BaseException) -> None:
        event(LOGGER, logging.WARNING, "store.unready", error=type(exc).__name__, reason=str(exc))

    # -- slots ---------------------------------------------------------------------------

    def in_flight(self, value: int) -> None:
        if self.metrics is not None:
            self.metrics.in_flight.set(value)

    def waiting(self, value: int) -> None:
        if self.metrics is not None:
            self.metrics.waiting.set(value)

    def started(self, max_in_flight: int, **settings: object) -> None:
        event(
            LOGGER,
            logging.INFO,
            "server.ready",
            site=short_key(self.replica.id),
            label=self.replica.identity.label or None,
            mode="trust" if self.replica.trust_store is not None else "open",
            metrics=self.metrics is not None,
            max_in_flight=max_in_flight,
            **settings,
        )
        if self.metrics is not None:
            self.metrics.max_in_flight.set(max_in_flight)
