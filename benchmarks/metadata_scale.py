"""What metadata costs between a centre that knows N sites and one site (issue 18),
in wire format 3 (docs/spec.md §8.2, §15).

For N in 1,000 / 10,000 / 80,000 (``--sites``) a centre is simulated
(``offsync.testing.deployment.simulate``: generated keys, one sealed segment per site in
its index, in its district's partition of ``residents``, one honest bounded receipt
heard from each site, districts of ``--district`` sites). Measured, with the sender
rule of spec §8.2 ("after") and the rule before issue 18 ("before":
``Replica.bounded_receipts = False``: our receipt states everything held, every
receipt heard is passed on, every round sends a bundle and asks ``GET /knowledge``),
in the same run:

* the receipt-only answer to a pull by a scoped site (read scope: its district's
  partition) and by an unscoped one (it holds every origin's), packed in process as
  the server packs;
* a relay's answer: a pull with ``relays_for`` naming 100 sites (one subject receipt
  each);
* an idle HTTP round and a one-change HTTP round between the centre, served by
  uvicorn on loopback, and a real site that may read its own changes and the centre's:
  requests, bytes up and down (counted at the server), wall and CPU time (client and
  server share this process);
* the digest exchange (§15.2) of a site whose scope is a province (a tenth of the
  districts) and that lacks one change: its first request (group digests), the
  ``409`` naming the differing groups, the second request with their detail, and the
  server's work for both; beside it, the same site's request stating its knowledge
  whole;
* the answers outside a pull: a duplicate upload's (the same bundle uploaded again,
  its first answer lost) and ``GET /knowledge``'s, bytes down and time;
* at the largest N: the process's peak RSS, and tracemalloc's peak and CPU during one
  answer.

Nothing is asserted: figures depend on the machine (CPU beside wall: it is shared).

    .venv/bin/python benchmarks/metadata_scale.py                  # 1,000 / 10,000 / 80,000
    .venv/bin/python benchmarks/metadata_scale.py --sites 1000     # quick
"""

from __future__ import annotations

import argparse
import resource
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import uvicorn

from offsync import Identity, Knowledge, Replica, sync
from offsync.http.pull import (
    PullRequest,
    differing_groups,
    effective_knowledge,
    encode_groups,
)
from offsync.scope import Scope
from offsync.segment import hash32
from offsync.server import create_app
from offsync.testing.deployment import Deployment, answer, district_partition, simulate
from offsync.transports.http import HTTPTransport

Cost = tuple[float, float]  # wall, CPU seconds
#: The simulated deployment's partition rule (``offsync.testing.deployment``).
PARTITIONS = {"residents": 5}


@dataclass
class Traffic:
    """Requests and body bytes an app saw (counted by ``Counting``)."""

    requests: int = 0
    up: int = 0
    down: int = 0

    def reset(self) -> None:
        self.requests = self.up = self.down = 0


class Counting:
    """ASGI middleware counting requests and the bytes of their bodies both ways."""

    def __init__(self, app: Any, traffic: Traffic) -> None:
        self.app, self.traffic = app, traffic

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.traffic.requests += 1

        async def counted_receive() -> Any:
            message = await receive()
            self.traffic.up += len(message.get("body", b""))
            return message

        async def counted_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                self.traffic.down += len(message.get("body", b""))
            await send(message)

        await self.app(scope, counted_receive, counted_send)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@contextmanager
def serving(app: Any) -> Iterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, log_level="warning", lifespan="off"
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    server.ready.wait(60)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


def timed(fn: Callable[[], Any]) -> tuple[Any, Cost]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - wall, time.process_time() - cpu)


def _row(n: int, what: str, rule: str, requests: str, up: int, down: int, cost: Cost) -> None:
    print(
        f"| {n:,} | {what} | {rule} | {requests} | {up:,} | {down:,} | "
        f"{cost[0] * 1000:,.1f} | {cost[1] * 1000:,.1f} |",
        flush=True,
    )


def answers(n: int, dep: Deployment) -> None:
    i = n // 2
    scoped = dep.scoped_knowledge(i)
    everything = dep.centre.knowledge()
    answer(dep, i, scoped, scoped=True)  # warm: the centre indexes the receipts it heard
    for bounded in (False, True):
        dep.centre.bounded_receipts = bounded
        rule = "after" if bounded else "before"
        for what, stated, in_scope in (
            ("receipt-only answer, scoped site", scoped, True),
            ("receipt-only answer, unscoped site", everything, False),
        ):
            got = answer(dep, i, stated, scoped=in_scope)
            over = got.within()
            note = f"1 ({', '.join(over)} reached)" if over else "1"
            _row(n, what, rule, note, got.request_bytes, got.bytes, (got.seconds, got.cpu_seconds))
    dep.centre.bounded_receipts = True
    subjects = tuple(dep.sites[:100])
    got = answer(dep, i, scoped, scoped=True, relays_for=subjects)
    what = f"relay's answer, relays_for 100 sites ({got.bundles} bundle, {got.receipts} receipts)"
    _row(n, what, "after", "1", got.request_bytes, got.bytes, (got.seconds, got.cpu_seconds))


def rounds(n: int, dep: Deployment, rules: tuple[bool, ...] = (False, True)) -> None:
    """An idle round and a one-change round over HTTP, for each rule, each with a site
    of its own (first contact and one settling round not measured)."""
    centre = dep.centre
    prefix = dep.partition_of(n // 2).prefix
    traffic = Traffic()
    readers: set[bytes] = {centre.id}
    # Each site may read only _trust: a scoped site (its own streams' receipts come back).
    app = Counting(create_app(centre, readable=lambda s: Scope.whole("_trust")), traffic)
    with serving(app) as url:
        for bounded in rules:
            rule = "after" if bounded else "before"
            site = Replica.open(
                ":memory:", identity=Identity.generate(label=rule), partitions=PARTITIONS
            )
            readers.add(site.id)
            centre.bounded_receipts = site.bounded_receipts = bounded
            t = HTTPTransport(url, site.identity, server_key=centre.id)
            t.receipt_in_pull = bounded  # before: every round asked GET /knowledge
            try:
                site.put("residents", f"{prefix}0001", {"n": 0})
                sync(site, t)
                sync(site, t)
                traffic.reset()
                report, cost = timed(partial(sync, site, t))
                refused = f", {len(report.refused)} refused" if report.refused else ""
                what = f"idle HTTP round ({report.sent_bundles} uploads{refused})"
                _row(n, what, rule, str(traffic.requests), traffic.up, traffic.down, cost)
                site.put("residents", f"{prefix}0002", {"n": 1})
                traffic.reset()
                report, cost = timed(partial(sync, site, t))
                what = f"one-change HTTP round ({report.sent_changes} sent{refused})"
                _row(n, what, rule, str(traffic.requests), traffic.up, traffic.down, cost)
            finally:
                t.close()
                site.close()
    centre.bounded_receipts = True


def unpulled(n: int, dep: Deployment) -> None:
    """A duplicate upload's answer and ``GET /knowledge``'s, for each rule: before,
    both stated every origin the centre holds; after, the uploader's needs and the
    centre's own origin."""
    centre = dep.centre
    traffic = Traffic()
    with (
        serving(Counting(create_app(centre), traffic)) as url,
        httpx.Client(base_url=url, timeout=300) as http,
    ):
        for bounded in (False, True):
            rule = "after" if bounded else "before"
            centre.bounded_receipts = bounded
            site = Replica.open(
                ":memory:", identity=Identity.generate(label=rule), partitions=PARTITIONS
            )
            try:
                site.put("residents", "000000001", {"n": 0})
                bundle = site.pack()[0]
                path = f"/bundles/{hash32(bundle).hex()}"
                assert http.put(path, content=bundle).json()["status"] == "applied"
                traffic.reset()
                answered, cost = timed(partial(http.put, path, content=bundle))
                assert answered.json()["status"] == "duplicate"
                what = "duplicate upload answer"
                _row(n, what, rule, str(traffic.requests), traffic.up, traffic.down, cost)
                traffic.reset()
                answered, cost = timed(partial(http.get, "/knowledge"))
                assert answered.status_code == 200
                _row(n, "GET /knowledge", rule, str(traffic.requests), 0, traffic.down, cost)
            finally:
                site.close()
    centre.bounded_receipts = True


def digests(n: int, dep: Deployment) -> None:
    """The digest exchange (§15.2) of a site whose scope is a province (a tenth of the
    districts), lacking one change of one district, against its whole knowledge."""
    centre = dep.centre
    districts = max(1, n // dep.district // 10)
    scope = Scope({"residents": [district_partition(d).prefix for d in range(districts)]})
    mine = centre.knowledge().restrict(scope)  # what the server compares: the site's scope
    lacking = next(iter(mine.streams()))
    held = mine - Knowledge.of(lacking, dep.changes, dep.changes)
    site = f"province of {districts * dep.district:,} sites"
    whole = PullRequest.make(held, 1 << 24, digests=False).encode()
    first = PullRequest.make(held, 1 << 24, digests=True)

    def exchange() -> tuple[bytes, PullRequest, Knowledge]:
        groups = differing_groups(first, mine)
        second = first.with_detail(held, groups)
        assert not differing_groups(second, mine)
        return encode_groups(groups), second, mine - effective_knowledge(second, mine)

    (body, second, delta), cost = timed(exchange)
    assert delta == Knowledge.of(lacking, dep.changes, dep.changes)
    up = len(first.encode()) + len(second.encode())
    _row(n, f"digest exchange, {site} (409 + detail)", "digests", "2", up, len(body), cost)
    _, cost = timed(lambda: mine - PullRequest.decode(whole).knowledge)
    _row(n, f"the same, knowledge whole, {site}", "whole", "1", len(whole), 0, cost)


def memory(n: int, dep: Deployment) -> None:
    i = n // 3
    scoped = dep.scoped_knowledge(i)
    tracemalloc.start()
    got = answer(dep, i, scoped, scoped=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\ncentre at {n:,} sites: peak RSS of this process {rss:,.0f} MiB (simulation "
        f"included); tracemalloc peak during one answer {peak / 2**20:,.1f} MiB; "
        f"CPU per answer {got.cpu_seconds * 1000:,.1f} ms (wall {got.seconds * 1000:,.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[1_000, 10_000, 80_000])
    parser.add_argument("--district", type=int, default=8)
    args = parser.parse_args()
    print(
        "| sites | what | rule | requests | bytes up | bytes down | wall ms | CPU ms |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|"
    )
    for n in args.sites:
        # Real signatures up to 10,000 sites (the site verifies what it is sent); beyond,
        # random ones (sizes are the same), so the rounds there run with the new rule
        # only (the old rule's answer would carry receipts the site cannot verify).
        signed = n <= 10_000
        dep = simulate(n, district=args.district, sign=signed)
        answers(n, dep)
        rounds(n, dep, (False, True) if signed else (True,))
        digests(n, dep)
        unpulled(n, dep)
        if n == max(args.sites):
            memory(n, dep)
        dep.centre.close()


if __name__ == "__main__":
    main()
