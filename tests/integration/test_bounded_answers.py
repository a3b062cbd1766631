"""A centre's unpulled answers are bounded too (issue 18): a duplicate upload's answer
and ``GET /knowledge`` state no more than their receiver needs, never every origin the
centre heard from.

The pull answer was bounded by what the site stated; these two stated the centre's
whole knowledge (≈ 40 bytes per origin), growing with the deployment. A duplicate
upload's answer is bounded by its uploading site (signed: the bundle's sender) and
what the bundle carries, as an applied upload's answer is; ``GET /knowledge`` is asked
by anyone (unsigned), so it states only the centre's own changes (docs/http.md).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from offsync import Identity, Receipt, Replica, sync
from offsync.delivery import Delivery
from offsync.scope import Partition, Stream
from offsync.segment import hash32
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

OTHERS = 30


def _replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label=label))


def _no_sleep(delay: float) -> None:
    """Retries do not wait in tests."""


@pytest.fixture
def centre() -> Iterator[Replica]:
    """A centre that holds one change of each of ``OTHERS`` sites, and one of its own."""
    rep = _replica("centre")
    rep.put("residents", "c", {"by": "centre"})
    rep.pack(rep.knowledge())  # seals it (a receipt states own changes as far as sealed)
    for i in range(OTHERS):
        other = _replica(f"s{i}")
        other.put("residents", f"s{i}", {"n": i})
        for bundle in other.pack():
            rep.apply(bundle)
        other.close()
    yield rep
    rep.close()


def _answer_receipt(answer: httpx.Response) -> Receipt:
    assert answer.status_code == 200, answer.text
    return Receipt.decode(base64.b64decode(answer.json()["receipt"]))


def test_a_duplicate_upload_is_answered_for_its_site(centre: Replica) -> None:
    site = _replica("site")
    try:
        site.put("residents", "mine", {"by": "site"})
        bundle = site.pack()[0]
        url = f"/bundles/{hash32(bundle).hex()}"
        with LiveServer(create_app(centre)) as srv, httpx.Client(base_url=srv.url) as http:
            first = http.put(url, content=bundle)
            assert first.json()["status"] == "applied"
            again = http.put(url, content=bundle)  # the answer was lost: asked again
            assert again.json()["status"] == "duplicate"
        receipt = _answer_receipt(again)
        assert receipt.replica == centre.id
        assert receipt.knowledge.contains(Stream(site.id, RESIDENTS_PARTITION), 1), (
            "it still proves the delivery"
        )
        assert set(receipt.knowledge.origins()) <= {site.id, centre.id}, (
            f"a duplicate's answer named {len(list(receipt.knowledge.origins()))} origins"
        )
        assert _answer_receipt(first).knowledge == receipt.knowledge
    finally:
        site.close()


def test_knowledge_asked_by_anyone_states_only_the_centres_own_changes(
    centre: Replica,
) -> None:
    with LiveServer(create_app(centre)) as srv:
        answer = httpx.get(srv.url + "/knowledge")
    assert answer.status_code == 200 and int(answer.headers["offsync-max-upload-bytes"]) > 0
    receipt = Receipt.decode(answer.content)
    receipt.verify()
    assert receipt.replica == centre.id
    assert list(receipt.knowledge.origins()) == [centre.id]
    assert receipt.knowledge.restrict_origins([centre.id]).count() == 1


def test_a_site_that_may_only_push_still_learns_its_changes_arrived(centre: Replica) -> None:
    """Refused reading, a site plans from ``GET /knowledge`` and the upload answers:
    the bounded answer does not make it send again what arrived."""
    site = _replica("site")
    try:
        site.put("residents", "mine", {"by": "site"})
        app = create_app(centre, readable=lambda s, o: False)
        with (
            LiveServer(app) as srv,
            HTTPTransport(srv.url, site.identity, server_key=centre.id, sleep=_no_sleep) as t,
        ):
            first = sync(site, t, pull=False)
            assert first.sent_changes == 1
            assert Delivery(site, [centre.id]).reached_centre()
            again = sync(site, t, pull=False)
            assert again.sent_changes == 0, "what the centre acknowledged is not sent again"
    finally:
        site.close()
