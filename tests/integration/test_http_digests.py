"""offsync-http/3's digest exchange and idle pulls over real HTTP on loopback (spec-v3
§15.2, §15.3): a site with many streams sends group digests, gets 409 with the groups
that differ, and then only those groups' changes; equal digests move nothing; an idle
round moves no bundle. Counted by the server's metrics and the transport's counters,
never by time."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import offsync
from offsync import Identity, Replica
from offsync.http.pull import PullRequest, decode_groups
from offsync.http.signing import sign_request
from offsync.http.wire import GROUPS_MEDIA_TYPE, MSGPACK_MEDIA_TYPE
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

pytest.importorskip("prometheus_client")

RULE = {"residents": 6}
DISTRICTS = 40  # streams of the centre's: more than the threshold the tests set


def district(i: int) -> str:
    """Six-digit district codes in four regencies (3501.., 3502.., ...)."""
    return f"35{i // 10 + 1:02d}{i % 10:02d}"


def replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label=label), partitions=RULE)


def no_sleep(delay: float) -> None:
    pass


@pytest.fixture
def centre() -> Iterator[Replica]:
    rep = replica("centre")
    with rep.batch():
        for i in range(DISTRICTS):
            rep.put("residents", district(i) + "0001", {"n": i})
    yield rep
    rep.close()


@pytest.fixture
def served(centre: Replica) -> Iterator[LiveServer]:
    with LiveServer(create_app(centre, metrics=True)) as srv:
        yield srv


def transport(srv: LiveServer, rep: Replica, threshold: int | None = 10) -> HTTPTransport:
    t = HTTPTransport(srv.url, rep.identity, sleep=no_sleep, backoff=0.001)
    t.digest_threshold = threshold
    return t


def pulls(srv: LiveServer) -> dict[str, float]:
    """``offsync_pulls_total`` by answer, from the server's /metrics."""
    text = httpx.get(srv.url + "/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^offsync_pulls_total\{answer="(\w+)"\} (\S+)$', text, re.M)
    }


def sent(srv: LiveServer) -> float:
    text = httpx.get(srv.url + "/metrics").text
    found = re.search(r"^offsync_bundles_sent_total (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_digests_then_detail_of_the_differing_groups_only(
    centre: Replica, served: LiveServer
) -> None:
    site = replica("site")
    with transport(served, site) as t:
        first = offsync.sync(site, t)  # holds nothing: knowledge sent whole
        assert first.applied == DISTRICTS and t.digest_rounds == 0
        assert site.knowledge().stream_count() > 10
        # Two districts of one regency change at the centre.
        centre.put("residents", district(3) + "0002", {"n": 1000})
        centre.put("residents", district(5) + "0002", {"n": 1001})
        before = pulls(served)
        second = offsync.sync(site, t)
        assert t.digest_rounds == 1, "the differing group was asked for in detail"
        assert second.applied == 2
        after = pulls(served)
        assert after.get("groups", 0) - before.get("groups", 0) == 1
    assert site.state_digest() == centre.state_digest()


def test_the_409_names_only_differing_groups_and_detail_settles_them(
    centre: Replica, served: LiveServer
) -> None:
    """At the protocol level: the groups body lists the regency that changed, and the
    second request, stating only that regency's streams, is answered with its change."""
    site = replica("site")
    with transport(served, site) as t:
        offsync.sync(site, t)
    centre.put("residents", district(12) + "0002", {"n": 7})  # regency 3502
    held = site.knowledge()
    asked = PullRequest.make(held, 1 << 20, digests=True)
    assert asked.digests is not None
    length = asked.digests[0]
    answer = _pull(served, centre, site, asked)
    assert answer.status_code == 409
    assert answer.headers["content-type"] == GROUPS_MEDIA_TYPE
    groups = decode_groups(answer.content)
    assert groups == (("residents", district(12)[:length]),)
    again = asked.with_detail(held, groups)
    assert 0 < again.knowledge.stream_count() < held.stream_count()
    answer = _pull(served, centre, site, again)
    assert answer.status_code == 200
    with transport(served, site) as t:
        report = offsync.sync(site, t)
    assert report.applied == 1 and site.state_digest() == centre.state_digest()


def test_equal_digests_send_nothing_and_an_idle_round_moves_no_bundle(
    centre: Replica, served: LiveServer
) -> None:
    site = replica("site")
    with transport(served, site) as t:
        offsync.sync(site, t)
        offsync.sync(site, t)  # the receipt of the first round's upload settles
        before, bundles = pulls(served), sent(served)
        idle = offsync.sync(site, t)
        assert idle.applied == 0 and idle.sent_changes == 0
        assert t.digest_rounds == 0, "equal digests: no 409"
        after = pulls(served)
        assert sent(served) == bundles, "an idle round moved a bundle"
        assert after.get("idle", 0) - before.get("idle", 0) == 1
        assert after.get("bundles", 0) == before.get("bundles", 0)


def test_whole_knowledge_below_the_threshold_still_converges(
    centre: Replica, served: LiveServer
) -> None:
    site = replica("site")
    with transport(served, site, threshold=None) as t:
        offsync.sync(site, t)
        centre.put("residents", district(0) + "0009", {"n": 9})
        assert offsync.sync(site, t).applied == 1
        assert t.digest_rounds == 0
    assert site.state_digest() == centre.state_digest()


def _pull(srv: LiveServer, centre: Replica, site: Replica, asked: PullRequest) -> Any:
    challenge = bytes.fromhex(httpx.get(srv.url + "/challenge").json()["challenge"])
    body = asked.encode()
    headers = sign_request(site.identity, centre.id, "pull", body, challenge)
    headers["Content-Type"] = MSGPACK_MEDIA_TYPE
    return httpx.post(srv.url + "/pull", content=body, headers=headers)
