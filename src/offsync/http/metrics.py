"""The server's Prometheus metrics (the ``metrics`` extra: ``prometheus-client``).

``Metrics`` holds every metric of one app; ``render`` is the answer to ``GET /metrics``.
Names and meanings are in docs/operations.md, "Metrics"; in short:

==========================================================  ===========================
``offsync_changes_total{outcome}``                          changes of applied bundles:
                                                            applied, duplicate,
                                                            quarantined
``offsync_refused_total{status,error}``                     refused requests (4xx, 503,
                                                            507) by status and error
``offsync_bundles_received_total{outcome}``                 uploads: applied, duplicate
``offsync_bundles_sent_total``, ``offsync_bytes_*_total``   pulls' bundles; body bytes
``offsync_pulls_total{answer}``                             pulls: bundles, idle (end
                                                            frame only), groups (409)
``offsync_in_flight``, ``offsync_max_in_flight``            slots taken, and their bound
``offsync_waiting``                                         requests waiting for a slot
``offsync_apply_seconds``                                   histogram of one apply
``offsync_site_last_contact_timestamp_seconds{site,label}`` per known site (below)
``offsync_unknown_site_last_contact_timestamp_seconds``     any other key, as one series
``offsync_peer_rounds_total{peer,outcome}``                rounds with the other centres
``offsync_peer_last_success_timestamp_seconds{peer}``       (``offsync serve --peer``)
==========================================================  ===========================

Cardinality is bounded by what the operator controls: a series per site exists only for
a *known* key, one certified by the trust store (trust mode) or named in the app's
``site_labels`` (``offsync serve``: the site's address book). Any other key, which
anyone can make, counts in the one unlabelled series; ``error`` takes offsync's error
class names and a few HTTP words, ``status`` the documented statuses.

Several worker processes (``offsync serve --postgres --workers N``) use
prometheus-client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set before the
workers start, each writes its values to files there and any worker's ``/metrics``
answers for all of them (counters and the histogram summed, ``in_flight`` summed over
live workers, last contacts the latest). ``serve`` makes and removes that directory.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["MULTIPROC_ENV", "Metrics", "available", "multiprocess_dir"]

#: prometheus-client's switch to multiprocess mode (read when it is first imported).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_APPLY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def available() -> bool:
    """Whether the metrics extra is installed."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def multiprocess_dir() -> str | None:
    """The multiprocess directory in force in this process, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.multiprocess
        import prometheus_client.values
    except ImportError as exc:
        raise ImportError(
            "metrics need prometheus-client: install the metrics extra "
            "(pip install 'offsync[metrics]')"
        ) from exc
    return prometheus_client


def _sweep_dead_workers(path: str) -> None:
    """Drop the live-gauge files of worker processes that are gone (one that crashed
    never said so), so that ``in_flight`` counts live workers only."""
    multiprocess = _prometheus().multiprocess
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        found = re.search(r"_(\d+)\.db$", name)
        if found is None:
            continue
        pid = int(found.group(1))
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
        except PermissionError:  # alive, someone else's
            pass


class _Make:
    """Makes the metrics of one registry (None: the multiprocess files)."""

    def __init__(self, pc: Any, registry: Any) -> None:
        self._pc, self._registry = pc, registry

    def counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Any:
        return self._pc.Counter(name, doc, labels, registry=self._registry)

    def gauge(self, name: str, doc: str, mode: str, labels: Sequence[str] = ()) -> Any:
        """``mode``: how multiprocess mode joins the workers' values (livesum, max)."""
        return self._pc.Gauge(name, doc, labels, registry=self._registry, multiprocess_mode=mode)

    def histogram(self, name: str, doc: str, buckets: Sequence[float]) -> Any:
        return self._pc.Histogram(name, doc, registry=self._registry, buckets=buckets)


class Metrics:
    """The metrics of one app (in multiprocess mode: of every worker on the directory)."""

    def __init__(self) -> None:
        pc = _prometheus()
        self._pc = pc
        # The mode prometheus-client chose when it was first imported in this process.
        chosen = pc.values.ValueClass is not pc.values.MutexValue
        self.multiprocess = multiprocess_dir() if chosen else None
        if self.multiprocess is not None:
            _sweep_dead_workers(self.multiprocess)
            self._register_exit(pc)
        # One registry per app, so that several apps in one process do not collide; in
        # multiprocess mode values go to files and a scrape collects them afresh.
        self.registry = None if self.multiprocess else pc.CollectorRegistry()
        # Made in this order, which is the order of the exposition.
        make = _Make(pc, self.registry)
        self._traffic(make)
        self._load(make)
        self._contacts(make)

    def _traffic(self, make: _Make) -> None:
        """What came in and went out: changes, refusals, bundles, bytes."""
        self.changes = make.counter(
            "offsync_changes",
            "Changes in applied bundles, by outcome (applied, duplicate, quarantined)",
            ["outcome"],
        )
        self.refused = make.counter(
            "offsync_refused",
            "Requests refused: 4xx, 503 (busy or not ready) and 507 (storage full)",
            ["status", "error"],
        )
        self.bundles_received = make.counter(
            "offsync_bundles_received",
            "Uploaded bundles: applied now, or recognised as applied before (duplicate)",
            ["outcome"],
        )
        self.bundles_sent = make.counter("offsync_bundles_sent", "Bundles sent in pull answers")
        self.bytes_received = make.counter("offsync_bytes_received", "Upload body bytes received")
        self.bytes_sent = make.counter("offsync_bytes_sent", "Bundle bytes sent in pull answers")
        self.pulls = make.counter(
            "offsync_pulls",
            "Pull answers: bundles, idle (nothing new: the end frame alone), groups (409)",
            ["answer"],
        )

    def _load(self, make: _Make) -> None:
        """How busy the server is: slots, waits, the time of an apply."""
        self.in_flight = make.gauge(
            "offsync_in_flight", "Uploads, applies and pulls running now", "livesum"
        )
        self.waiting = make.gauge(
            "offsync_waiting",
            "Requests waiting for a slot now (beyond max_waiting, or after admission_wait: 503)",
            "livesum",
        )
        self.max_in_flight = make.gauge(
            "offsync_max_in_flight",
            "The bound on in_flight (beyond it, requests wait: offsync_waiting)",
            "livesum",
        )
        self.apply_seconds = make.histogram(
            "offsync_apply_seconds",
            "Time to verify and apply one uploaded bundle (holding the replica)",
            _APPLY_BUCKETS,
        )

    def _contacts(self, make: _Make) -> None:
        """Who was heard from, and when: known sites, peer centres, any other key.
        Labelled only by what the operator controls (the module's docstring)."""
        self.last_contact = make.gauge(
            "offsync_site_last_contact_timestamp_seconds",
            "When a known site (certified, or named in the app's site_labels) last "
            "delivered a bundle or pulled, by this server's clock",
            "max",
            ["site", "label"],
        )
        self.peer_rounds = make.counter(
            "offsync_peer_rounds",
            "Rounds with the other centres (offsync serve --peer), by peer URL and "
            "outcome (ok, refused: some bundle was refused, failed)",
            ["peer", "outcome"],
        )
        self.peer_last_success = make.gauge(
            "offsync_peer_last_success_timestamp_seconds",
            "When a round with a peer centre last completed, by this server's clock",
            "max",
            ["peer"],
        )
        self.unknown_contact = make.gauge(
            "offsync_unknown_site_last_contact_timestamp_seconds",
            "When any key that is not a known site last delivered or pulled",
            "max",
        )

    def _register_exit(self, pc: Any) -> None:
        """A worker that stops cleanly takes its live gauges with it."""
        import atexit

        path, pid = self.multiprocess, os.getpid()
        atexit.register(pc.multiprocess.mark_process_dead, pid, path)

    def render(self) -> tuple[bytes, str]:
        """The exposition and its media type."""
        pc = self._pc
        if self.multiprocess is None:
            return pc.generate_latest(self.registry), pc.CONTENT_TYPE_LATEST
        registry = pc.CollectorRegistry()
        pc.multiprocess.MultiProcessCollector(registry, self.multiprocess)
        return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST
