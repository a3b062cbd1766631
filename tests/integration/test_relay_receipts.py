"""A site behind a relay learns whether its own changes reached the centre, on every
path between it and the relay (HTTP served by the relay, a folder, a disk), and its
idle rounds then move nothing (spec §8.2 point 2: subject receipts; §15.3).

The relay names the site in ``set_relays_for``; its bundles and pull requests to the
centre say so (``relays_for``), the centre signs a receipt about the site alone, and
the relay passes it on. Requests and bytes are counted; no time is asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from offsync import Identity, Replica
from offsync.bundle import read_header
from offsync.delivery import Delivery
from offsync.server import create_app
from offsync.sync import sync
from offsync.transports import DiskTransport, FolderTransport
from offsync.transports.base import Transport
from offsync.transports.http import HTTPTransport
from offsync.transports.memory import LoopbackTransport
from tests.helpers.http import LiveServer


def _replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label=label))


def _no_sleep(delay: float) -> None:
    """Retries do not wait in tests."""


class _Counting:
    """ASGI middleware: requests and body bytes both ways."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests, self.down = app, 0, 0
        self.state = app.state  # LiveServer records an offsync app's answers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.down += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counted_send)


@contextmanager
def _link(
    kind: str, root: Path, site: Replica, relay: Replica
) -> Iterator[tuple[Transport, Transport | None, _Counting | None]]:
    """The site's transport to the relay, the relay's back (None: it serves HTTP), and
    the counter of the relay's server (HTTP only)."""
    if kind == "http":
        app = _Counting(create_app(relay))
        with (
            LiveServer(app) as srv,
            HTTPTransport(srv.url, site.identity, server_key=relay.id, sleep=_no_sleep) as t,
        ):
            yield t, None, app
        return
    make = DiskTransport if kind == "disk" else FolderTransport
    yield make(root, site, relay), make(root, relay, site), None


def _round(site: Replica, relay: Replica, up: Transport, down: Transport | None) -> None:
    sync(site, up)
    if down is not None:  # a mailbox: the relay answers, the site picks it up
        sync(relay, down)
        sync(site, up)


@pytest.mark.parametrize("kind", ["http", "folder", "disk"])
def test_a_site_behind_a_relay_hears_from_the_centre(kind: str, tmp_path: Path) -> None:
    site, relay, centre = _replica("site"), _replica("relay"), _replica("centre")
    with ExitStack() as stack:
        for r in (site, relay, centre):
            stack.callback(r.close)
        relay.set_relays_for([site.id])
        up, down, counter = stack.enter_context(_link(kind, tmp_path, site, relay))
        to_centre = LoopbackTransport(centre, me=relay.id)
        with site.batch():
            for i in range(3):
                site.put("residents", f"r{i}", {"n": i})
        _round(site, relay, up, down)
        sync(relay, to_centre)  # up to the centre; its receipt about the site comes back
        assert centre.knowledge().restrict_origins([site.id]).count() == 3
        assert not Delivery(site, [centre.id]).reached_centre()
        _round(site, relay, up, down)
        assert Delivery(site, [centre.id]).reached_centre(), "the centre's word came back"
        # What the site heard from the centre is about the site alone.
        assert set(site.peer_knowledge()[centre.id].origins()) == {site.id}
        # Idle now: nothing is said again.
        if counter is not None:
            counter.requests = counter.down = 0
        report = sync(site, up)
        assert report.sent_bundles == 0 and not report.received, str(report)
        if counter is not None:
            assert counter.requests == 2, "a challenge and a pull answered by the end frame"
            assert counter.down < 200
        if down is not None:
            report = sync(relay, down)
            assert report.sent_bundles == 0, "the relay has nothing new for the site"


def test_a_relay_is_told_only_about_sites_it_may_read() -> None:
    """A server tells a relay about a site it relays for only if the relay may be sent
    that site's changes (``readable``): naming a site in ``relays_for`` is not enough."""
    centre, a, b, relay = (_replica(x) for x in ("centre", "a", "b", "relay"))
    try:
        for site in (a, b):
            site.put("residents", "x", {"n": 1})
            for bundle in site.pack():
                centre.apply(bundle)
        bundles = list(
            centre.iter_pack(
                centre.knowledge(),
                receiver=relay.id,
                relays_for=[a.id, b.id],
                readable=lambda origin: origin != b.id,
            )
        )
        (header,) = (read_header(x)[0] for x in bundles)
        about = {o for r in header.receipts for o in r.knowledge.origins()}
        assert a.id in about and b.id not in about
    finally:
        for r in (centre, a, b, relay):
            r.close()
