"""Health, readiness and Prometheus metrics, read from a real server (uvicorn on a free
loopback port) after real syncs: every figure is the one the syncs imply."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from offsync import Identity, Replica, sync
from offsync.logs import short_key
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from offsync.trust import issue_certificate
from tests.helpers.http import LiveServer
from tests.helpers.metrics import scrape, series, value


def test_metrics_after_real_syncs(tmp_path: Path) -> None:
    authority = Replica.open(":memory:", identity=Identity.generate(label="authority"))
    kec = Replica.open(str(tmp_path / "kec.sqlite"), identity=Identity.generate(label="kec-a"))
    issue_certificate(authority, kec.identity, label="kec-saradan")
    centre = Replica.open(
        str(tmp_path / "centre.sqlite"),
        identity=Identity.generate(label="centre"),
        trust=[authority.id],
    )
    for bundle in authority.pack():  # the certificate reaches the centre by hand
        centre.apply(bundle)
    app = create_app(centre, metrics=True, busy_timeout=0.05)
    with kec.batch():
        for i in range(5):
            kec.put("residents", f"35190101019{i:05d}", {"name": f"resident {i}"})
    strangers = [Replica.open(":memory:", identity=Identity.generate()) for _ in range(12)]
    for s in strangers:
        s.put("residents", "3519010101900099", {"name": "not certified"})

    with LiveServer(app) as srv:
        assert httpx.get(srv.url + "/healthz").json() == {"status": "alive"}
        assert httpx.get(srv.url + "/readyz").json() == {"status": "ready"}
        reports = []
        with HTTPTransport(srv.url, kec.identity, server_key=centre.id) as link:
            reports.append(sync(kec, link))
            reports.append(sync(kec, link))  # nothing new: a receipt-only bundle
            # A courier's copy of everything: applied as duplicates, then, the same
            # bytes again, recognised by id.
            (again,) = kec.pack()
            held = kec.knowledge()
            link.upload(again)
            link.upload(again)
        for s in strangers:
            with HTTPTransport(srv.url, s.identity, server_key=centre.id) as link:
                reports.append(sync(s, link))
        junk = httpx.put(f"{srv.url}/bundles/{'ab' * 32}", content=b"junk")
        assert junk.status_code == 422
        with centre.lock:  # a bulk import holds the replica
            assert httpx.get(srv.url + "/knowledge").status_code == 503
        samples = scrape(srv.url)

    assert value(samples, "offsync_changes_total", outcome="applied") == 5
    assert value(samples, "offsync_changes_total", outcome="quarantined") == len(strangers)
    duplicates = held.count()
    assert value(samples, "offsync_changes_total", outcome="duplicate") == duplicates
    applied_bundles = sum(r.sent_bundles for r in reports) + 1
    assert value(samples, "offsync_bundles_received_total", outcome="applied") == applied_bundles
    assert value(samples, "offsync_bundles_received_total", outcome="duplicate") == 1
    assert value(samples, "offsync_apply_seconds_count") == applied_bundles
    # The second copy is answered by its id before its body is read.
    uploaded = sum(r.sent_bytes for r in reports) + len(again) + len(b"junk")
    assert value(samples, "offsync_bytes_received_total") == uploaded
    pulled = sum(len(r.received) for r in reports)
    assert value(samples, "offsync_bundles_sent_total") == pulled
    assert value(samples, "offsync_refused_total", status="422", error="BundleIdMismatch") == 1
    assert value(samples, "offsync_refused_total", status="503", error="Busy") == 1
    assert value(samples, "offsync_in_flight") == 0
    assert value(samples, "offsync_waiting") == 0
    assert value(samples, "offsync_max_in_flight") == 8
    # Bounded: one series for the certified site, by its certificate's label; the twelve
    # keys nobody certified share the one unlabelled series.
    assert series(samples, "offsync_site_last_contact_timestamp_seconds") == [
        {"site": short_key(kec.id), "label": "kec-saradan"}
    ]
    assert value(samples, "offsync_unknown_site_last_contact_timestamp_seconds") > 0
    for r in [centre, kec, authority, *strangers]:
        r.close()


def test_site_labels_make_a_site_known_in_open_mode(tmp_path: Path) -> None:
    """Without trust, the app's site_labels (serve: the address book) name the sites
    that get a series of their own."""
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    known = Replica.open(":memory:", identity=Identity.generate(label="kec-a"))
    other = Replica.open(":memory:", identity=Identity.generate(label="kec-b"))
    app = create_app(centre, metrics=True, site_labels={known.id: "kec-a"})
    with LiveServer(app) as srv:
        for site in (known, other):
            with HTTPTransport(srv.url, site.identity) as link:
                sync(site, link)
        samples = scrape(srv.url)
    assert series(samples, "offsync_site_last_contact_timestamp_seconds") == [
        {"site": short_key(known.id), "label": "kec-a"}
    ]
    assert value(samples, "offsync_unknown_site_last_contact_timestamp_seconds") > 0


def test_readyz_says_503_when_the_store_is_gone(tmp_path: Path) -> None:
    """The store's file replaced by something that is not a store: not ready (and the
    answer does not say where the store is; the log does)."""
    path = tmp_path / "centre.sqlite"
    centre = Replica.open(str(path), identity=Identity.generate(label="centre"))
    with LiveServer(create_app(centre)) as srv:
        assert httpx.get(srv.url + "/readyz").status_code == 200
        centre.store.probe()
        path.rename(tmp_path / "moved.sqlite")
        answer = httpx.get(srv.url + "/readyz")
        assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
        assert answer.json()["error"] == "NotReady" and str(tmp_path) not in answer.text
        assert httpx.get(srv.url + "/healthz").status_code == 200  # alive all the same
    centre.close()


def test_metrics_need_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("prometheus_client")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    centre = Replica.open(":memory:", identity=Identity.generate())
    with pytest.raises(ImportError, match=r"offsync\[metrics\]"):
        create_app(centre, metrics=True)
    create_app(centre)  # off: nothing to import
    centre.close()
