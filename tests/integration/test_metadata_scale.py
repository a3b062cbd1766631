"""80,000 sites: no spec limit is reached by honest metadata in any answer to one site
(issue 18). A simulated deployment (``offsync.testing.deployment``): generated keys,
knowledge and receipts, no running replicas. Sizes only; no timing is asserted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offsync import Knowledge
from offsync.limits import DEFAULT_LIMITS
from offsync.scope import Stream
from offsync.testing.deployment import RECORDS, Deployment, answer, simulate

SITES = 80_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    dep = simulate(SITES, sign=False)
    yield dep
    dep.centre.close()


def test_a_scoped_site_gets_an_answer_of_its_district_size(deployment: Deployment) -> None:
    i = SITES // 2
    stated = deployment.scoped_knowledge(i)
    got = answer(deployment, i, stated, scoped=True)
    assert got.within() == []
    assert got.bundles == 1
    # Its centre's receipt names its district, and the receipts passed on are its
    # district's: nothing grows with the 80,000.
    assert got.origins_stated <= deployment.district
    assert got.receipts <= deployment.district
    assert got.bytes < 16 * 1024


def test_an_unscoped_site_stays_within_every_limit(deployment: Deployment) -> None:
    """A site holding every origin's changes is what format 2 cannot bound (docs/design.md):
    its centre's receipt names every origin, and still fits."""
    everything = deployment.centre.knowledge()
    got = answer(deployment, 7, everything)
    assert got.within() == []
    assert got.origins_stated == SITES
    assert got.header_bytes <= DEFAULT_LIMITS.max_header_bytes
    assert got.request_bytes <= DEFAULT_LIMITS.max_header_bytes


def test_the_upload_answer_is_bounded_by_the_uploader(deployment: Deployment) -> None:
    i = 123
    site = deployment.sites[i]
    receipt = deployment.centre.receipt_for(site, Knowledge.of(Stream(site, RECORDS), 1, 3))
    # The site, and its district, which its receipt said it holds.
    assert set(receipt.knowledge.origins()) <= set(deployment.district_of(i))
    assert len(receipt.encode()) < 4096


def test_the_old_sender_rule_reaches_the_header_limit(deployment: Deployment) -> None:
    """What the bound is for: before issue 18 a centre of 80,000 sites put its receipt
    of every origin into every answer, past ``max_header_bytes``."""
    i = SITES // 3
    stated = deployment.scoped_knowledge(i)
    deployment.centre.bounded_receipts = False
    try:
        got = answer(deployment, i, stated, scoped=True)
    finally:
        deployment.centre.bounded_receipts = True
    assert "max_header_bytes" in got.within()
