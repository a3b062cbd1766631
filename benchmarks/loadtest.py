"""Load test of the centre: many sites flood a multi-worker server on one PostgreSQL.

    .venv/bin/python benchmarks/loadtest.py --sites 100 --backlog 60 --workers 3

What it does, all on this machine (loopback only, bounded in count and time):

1. Makes ``--sites`` SQLite site replicas, each with a backlog of ``--backlog`` writes
   (residents, doses, addresses; a share of the records is written by several sites, so
   the centre merges concurrent edits) packed into bundles of at most ``--bundle-bytes``.
2. Starts ``uvicorn --factory offsync.centre:app_from_env --workers N`` on a free
   loopback port, over a fresh schema of the PostgreSQL database ``--dsn``.
3. Every site pushes its bundles at once (asyncio + httpx, one task per site) with
   ``PUT /bundles/{id}``: on 503 it waits Retry-After (with jitter) and tries again; it
   also re-sends a bundle now and then (a duplicate delivery) and sometimes forgets the
   answer and sends again (a lost response).
4. Reports changes/s ingested, 503 rate and latency percentiles; then checks that the
   centre holds every change exactly once (rows in ``changes`` and distinct change ids
   equal the number written, no overlapping segments) and that its state digest equals
   that of a SQLite replica fed the same bundles; prints the tables' sizes.

Exit status 0 when every check passes. The schema is dropped at the end (``--keep`` keeps
it). Needs the http and postgres extras and a PostgreSQL server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from offsync import Identity, Replica, policies
from offsync.segment import hash32
from offsync.stores.postgres import PostgresStore

POLICY_SPEC = "residents=lww,doses=fww,addresses=multi"
POLICIES = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
    "addresses": policies.MultiValue(),
}
PASSPHRASE = "loadtest"


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200
    requests: int = 0
    busy: int = 0  # 503
    errors: dict[str, int] = field(default_factory=dict)  # answers that end a site's push
    retried: dict[str, int] = field(default_factory=dict)  # connection errors, tried again
    duplicates_sent: int = 0
    lost_answers: int = 0


def make_sites(
    n: int, backlog: int, per_bundle: int, bundle_bytes: int, seed: int
) -> tuple[list[list[bytes]], int]:
    """Bundles per site and the number of changes written.

    A site packs what is new every ``per_bundle`` writes (a day's work), so its backlog
    is a chain of bundles, each carrying the next segment of its origin.
    """
    rng = random.Random(seed)
    shared_keys = [f"3519{i:012d}" for i in range(max(10, n * backlog // 20))]
    out: list[list[bytes]] = []
    total = 0
    for s in range(n):
        site = Replica.open(
            ":memory:", identity=Identity.generate(label=f"site-{s}"), policies=POLICIES
        )
        bundles: list[bytes] = []
        for day in range(0, backlog, per_bundle):
            before = site.knowledge()
            with site.batch():
                for i in range(day, min(backlog, day + per_bundle)):
                    # One write in ten is to a record other sites write too.
                    own = f"35{s:04d}{i:010d}"
                    key = rng.choice(shared_keys) if rng.random() < 0.1 else own
                    r = rng.random()
                    if r < 0.7:
                        site.put(
                            "residents",
                            key,
                            {"name": f"resident {s}-{i}", "village": "Kare", "born": 1990 + i % 30},
                        )
                    elif r < 0.85 and site.get("doses", key + "/1") is None:
                        site.put("doses", key + "/1", {"vaccine": "CoronaVac", "site": s})
                    else:
                        site.put("addresses", key, {"street": f"Jl. {s}", "rt": i % 20})
            bundles += site.pack(before, max_bytes=bundle_bytes)
        total += site.seq
        out.append(bundles)
        site.close()
    return out, total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def push_site(
    client: httpx.AsyncClient,
    bundles: list[bytes],
    rng: random.Random,
    stats: Stats,
    deadline: float,
    dup_rate: float,
    lost_rate: float,
) -> None:
    queue = list(bundles)
    while queue:
        bundle = queue.pop(0)
        bundle_id = hash32(bundle).hex()
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("load test deadline passed")
            start = time.perf_counter()
            stats.requests += 1
            try:
                response = await client.put(f"/bundles/{bundle_id}", content=bundle)
            except httpx.TransportError as exc:  # a dropped connection: try again
                name = type(exc).__name__
                stats.retried[name] = stats.retried.get(name, 0) + 1
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                continue
            elapsed = time.perf_counter() - start
            if response.status_code == 503:
                stats.busy += 1
                retry_after = float(response.headers.get("retry-after", "1"))
                await asyncio.sleep(retry_after * rng.uniform(0.5, 1.0))
                continue
            if response.status_code != 200:
                key = f"HTTP {response.status_code}: {response.text[:120]}"
                stats.errors[key] = stats.errors.get(key, 0) + 1
                raise RuntimeError(key)
            stats.latencies.append(elapsed)
            if rng.random() < lost_rate:  # the answer "never arrived": send it again
                stats.lost_answers += 1
                continue
            break
        if rng.random() < dup_rate:  # a courier delivers the same bundle again later
            stats.duplicates_sent += 1
            queue.insert(rng.randrange(len(queue) + 1), bundle)


async def push_all(
    url: str,
    sites: list[list[bytes]],
    seed: int,
    deadline: float,
    dup_rate: float,
    lost_rate: float,
) -> Stats:
    stats = Stats()
    limits = httpx.Limits(max_connections=len(sites), max_keepalive_connections=len(sites))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        await asyncio.gather(
            *(
                push_site(
                    client,
                    bundles,
                    random.Random(seed * 1000 + i),
                    stats,
                    deadline,
                    dup_rate,
                    lost_rate,
                )
                for i, bundles in enumerate(sites)
            )
        )
    return stats


def _direct_worker(
    dsn: str, schema: str, seed: bytes, sites: list[list[bytes]], dup_rate: float, rng_seed: int
) -> tuple[list[float], int]:
    """One worker process applying its sites' bundles straight to the store (no HTTP)."""
    store = PostgresStore(dsn, schema=schema)
    replica = Replica(store, Identity(seed, "centre"), POLICIES)
    rng = random.Random(rng_seed)
    latencies: list[float] = []
    duplicates = 0
    queue = [b for bundles in sites for b in bundles]
    while queue:
        bundle = queue.pop(0)
        start = time.perf_counter()
        replica.apply(bundle)
        replica.receipt()  # what the server answers with
        latencies.append(time.perf_counter() - start)
        if rng.random() < dup_rate:
            duplicates += 1
            queue.insert(rng.randrange(len(queue) + 1), bundle)
    replica.close()
    return latencies, duplicates


def push_direct(
    dsn: str, schema: str, seed: bytes, sites: list[list[bytes]], workers: int, args: Any
) -> Stats:
    import multiprocessing

    shares = [sites[i::workers] for i in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = pool.starmap(
            _direct_worker,
            [
                (dsn, schema, seed, share, args.dup_rate, args.seed + i)
                for i, share in enumerate(shares)
            ],
        )
    stats = Stats()
    for latencies, duplicates in results:
        stats.latencies += latencies
        stats.duplicates_sent += duplicates
        stats.requests += len(latencies)
    return stats


def wait_for_server(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode}")
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer in time")


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def table_sizes(store: PostgresStore) -> list[tuple[str, int, int, int, int]]:
    """(table, rows, heap bytes, index bytes, total bytes) of the store's tables."""
    out = []
    for table in ("changes", "records", "segments", "peers", "meta", "outbox"):
        (rows,) = store._q(f"SELECT count(*) FROM {table}")[0]
        heap, idx, total = store._q(
            "SELECT pg_table_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (store.schema, table),
        )[0]
        out.append((table, rows, heap, idx, total))
    return out


def serve_and_push(
    args: Any, schema: str, centre: Identity, tmp: Path, sites: list[list[bytes]]
) -> Stats:
    """Run uvicorn with ``args.workers`` centre workers and push every site's backlog."""
    key = tmp / "centre.key"
    centre.save(key, PASSPHRASE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        OFFSYNC_POSTGRES=args.dsn,
        OFFSYNC_SCHEMA=schema,
        OFFSYNC_IDENTITY=str(key),
        OFFSYNC_PASSPHRASE=PASSPHRASE,
        OFFSYNC_POLICIES=POLICY_SPEC,
        OFFSYNC_MAX_IN_FLIGHT=str(args.max_in_flight),
        OFFSYNC_RETRY_AFTER=str(args.retry_after),
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "offsync.centre:app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    command += ["--log-level", "warning", "--no-access-log"]
    with open(tmp / "uvicorn.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_server(url, proc)
            print(f"uvicorn: {args.workers} workers on {url}, {args.max_in_flight} in flight each")
            return asyncio.run(
                push_all(
                    url,
                    sites,
                    args.seed,
                    time.monotonic() + args.timeout,
                    args.dup_rate,
                    args.lost_rate,
                )
            )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode not in (0, -15):
                print((tmp / "uvicorn.log").read_text()[-3000:])


def report(stats: Stats, elapsed: float, total: int, n_bundles: int) -> None:
    lat = [x * 1000 for x in stats.latencies]
    print(
        f"pushed in {elapsed:.1f}s: {total / elapsed:,.0f} changes/s ingested, "
        f"{n_bundles / elapsed:,.0f} bundles/s"
    )
    others = sum(stats.errors.values())
    print(
        f"requests {stats.requests}: answered {len(lat)}, 503 {stats.busy} "
        f"({100 * stats.busy / max(1, stats.requests):.1f}%), other {others} {stats.errors or ''}"
    )
    print(
        f"duplicate deliveries {stats.duplicates_sent}, lost answers re-sent {stats.lost_answers}"
    )
    if stats.retried:
        print(f"connection errors, tried again: {stats.retried}")
    print(
        "latency ms (answered): "
        f"p50 {percentile(lat, 50):.0f}  p90 {percentile(lat, 90):.0f}  "
        f"p99 {percentile(lat, 99):.0f}  max {max(lat, default=0):.0f}  "
        f"mean {statistics.fmean(lat) if lat else 0:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=60, help="writes per site")
    parser.add_argument("--per-bundle", type=int, default=20, help="writes per bundle")
    parser.add_argument("--bundle-bytes", type=int, default=1 << 20, help="max bytes per bundle")
    parser.add_argument("--workers", type=int, default=3, help="uvicorn worker processes")
    parser.add_argument("--max-in-flight", type=int, default=4, help="per worker")
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--lost-rate", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the push phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "OFFSYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the schema afterwards")
    parser.add_argument(
        "--direct",
        action="store_true",
        help="no HTTP: --workers processes apply the bundles straight to the store",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 8 or not 1 <= args.sites <= 1000:
        parser.error("1-8 workers and 1-1000 sites")

    schema = f"offsync_load_{uuid.uuid4().hex[:10]}"
    t0 = time.perf_counter()
    sites, total = make_sites(
        args.sites, args.backlog, args.per_bundle, args.bundle_bytes, args.seed
    )
    n_bundles = sum(len(b) for b in sites)
    print(
        f"{args.sites} sites, {total} changes in {n_bundles} bundles "
        f"({sum(len(x) for b in sites for x in b) / 1e6:.1f} MB), made in {time.perf_counter() - t0:.1f}s"
    )
    centre_seed = os.urandom(32)
    centre = Identity(centre_seed, "centre")
    first = PostgresStore(args.dsn, schema=schema)  # migrate once, before the workers start
    wal_before = first._q("SELECT pg_current_wal_lsn()")[0][0]
    first.close()
    ok = False
    with tempfile.TemporaryDirectory(prefix="offsync-load-") as tmp:
        t1 = time.perf_counter()
        if args.direct:
            print(f"direct: {args.workers} worker processes apply without HTTP")
            stats = push_direct(args.dsn, schema, centre_seed, sites, args.workers, args)
        else:
            stats = serve_and_push(args, schema, centre, Path(tmp), sites)
        elapsed = time.perf_counter() - t1
        report(stats, elapsed, total, n_bundles)
        store = PostgresStore(args.dsn, schema=schema)
        try:
            (wal,) = store._q("SELECT pg_current_wal_lsn() - %s::pg_lsn", (wal_before,))[0]
            print(
                f"WAL written meanwhile (whole server): {int(wal) / 1e6:.1f} MB, "
                f"{int(wal) / total:,.0f} bytes/change"
            )
            rows, distinct = store._q(
                "SELECT count(*), count(DISTINCT (origin, seq)) FROM changes"
            )[0]
            overlaps = store._q(
                "SELECT count(*) FROM segments a JOIN segments b ON a.origin = b.origin"
                " AND a.first_seq < b.first_seq AND b.first_seq <= a.last_seq"
            )[0][0]
            t2 = time.perf_counter()
            reference = Replica.open(
                str(Path(tmp) / "reference.sqlite"), identity=centre, policies=POLICIES
            )
            for site_bundles in sites:
                for bundle in site_bundles:
                    reference.apply(bundle)
            t3 = time.perf_counter()
            centre_view = Replica(store, centre, POLICIES)
            same = centre_view.state_digest() == reference.state_digest()
            same_knowledge = centre_view.knowledge() == reference.knowledge()
            print(
                f"(one SQLite replica applying the same bundles alone: {total / (t3 - t2):,.0f} changes/s)"
            )
            checks = {
                f"changes rows == written ({rows} == {total})": rows == total,
                f"no change twice ({distinct} distinct ids)": distinct == rows,
                "no overlapping segments": overlaps == 0,
                "state digest == SQLite replica fed the same bundles": same,
                "knowledge == SQLite replica's": same_knowledge,
                "no request failed for good": not stats.errors,
            }
            for what, passed in checks.items():
                print(f"  [{'ok' if passed else 'FAIL'}] {what}")
            ok = all(checks.values())
            print("table        rows      heap KiB   index KiB   total KiB   bytes/change")
            for table, n, heap, idx, tot in table_sizes(store):
                print(
                    f"{table:10} {n:8} {heap / 1024:11.0f} {idx / 1024:11.0f} {tot / 1024:11.0f} {tot / max(1, total):12.1f}"
                )
            reference.close()
        finally:
            if args.keep:
                print(f"kept schema {schema}")
                store.close()
            else:
                store.drop()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
