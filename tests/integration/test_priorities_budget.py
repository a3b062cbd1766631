"""Priorities and a byte budget (docs/spec.md §9.5): a round cut short by
``max_bytes_per_round`` has sent births and doses before bulk corrections, the rest
follows over the next rounds, and knowledge stays exact throughout.

Bulk corrections are written first and their collection sorts between ``births`` and
``doses``, so neither write order nor stream order puts doses ahead of them: only the
priorities do."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from offsync import Identity, Replica
from offsync.errors import UsageError
from offsync.server import create_app
from offsync.sync import SyncReport, sync
from offsync.transports.base import Transport
from offsync.transports.http import HTTPTransport
from offsync.transports.memory import LoopbackTransport
from tests.helpers.http import LiveServer

PRIORITIES = {"births": 10, "doses": 10, "corrections": 200}
BUDGET = 100_000
CORRECTIONS = 3000
VITAL = 20


def source(path: str = ":memory:", priorities: dict[str, int] | None = PRIORITIES) -> Replica:
    """A site with a large backlog of bulk corrections, then a few births and doses."""
    rep = Replica.open(path, identity=Identity(b"\x07" * 32, "post"), priorities=priorities)
    rep.put_many(
        "corrections",
        {f"c{i:05d}": {"blob": os.urandom(200)} for i in range(CORRECTIONS)},
    )
    for i in range(VITAL):
        rep.put("births", f"b{i}", {"child": i})
        rep.put("doses", f"d{i}", {"lot": "L1"})
    return rep


def target(label: str = "centre") -> Replica:
    return Replica.open(":memory:", identity=Identity(b"\x08" * 32, label), priorities=PRIORITIES)


def count(rep: Replica, collection: str) -> int:
    return rep.collections().get(collection, 0)


def rounds(run: Callable[[], SyncReport], receiver: Replica, sender: Replica) -> list[int]:
    """Run budgeted rounds until nothing is left; per round, the corrections held after
    it. Births and doses must all have arrived by the end of the first round."""
    held: list[int] = []
    for _ in range(50):
        report = run()
        held.append(count(receiver, "corrections"))
        assert receiver.knowledge() <= sender.knowledge()  # never claims what is not held
        if len(held) == 1:
            assert count(receiver, "births") == VITAL and count(receiver, "doses") == VITAL
        if not report.more and receiver.knowledge() >= sender.knowledge():
            break
    return held


@pytest.fixture
def post() -> Iterator[Replica]:
    with source() as rep:
        yield rep


def test_push_under_a_budget_sends_vital_events_first(post: Replica) -> None:
    with target() as centre:
        t = LoopbackTransport(centre)
        held = rounds(lambda: sync(post, t, pull=False, max_bytes_per_round=BUDGET), centre, post)
        assert held[0] < CORRECTIONS  # the budget did cut the first round short
        assert len(held) > 2 and held == sorted(held)
        assert centre.state_digest() == post.state_digest()
        assert centre.knowledge() == post.knowledge()


def test_pull_under_a_budget_takes_vital_events_first(post: Replica) -> None:
    with target("district") as site:
        t = LoopbackTransport(post, me=site.id, max_bundle_bytes=BUDGET)
        held = rounds(lambda: sync(site, t, push=False, max_bytes_per_round=BUDGET), site, post)
        assert held[0] < CORRECTIONS and len(held) > 2
        assert site.state_digest() == post.state_digest()


def test_without_priorities_corrections_go_first() -> None:
    """The same backlog with default priorities: the first budgeted round stops at the
    corrections (stream order), before the doses (so the tests above can fail)."""
    with source(priorities=None) as rep, target() as centre:
        report = sync(rep, LoopbackTransport(centre), pull=False, max_bytes_per_round=BUDGET)
        assert report.more and count(centre, "doses") == 0


def test_trust_is_always_first_and_a_budget_must_be_positive(post: Replica) -> None:
    assert post.priorities["_trust"] == 0
    rep = Replica.open(":memory:", identity=Identity(b"\x09" * 32), priorities={"_trust": 500})
    assert rep.priorities["_trust"] == 0
    with pytest.raises(UsageError):
        sync(post, LoopbackTransport(rep), max_bytes_per_round=0)


def test_budgeted_push_over_http(tmp_path: object) -> None:
    """A real server on loopback: the site pushes with a budget; the centre has every
    birth and dose after the first round and everything after the last."""
    with source() as post, target() as centre:
        with LiveServer(create_app(centre)) as srv:
            t: Transport = HTTPTransport(srv.url, post.identity, backoff=0.001)
            with t:
                held = rounds(
                    lambda: sync(post, t, pull=False, max_bytes_per_round=BUDGET), centre, post
                )
        assert held[0] < CORRECTIONS and len(held) > 2
        assert centre.state_digest() == post.state_digest()


def test_budgeted_pull_over_http_closes_the_answer_and_resumes() -> None:
    """A site pulls a backlog of several server bundles (at least 1 MiB each, the
    server's floor) with a 1 MiB budget: the first round stops after the bundle that
    reaches it, every birth and dose in hand, and the next rounds bring the rest."""
    with Replica.open(
        ":memory:", identity=Identity(b"\x0a" * 32, "centre"), priorities=PRIORITIES
    ) as centre:
        centre.put_many(
            "corrections", {f"c{i:05d}": {"blob": os.urandom(200)} for i in range(12_000)}
        )
        for i in range(VITAL):
            centre.put("births", f"b{i}", {"child": i})
            centre.put("doses", f"d{i}", {"lot": "L1"})
        with target("district") as site:
            app = create_app(centre, max_pull_bundle_bytes=1 << 20)
            with LiveServer(app) as srv:
                t = HTTPTransport(srv.url, site.identity, backoff=0.001)
                with t:
                    first = sync(site, t, push=False, max_bytes_per_round=1 << 20)
                    assert first.more and first.received_bytes < 3 << 20  # cut short
                    assert count(site, "births") == VITAL and count(site, "doses") == VITAL
                    assert count(site, "corrections") < 12_000
                    for _ in range(10):
                        if not sync(site, t, push=False, max_bytes_per_round=1 << 20).more:
                            break
            assert site.state_digest() == centre.state_digest()
