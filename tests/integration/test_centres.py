"""Several centres: a site delivers to whichever answers, centres peer, all converge.

Real uvicorn servers on free loopback ports, SQLite centres in files (the PostgreSQL
variant is ``test_centres_postgres.py``), real failures: a centre that is not running,
a centre that refuses a bundle.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.errors import PeerRefusedError, UsageError
from offsync.server import create_app
from offsync.sync import Peering, prefer_last, sync_any
from tests.helpers.centres import POLICIES, client, down_then_converge, free_port
from tests.helpers.http import LiveServer

#: Every change a SQLite store holds: rows of ``changes``, and the sole change a record
#: row keeps in itself (``sole_origin``, ``sole_seq``) until a second one arrives.
# A change id is unique within its stream; these sites write one partition per
# collection, so (origin, collection, seq) names a change.
_ALL_CHANGES = """
SELECT count(*), count(DISTINCT hex(o) || ':' || hex(c) || ':' || s) FROM (
    SELECT origin AS o, collection AS c, seq AS s FROM changes
    UNION ALL
    SELECT origins.origin, records.collection, sole_seq
    FROM records JOIN origins ON origins.id = sole_origin
    WHERE sole_seq IS NOT NULL)
"""


def _count_rows(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        total, distinct = db.execute(_ALL_CHANGES).fetchone()
    finally:
        db.close()
    return int(total), int(distinct)


def test_one_centre_down_sites_deliver_then_all_converge(tmp_path: Path) -> None:
    paths: dict[bytes, Path] = {}
    opened: list[Replica] = []

    def make_centre(label: str) -> Replica:
        path = tmp_path / f"{label}.sqlite"
        rep = Replica.open(str(path), identity=Identity.generate(label), policies=POLICIES)
        paths[rep.id] = path
        opened.append(rep)
        return rep

    try:
        down_then_converge(make_centre, lambda rep: _count_rows(paths[rep.id]))
    finally:
        for rep in opened:
            rep.close()


def test_a_clear_refusal_is_not_sent_to_the_next_centre() -> None:
    """A bundle the first centre refuses (too large for it) is not tried elsewhere."""
    site = Replica.open(":memory:", identity=Identity.generate("site"))
    site.put("residents", "k", {"blob": os.urandom(20_000)})  # one segment, never cut
    small = Replica.open(":memory:", identity=Identity.generate("small"))
    other = Replica.open(":memory:", identity=Identity.generate("other"))
    with (
        LiveServer(create_app(small, max_upload_bytes=10_000)) as srv_small,
        LiveServer(create_app(other)) as srv_other,
    ):
        transports = [client(srv_small.url, site), client(srv_other.url, site)]
        with pytest.raises(PeerRefusedError) as refused:
            sync_any(site, transports)
        assert refused.value.status == 413
        assert (
            other.knowledge().count() == 0
            and small.knowledge().restrict_origins([site.id]).count() == 0
        )
        for t in transports:
            t.close()


def test_the_centre_that_answered_last_is_tried_first() -> None:
    urls = ["http://a", "http://b", "http://c"]
    assert prefer_last(urls, "http://b") == [1, 0, 2]
    assert prefer_last(urls, None) == [0, 1, 2]
    assert prefer_last(urls, "http://gone") == [0, 1, 2]


def test_peering_refuses_what_it_cannot_run() -> None:
    rep = Replica.open(":memory:", identity=Identity.generate("c"))
    with pytest.raises(UsageError, match="http"):
        Peering(rep, [os.getcwd()])
    with pytest.raises(UsageError, match="twice"):
        Peering(rep, ["http://127.0.0.1:1", "http://127.0.0.1:1"])
    with pytest.raises(UsageError, match="positive"):
        Peering(rep, ["http://127.0.0.1:1"], every=0)
    with pytest.raises(UsageError, match="at least one"):
        sync_any(rep, [])


def test_a_peer_that_is_down_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    rep = Replica.open(":memory:", identity=Identity.generate("c"))
    rep.put("residents", "k", {"v": 1})
    url = f"http://127.0.0.1:{free_port()}"
    peering = Peering(rep, [url], max_retries=0, connect_timeout=2.0)
    with caplog.at_level("INFO", logger="offsync.peering"):
        (failed,) = peering.run_once()
        assert not failed.ok and failed.error and "RetryableTransportError" in failed.error
        assert "peer.failed" in caplog.text and "127.0.0.1" in caplog.text
        other = Replica.open(":memory:", identity=Identity.generate("d"))
        port = int(url.rsplit(":", 1)[1])
        with LiveServer(create_app(other), port=port):
            (done,) = peering.run_once()
        peering.stop()
    assert done.ok and other.knowledge() == rep.knowledge()
    assert "peer.round" in caplog.text and peering.rounds == 2


def test_peering_runs_in_the_background_and_is_counted_in_the_metrics() -> None:
    """``start`` runs periods in a thread until ``stop``; each round is counted in the
    server's metrics, which a scrape of the real server shows."""
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    import httpx

    centre = Replica.open(":memory:", identity=Identity.generate("a"))
    other = Replica.open(":memory:", identity=Identity.generate("b"))
    other.put("residents", "k", {"v": 1})
    app = create_app(centre, metrics=True)
    with LiveServer(app) as srv, LiveServer(create_app(other)) as srv_other:
        peering = Peering(centre, [srv_other.url], every=3600)
        peering.metrics = app.state.offsync.observe.metrics
        with peering:
            for _ in range(400):  # the first period starts at once; a bounded wait
                if peering.rounds:
                    break
                threading.Event().wait(0.05)
        assert peering.rounds == 1  # one period: the next is an hour away
        assert centre.knowledge() == other.knowledge()
        scraped = httpx.get(f"{srv.url}/metrics").text
    ok = f'offsync_peer_rounds_total{{outcome="ok",peer="{srv_other.url}"}} 1.0'
    assert ok in scraped
    assert f'offsync_peer_last_success_timestamp_seconds{{peer="{srv_other.url}"}}' in scraped


def _send(src: Replica, dst: Replica) -> None:
    """What ``dst`` lacks of ``src``, by bundles (each carries ``src``'s receipt)."""
    for bundle in src.pack(dst.knowledge(), always=True):
        dst.apply(bundle)


def test_in_trust_mode_only_a_certified_centre_receipt_counts() -> None:
    """Delivery, status and fork safety agree: an uncertified or revoked centre's
    receipts are kept but never say "at the centre"."""
    from offsync.delivery import Delivery, Status
    from offsync.scope import Partition, Stream
    from offsync.trust import issue_certificate, revoke

    authority_id = Identity.generate("authority")
    site_id, a_id, b_id = (Identity.generate(n) for n in ("3519", "centre-a", "centre-b"))

    def trusting(identity: Identity) -> Replica:
        return Replica.open(":memory:", identity=identity, trust=[authority_id.public_key])

    authority = trusting(authority_id)
    issue_certificate(authority, site_id, label="kec", collections=["residents"])
    issue_certificate(authority, a_id, label="centre-a", collections=["residents"])
    site, a, b = trusting(site_id), trusting(a_id), trusting(b_id)  # b: never certified
    for rep in (site, a, b):
        _send(authority, rep)
    change = site.put("residents", "3519010101900001", {"name": "Siti"})
    delivery = Delivery(site, [a.id, b.id])
    assert delivery.counted_centres() == {a.id}

    _send(site, b)
    _send(b, site)  # b holds it and says so, but b is no certified centre
    assert b.knowledge().contains(Stream(change.origin, Partition("residents")), change.seq)
    assert b.id in site.receipts()
    assert delivery.status(change) is Status.RELAY and not delivery.reached_centre()

    _send(site, a)
    _send(a, site)
    assert delivery.status(change) is Status.CENTRE and delivery.reached_centre()

    revoke(authority, a_id, after_seq=0, reason="machine stolen")
    _send(authority, site)
    assert delivery.counted_centres() == frozenset()
    assert delivery.status(change) is Status.RELAY and not delivery.reached_centre()
