"""What travels about knowledge is bounded by the receiver, at 80,000 sites (issue 18,
spec §8.2).

A simulated deployment (``offsync.testing.deployment.simulate``: generated keys, one
segment per site in the centre's index, one bounded receipt heard from each; no 80,000
replicas) answers one site, and a relay, as the HTTP server packs: every answer stays
within a bound that does not depend on the deployment's size (the same at 1,000 sites
as at 80,000), and no spec limit is reached. Bytes and requests are counted; no time is
asserted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from offsync import Identity, Knowledge, Replica
from offsync.bundle import read_header
from offsync.limits import DEFAULT_LIMITS
from offsync.scope import Scope, Stream
from offsync.server import create_app
from offsync.sync import sync
from offsync.testing.deployment import Deployment, answer, header_receipts, simulate
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

SITES = 80_000
SMALL = 1_000
#: Bytes of a receipt-only answer to a site of a district of 8, at any deployment size.
RECEIPT_ONLY_BOUND = 2048


@pytest.fixture(scope="module")
def big() -> Iterator[Deployment]:
    dep = simulate(SITES, sign=False)
    yield dep
    dep.centre.close()


@pytest.fixture(scope="module")
def small() -> Iterator[Deployment]:
    dep = simulate(SMALL, sign=False)
    yield dep
    dep.centre.close()


def test_a_receipt_only_answer_does_not_grow_with_the_deployment(
    small: Deployment, big: Deployment
) -> None:
    sizes = []
    for dep in (small, big):
        i = len(dep.sites) // 2
        got = answer(dep, i, dep.scoped_knowledge(i), scoped=True)
        assert got.within() == []
        assert (got.bundles, got.receipts) == (1, 1), "the centre's receipt, nothing passed on"
        # The site's scope is its district's partition: its district's sites, no more.
        assert got.origins_stated <= dep.district
        assert got.bytes <= RECEIPT_ONLY_BOUND
        sizes.append(got.bytes)
    assert sizes[1] <= sizes[0] + 16, "only integer widths may differ"


def test_an_unscoped_site_gets_its_own_streams_not_the_deployment(big: Deployment) -> None:
    """A site that reads everything (a second centre) is told about its own streams and
    those its own receipts stated (here its district's), not about all it holds: the
    centre learns what it lacks from the segments themselves (§8.2)."""
    everything = big.centre.knowledge()
    got = answer(big, 7, everything)
    assert got.within() == []
    assert got.origins_stated <= big.district
    assert got.bytes <= RECEIPT_ONLY_BOUND
    # Its request goes by group digests (§15.2), within the header limit too.
    assert got.request_bytes <= DEFAULT_LIMITS.max_header_bytes


def test_a_one_change_answer_carries_the_change_and_a_bounded_receipt(
    small: Deployment, big: Deployment
) -> None:
    extra = []
    for dep in (small, big):
        i = len(dep.sites) // 3
        writer = Replica.open(
            ":memory:", identity=Identity.generate(label="w"), partitions={"residents": 5}
        )
        try:
            prefix = dep.partition_of(i).prefix
            writer.put("residents", prefix + "0001", {"nik": prefix + "0001"})
            (bundle,) = writer.pack()
            dep.centre.apply(bundle)
            got = answer(dep, i, dep.scoped_knowledge(i), scoped=True)
            assert got.within() == []
            assert got.bundles == 1
            # The district's streams, and the writer's, carried.
            assert got.origins_stated <= dep.district + 1
            segment = len(bundle) - int.from_bytes(bundle[8:12], "big") - 80
            extra.append(got.bytes - segment)
        finally:
            writer.close()
    assert all(x <= RECEIPT_ONLY_BOUND for x in extra)
    assert extra[1] <= extra[0] + 16


def test_a_relay_gets_a_receipt_for_each_site_it_relays_for(big: Deployment) -> None:
    """A relay for more sites than one header may name gets one subject receipt per
    site, split across bundles, each of them within every limit."""
    subjects = tuple(sorted(big.sites[: DEFAULT_LIMITS.max_relays_for]))
    relay = big.sites[-1]
    max_bytes = 1 << 20
    bundles = list(
        big.centre.iter_pack(
            big.centre.knowledge(), max_bytes=max_bytes, receiver=relay, relays_for=subjects
        )
    )
    assert len(bundles) > 1, "more subjects than fit one bundle: split"
    about: dict[bytes, int] = {}
    for bundle in bundles:
        assert len(bundle) <= max_bytes
        receipts = header_receipts(bundle)
        assert 1 < len(receipts) <= DEFAULT_LIMITS.max_receipts
        own, *passed = receipts
        assert own.replica == big.centre.id
        for r in passed:
            assert r.replica == big.centre.id
            (subject,) = r.knowledge.origins()
            about[subject] = about.get(subject, 0) + 1
    assert about == dict.fromkeys(subjects, 1), "one receipt per subject, each once"
    # The own receipt states the relay's streams and its subjects', and those the
    # relay's receipts stated (its district's) (§8.2 point 1).
    stated = set(header_receipts(bundles[0])[0].knowledge.origins())
    expected = {relay, *subjects}
    assert stated - expected <= set(big.district_of(len(big.sites) - 1)), "nothing else"
    assert not expected - stated, "every subject's streams"


def test_subject_receipts_not_changed_are_not_sent_again(small: Deployment) -> None:
    """A relay's next quiet round is told nothing it was told already."""
    centre = small.centre
    relay = Replica.open(":memory:", identity=Identity.generate(label="relay"))
    try:
        subjects = small.sites[:50]
        relay.set_relays_for(subjects)
        assert relay.relays_for == tuple(sorted(subjects))
        # The relay's bundle names whom it relays for; the centre learns it from there.
        relay.put("residents", "x", {"n": 1})
        for bundle in relay.pack():
            assert read_header(bundle)[0].relays_for == tuple(sorted(subjects))
            centre.apply(bundle)
        first = list(centre.iter_pack(centre.knowledge(), receiver=relay.id, quiet=True))
        assert sum(len(header_receipts(b)) - 1 for b in first) == 50
        centre.told(relay.id, [read_header(b)[0] for b in first])
        again = list(centre.iter_pack(centre.knowledge(), receiver=relay.id, quiet=True))
        assert again == [], "nothing new: no bundle"
    finally:
        relay.close()


class _Counting:
    """ASGI middleware: requests and body bytes both ways."""

    def __init__(self, app: Any) -> None:
        self.app, self.requests, self.up, self.down = app, 0, 0, 0
        self.paths: list[str] = []
        self.state = app.state  # LiveServer records an offsync app's answers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.requests += 1
        self.paths.append(f"{scope['method']} {scope['path']}")

        async def counted_receive() -> Any:
            message = await receive()
            self.up += len(message.get("body", b""))
            return message

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.down += len(message.get("body", b""))
            await send(message)

        await self.app(scope, counted_receive, counted_send)


def test_idle_and_one_change_rounds_over_http_at_80000_sites(big: Deployment) -> None:
    """A real site and the 80,000-site centre over HTTP on loopback: an idle round moves
    no bundle either way (a challenge and a pull answered by the end frame), a round
    with one change uploads one bundle; the bytes do not grow with the deployment."""
    centre = big.centre
    site = Replica.open(
        ":memory:", identity=Identity.generate(label="site"), partitions={"residents": 5}
    )
    # The site reads its own district only, one no simulated site writes in (their
    # signatures at this size are random: the site would refuse their segments).
    district = Scope({"residents": ["99999"]})
    app = _Counting(create_app(centre, readable=lambda site_key: district))
    try:
        with LiveServer(app) as srv, HTTPTransport(srv.url, site.identity) as t:
            site.put("residents", "999990001", {"n": 0})
            sync(site, t)
            sync(site, t)
            app.requests = app.up = app.down = 0
            app.paths.clear()
            report = sync(site, t)
            assert (report.sent_bundles, len(report.received)) == (0, 0), str(report)
            assert app.requests == 2, app.paths
            assert app.up < 1024 and app.down < 512
            site.put("residents", "999990002", {"n": 1})
            app.requests = app.up = app.down = 0
            report = sync(site, t)
            assert report.sent_changes == 1 and report.sent_bundles == 1
            assert app.down < 4096, "upload answer and pull answers: bounded receipts"
        stream = Stream(site.id, big.partition_of(0)._replace(prefix="99999"))
        assert centre.knowledge().max_seq(stream) >= 1
    finally:
        site.close()


def test_an_upload_answer_is_bounded_by_the_uploader(big: Deployment) -> None:
    i = 123
    site = big.sites[i]
    ranges = Knowledge.of(Stream(site, big.partition_of(i)), 1, 3)
    receipt = big.centre.receipt_for(site, ranges)
    assert set(receipt.knowledge.origins()) == {site}
    assert len(receipt.encode()) < 512
