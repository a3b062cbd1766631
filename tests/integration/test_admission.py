"""Admission (docs/scale.md): a request that finds every slot taken waits its turn in a
bounded queue for a bounded time; 503 only when the queue is full or the wait is over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from offsync import Identity, Replica
from offsync.http.state import ServerState
from offsync.server import create_app
from tests.helpers.http import LiveServer


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], limit: float = 30) -> Any:
    """Poll until ``done(get())`` (bounded): a condition another thread brings about."""
    deadline = time.monotonic() + limit
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting; last value {value!r}"
        time.sleep(0.01)


def site_bundle(records: int, label: str = "site") -> tuple[Replica, bytes]:
    site = Replica.open(":memory:", identity=Identity.generate(label=label))
    with site.batch():
        for i in range(records):
            site.put("residents", f"{label}{i}", {"n": i})
    (bundle,) = site.pack()
    return site, bundle


def put_bundle(url: str, bundle: bytes) -> httpx.Response:
    return httpx.put(f"{url}/bundles/{hash_hex(bundle)}", content=bundle, timeout=60)


def in_thread(fn: Callable[[], httpx.Response]) -> tuple[threading.Thread, list[httpx.Response]]:
    out: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


@pytest.fixture
def centre() -> Iterator[Replica]:
    rep = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    yield rep
    rep.close()


def test_an_upload_waits_for_a_slot_instead_of_503(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=1, admission_wait=60)
    state: ServerState = app.state.offsync
    site, bundle = site_bundle(5)
    assert state.try_acquire()  # the test holds the only slot
    with LiveServer(app) as srv:
        thread, answers = in_thread(lambda: put_bundle(srv.url, bundle))
        wait_for(lambda: state.waiting, lambda n: n == 1)
        assert (
            centre.knowledge().restrict_origins([site.id]).count() == 0
        )  # not applied while it waits
        state.release()  # handed straight to the waiting upload
        thread.join(60)
    assert answers[0].status_code == 200 and answers[0].json()["applied"] == 5
    assert state.refused_busy == 0 and state.in_flight == 0 and state.waiting == 0
    assert centre.state_digest() == site.state_digest()


def test_a_freed_slot_goes_to_the_first_in_line_not_to_a_newcomer(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=1, admission_wait=60)
    state: ServerState = app.state.offsync
    assert state.try_acquire()
    with LiveServer(app) as srv:
        first, answers = in_thread(lambda: put_bundle(srv.url, site_bundle(3, "a")[1]))
        wait_for(lambda: state.waiting, lambda n: n == 1)
        state.release()
        # The slot passed to the waiting upload: in_flight never fell to 0, so a
        # newcomer (here: the test) finds none free until that upload is done.
        first.join(60)
        assert answers[0].status_code == 200
    assert state.in_flight == 0 and state.try_acquire()
    state.release()


def test_a_full_queue_answers_503_at_once(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=1, admission_wait=60, max_waiting=1)
    state: ServerState = app.state.offsync
    site, bundle = site_bundle(4)
    assert state.try_acquire()
    with LiveServer(app) as srv:
        thread, answers = in_thread(lambda: put_bundle(srv.url, bundle))
        wait_for(lambda: state.waiting, lambda n: n == 1)
        refused = put_bundle(srv.url, site_bundle(2, "other")[1])  # no room in the queue
        assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
        assert state.refused_busy == 1 and state.waiting == 1
        state.release()
        thread.join(60)
    assert (
        answers[0].status_code == 200
        and centre.knowledge().restrict_origins([site.id]).count() == 4
    )
    assert state.in_flight == 0


def test_a_wait_that_runs_out_answers_503_and_leaves_the_queue(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=1, admission_wait=0.2, retry_after=7)
    state: ServerState = app.state.offsync
    site, bundle = site_bundle(3)
    assert state.try_acquire()
    with LiveServer(app) as srv:
        refused = put_bundle(srv.url, bundle)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
        assert state.waiting == 0 and state.in_flight == 1  # only the test's slot
        state.release()
        assert put_bundle(srv.url, bundle).status_code == 200
    assert state.refused_busy == 1 and state.in_flight == 0
    assert centre.knowledge().restrict_origins([site.id]).count() == 3


def test_a_client_that_hangs_up_while_waiting_costs_only_its_turn(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=1, admission_wait=60)
    state: ServerState = app.state.offsync
    site, bundle = site_bundle(3)
    assert state.try_acquire()
    with LiveServer(app) as srv:
        with pytest.raises(httpx.TimeoutException):
            httpx.put(f"{srv.url}/bundles/{hash_hex(bundle)}", content=bundle, timeout=0.3)
        assert state.waiting == 1  # uvicorn notices a hang-up only when it reads
        state.release()
        # The request got its turn, found its client gone and gave the slot back; the
        # site's next try is served.
        wait_for(lambda: state.in_flight, lambda n: n == 0)
        again = put_bundle(srv.url, bundle)
        assert again.status_code == 200 and again.json()["status"] in {"applied", "duplicate"}
    assert state.waiting == 0 and state.in_flight == 0 and state.refused_busy == 0
    assert centre.state_digest() == site.state_digest()


def hash_hex(bundle: bytes) -> str:
    from offsync.segment import hash32

    return hash32(bundle).hex()


# -- one receipt for the uploads applied while the first waited for it ----------------


def test_a_receipt_built_after_several_applies_answers_them_all(centre: Replica) -> None:
    from offsync.receipt import Receipt

    state: ServerState = create_app(centre).state.offsync
    a, bundle_a = site_bundle(3, "a")
    b, bundle_b = site_bundle(4, "b")
    centre.apply(bundle_a)
    first = state.applied()
    centre.apply(bundle_b)
    second = state.applied()
    assert state.built_after(first) is None  # none built yet
    shared = state.receipt_after(first)  # built now: after both commits
    held = Receipt.decode(shared).knowledge
    assert held.restrict_origins([a.id]).count() == 3 and held.restrict_origins([b.id]).count() == 4
    assert state.built_after(second) is shared
    assert state.receipt_after(second) is shared  # not built again
    centre.apply(site_bundle(2, "c")[1])
    third = state.applied()
    assert state.built_after(third) is None  # never one from before its commit
    assert state.receipt_after(third) != shared


def test_the_receipt_is_built_at_once_unless_others_wait_for_the_replica(
    centre: Replica,
) -> None:
    state: ServerState = create_app(centre).state.offsync
    centre.apply(site_bundle(2, "a")[1])
    alone = state.applied()
    built = state.receipt_now(alone)  # nobody waits: built in the same hold
    assert built is not None and state.built_after(alone) is built
    centre.apply(site_bundle(2, "b")[1])
    crowded = state.applied()
    done = threading.Event()
    with centre.lock:  # another request waits for the replica meanwhile
        waiter = threading.Thread(target=lambda: state.run_locked(done.set))
        waiter.start()
        wait_for(lambda: state._lock_waiters, lambda n: n == 1)
        assert state.receipt_now(crowded) is None  # left to a receipt built later
    waiter.join(30)
    assert done.is_set() and state._lock_waiters == 0
    later = state.receipt_after(crowded)
    assert later is not built and state.built_after(crowded) is later


def test_the_queue_is_seen_in_the_metrics(centre: Replica) -> None:
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    from tests.helpers.metrics import scrape, value

    app = create_app(centre, max_in_flight=1, admission_wait=60, metrics=True)
    state: ServerState = app.state.offsync
    assert state.try_acquire()
    with LiveServer(app) as srv:
        thread, answers = in_thread(lambda: put_bundle(srv.url, site_bundle(2)[1]))
        wait_for(lambda: state.waiting, lambda n: n == 1)
        assert value(scrape(srv.url), "offsync_waiting") == 1  # /metrics takes no slot
        state.release()
        thread.join(60)
        assert answers[0].status_code == 200
        assert value(scrape(srv.url), "offsync_waiting") == 0


def test_a_slot_is_freed_when_the_waiter_it_would_go_to_has_no_loop_left(
    centre: Replica,
) -> None:
    import asyncio

    from offsync.http.state import _Waiter

    state: ServerState = create_app(centre, max_in_flight=1).state.offsync
    assert state.try_acquire()
    gone = asyncio.new_event_loop()
    state._waiters.append(_Waiter(gone))
    gone.close()  # as at shutdown: the waiting request will never run again
    state.release()
    assert state.waiting == 0 and state.in_flight == 0
    assert state.try_acquire()
    state.release()
