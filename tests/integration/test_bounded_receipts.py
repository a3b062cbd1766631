"""Receipts bounded by their receiver, and idle rounds that cost nothing (issue 18).

A sender signs receipts restricted to what its receiver needs and passes on only the
receipts that concern it; readers union what one signer's receipts said. These tests
check what must not be lost by that: a site behind relays still learns, on every
path, that its own changes reached the centre; an idle round uploads nothing; a
centre's answer to a scoped site does not grow with the sites it heard from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import pytest

from offsync import Identity, Replica
from offsync.delivery import Delivery
from offsync.server import create_app
from offsync.sync import sync
from offsync.transports.base import Transport
from offsync.transports.http import HTTPTransport
from offsync.transports.memory import LoopbackTransport, MemoryTransport
from tests.helpers.http import LiveServer


def _replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label=label))


def _write(rep: Replica, n: int, prefix: str) -> None:
    with rep.batch():
        for i in range(n):
            rep.put("residents", f"{prefix}{i}", {"n": i})


def _no_sleep(delay: float) -> None:
    """Retries do not wait in tests."""


class Link:
    """One link between a lower site and the upper one it syncs with: ``up`` is the
    lower site's transport; ``down`` the upper's (None when the upper one is a server
    that only answers)."""

    def __init__(self, lower: Replica, upper: Replica, up: Transport, down: Transport | None):
        self.lower, self.upper, self.up, self.down = lower, upper, up, down

    def round(self) -> None:
        sync(self.lower, self.up)
        if self.down is not None:
            sync(self.upper, self.down)
            sync(self.lower, self.up)  # a mailbox: what the upper one left


LinkMaker = Callable[[ExitStack, Replica, Replica], Link]


def _mailbox(stack: ExitStack, lower: Replica, upper: Replica) -> Link:
    up, down = MemoryTransport.pair(lower, upper)
    return Link(lower, upper, up, down)


def _loopback(stack: ExitStack, lower: Replica, upper: Replica) -> Link:
    return Link(lower, upper, LoopbackTransport(upper, me=lower.id), None)


def _http(stack: ExitStack, lower: Replica, upper: Replica) -> Link:
    srv = stack.enter_context(LiveServer(create_app(upper)))
    t = HTTPTransport(srv.url, lower.identity, server_key=upper.id, sleep=_no_sleep)
    stack.callback(t.close)
    return Link(lower, upper, t, None)


PATHS: dict[str, LinkMaker] = {"mailbox": _mailbox, "loopback": _loopback, "http": _http}


@contextmanager
def _chain(kinds: tuple[str, str, str]) -> Iterator[tuple[list[Replica], list[Link]]]:
    """sub-sub-district → sub-district → district → centre, linked by ``kinds``."""
    sites = [_replica(x) for x in ("subsub", "sub", "district", "centre")]
    with ExitStack() as stack:
        for s in sites:
            stack.callback(s.close)
        links = [PATHS[k](stack, sites[i], sites[i + 1]) for i, k in enumerate(kinds)]
        yield sites, links


@pytest.mark.parametrize(
    "kinds",
    [
        ("mailbox", "mailbox", "mailbox"),
        ("mailbox", "loopback", "http"),
        ("http", "mailbox", "loopback"),
        ("loopback", "http", "mailbox"),
    ],
    ids="-".join,
)
def test_the_centre_receipt_travels_back_to_every_site_behind_relays(
    kinds: tuple[str, str, str],
) -> None:
    with _chain(kinds) as (sites, links):
        subsub, sub, district, centre = sites
        _write(subsub, 3, "ss")  # the sub-district itself writes nothing at first
        for link in links:  # up the chain
            link.round()
        assert centre.knowledge().restrict_origins([subsub.id]).count() == 3
        for link in reversed(links):  # and back down
            link.round()
        assert Delivery(subsub, [centre.id]).reached_centre(), "the centre's word came back"
        _write(sub, 2, "s")
        _write(subsub, 1, "late")
        for link in [*links, *reversed(links)]:
            link.round()
        for site in (subsub, sub, district):
            assert Delivery(site, [centre.id]).reached_centre(), site.identity.label
        assert not Delivery(subsub, [centre.id]).undelivered()


@pytest.mark.parametrize("kind", ["mailbox", "loopback", "http"])
def test_an_idle_round_uploads_nothing(kind: str) -> None:
    site, centre = _replica("site"), _replica("centre")
    with ExitStack() as stack:
        stack.callback(site.close)
        stack.callback(centre.close)
        link = PATHS[kind](stack, site, centre)
        _write(site, 4, "a")
        _write(centre, 2, "c")
        for _ in range(3):
            link.round()
        report = sync(site, link.up)
        assert report.sent_bundles == 0 and report.sent_bytes == 0, str(report)
        _write(site, 1, "b")
        report = sync(site, link.up)
        assert report.sent_changes == 1 and report.sent_bundles == 1
        assert Delivery(site, [centre.id]).reached_centre() or link.down is not None


@pytest.mark.slow
def test_an_idle_http_round_is_small_and_does_not_read_the_whole_knowledge() -> None:
    centre = _replica("centre")
    others = [_replica(f"s{i}") for i in range(40)]
    site = _replica("site")
    with ExitStack() as stack:
        for r in (centre, site, *others):
            stack.callback(r.close)
        # Only its own changes may be read by each site: a scoped site.
        srv = stack.enter_context(
            LiveServer(create_app(centre, readable=lambda s, o: o in (s, centre.id)))
        )
        for other in others:
            _write(other, 1, "x")
            t = HTTPTransport(srv.url, other.identity, server_key=centre.id, sleep=_no_sleep)
            stack.callback(t.close)
            sync(other, t)
        t = HTTPTransport(srv.url, site.identity, server_key=centre.id, sleep=_no_sleep)
        stack.callback(t.close)
        _write(site, 2, "mine")
        sync(site, t)
        sync(site, t)
        pulls = t.pulls
        report = sync(site, t)
        assert report.sent_bundles == 0
        assert t.pulls == pulls + 1, "one pull, no second one"
        # Nothing new and the site's receipt of the centre current: no bundle at all
        # (docs/spec-v3.md §15.3); format 2 sent one just to carry the receipt.
        assert len(report.received) == 0
        # The answers' receipts state only what the site needs: nothing of the 40 others.
        assert list(site.receipts()) == [centre.id]
        assert set(site.receipts()[centre.id].knowledge.origins()) <= {site.id, centre.id}
        assert set(site.peer_knowledge()[centre.id].origins()) <= {site.id, centre.id}
        assert Delivery(site, [centre.id]).reached_centre()


def test_a_newer_narrower_receipt_does_not_hide_what_an_older_one_said() -> None:
    a, b = _replica("a"), _replica("b")
    try:
        _write(a, 3, "a")
        for bundle in a.pack():
            b.apply(bundle)
        wide = b.receipt()  # states a's changes and b's
        narrow = b.receipt_for(b.id)  # only b's own origin: a stated nothing to b
        assert narrow.created > wide.created
        assert a.record_receipt(wide)
        assert a.record_receipt(narrow)
        assert a.receipts()[b.id] == narrow, "the newest signed receipt is kept"
        assert a.peer_knowledge()[b.id].restrict_origins([a.id]).count() == 3, (
            "what the older one said stays"
        )
        assert Delivery(a, [b.id]).reached_centre()
    finally:
        a.close()
        b.close()
