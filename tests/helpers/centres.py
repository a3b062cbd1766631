"""Two centres that peer, one of them down while sites deliver (issue 17 point 1).

``down_then_converge(make_centre, count_rows)`` is the scenario both tests run, one on
SQLite centres (``test_centres.py``) and one on PostgreSQL centres, each on its own
schema (``test_centres_postgres.py``): centre A is down for the whole time the sites
deliver (never started, or killed before they start), several sites deliver to
whichever centre answers, then A comes back, the centres peer, and both hold every
change exactly once with equal state digests.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from offsync import Identity, Replica, policies
from offsync.delivery import Delivery
from offsync.errors import RetryableTransportError
from offsync.server import create_app
from offsync.sync import Peering, sync_any
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

POLICIES: dict[str, policies.Policy] = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
}
SITES = 3

#: A centre's replica, made by the test (label -> replica on its own store).
MakeCentre = Callable[[str], Replica]
#: (every row of the changes table, distinct (origin, seq) among them) of a centre.
CountRows = Callable[[Replica], tuple[int, int]]


def no_sleep(delay: float) -> None:
    """Backoff is not waited out: a centre that is down fails over at once."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(url: str, rep: Replica, key: bytes | None = None) -> HTTPTransport:
    return HTTPTransport(
        url,
        rep.identity,
        server_key=key,
        max_retries=1,
        backoff=0.001,
        connect_timeout=2.0,
        timeout=30.0,
        sleep=no_sleep,
    )


def write(site: Replica, round_: int) -> None:
    """Records of the site's own region, a dose, and an update of a record."""
    region = site.identity.label
    for i in range(4):
        site.put("residents", f"{region}{round_}{i:03d}", {"name": f"r{i}", "round": round_})
    site.put("doses", f"{region}{round_}000/1", {"lot": "L1"})
    site.put("residents", f"{region}{round_}000", {"name": "r0", "village": "Kare"})


def deliver(sites: list[Replica], urls: list[str], keys: list[bytes]) -> list[str]:
    """One failover round per site; the URL of the centre that took each."""
    took = []
    for site in sites:
        transports = [client(u, site, k) for u, k in zip(urls, keys, strict=True)]
        try:
            result = sync_any(site, transports)
        finally:
            for t in transports:
                t.close()
        assert result.report.ok, result.report.refused
        took.append(result.where)
    return took


def down_then_converge(
    make_centre: MakeCentre, count_rows: CountRows, *, kill_first: bool = False
) -> None:
    """The scenario; ``kill_first``: A runs and is killed before the sites deliver
    (else it is never started until it comes back)."""
    a, b = make_centre("centre-a"), make_centre("centre-b")
    if kill_first:
        killed = LiveServer(create_app(a)).start()
        port_a = killed.port
        killed.stop()  # killed: the sites find nothing listening
    else:
        port_a = free_port()  # nothing listens here until A comes back
    url_a = f"http://127.0.0.1:{port_a}"
    sites = [
        Replica.open(":memory:", identity=Identity.generate(f"35{i}"), policies=POLICIES)
        for i in range(SITES)
    ]
    keys = [a.id, b.id]
    with LiveServer(create_app(b)) as srv_b:
        urls = [url_a, srv_b.url]
        for round_ in range(2):
            for site in sites:
                write(site, round_)
            assert deliver(sites, urls, keys) == [srv_b.url] * SITES
        for site in sites:  # B's receipts count: every change is at a centre
            delivery = Delivery(site, [a.id, b.id])
            assert delivery.reached_centre() and not delivery.undelivered()
        # With every centre down, the round fails with each one's reason, and nothing
        # written since is lost: it waits in the site.
        lone = sites[0]
        lone.put("residents", "350900", {"name": "late"})
        transports = [client(url_a, lone, a.id)]
        try:
            sync_any(lone, transports)
            raise AssertionError("a round with no centre up must fail")
        except RetryableTransportError as exc:
            assert url_a in str(exc) and "no centre answered" in str(exc)
        finally:
            transports[0].close()
        assert not Delivery(lone, keys).reached_centre()
        assert deliver([lone], urls, keys) == [srv_b.url]

        assert a.knowledge().count() == 0  # A saw nothing while it was down
        with LiveServer(create_app(a), port=port_a) as srv_a:
            assert srv_a.url == url_a
            # The centres peer: B's rounds with A, then A's with B (their receipts).
            peer_b = Peering(b, [url_a], server_keys={url_a: a.id}, sleep=no_sleep)
            peer_a = Peering(a, [srv_b.url], server_keys={srv_b.url: b.id}, sleep=no_sleep)
            try:
                (caught_up,) = peer_b.run_once()
                assert caught_up.ok and caught_up.report is not None
                assert caught_up.report.sent_changes == b.knowledge().count()
                assert [r.ok for r in peer_a.run_once()] == [True]
                # Bounded and idempotent: another period moves nothing.
                again = peer_b.run_once() + peer_a.run_once()
                assert all(r.report is not None and r.report.applied == 0 for r in again)
                assert all(r.report is not None and r.report.sent_changes == 0 for r in again)
            finally:
                peer_b.stop()
                peer_a.stop()
            written = sum(site.seq for site in sites)
            assert a.knowledge() == b.knowledge()
            assert a.knowledge().count() == written
            assert a.state_digest() == b.state_digest()
            assert count_rows(a) == (written, written) == count_rows(b)
            for site in sites:
                site.put("residents", f"{site.identity.label}9000", {"name": "after"})
            # A is first again and takes the rounds; B keeps counting as a centre.
            assert deliver(sites, [url_a, srv_b.url], keys) == [url_a] * SITES
            assert peer_a.run_once()[0].ok
            assert a.state_digest() == b.state_digest()
            assert count_rows(a) == (written + SITES, written + SITES) == count_rows(b)
            assert all(Delivery(site, keys).reached_centre() for site in sites)
