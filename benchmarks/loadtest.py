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
4. Reports changes/s ingested, 503 rate and latency percentiles, and the CPU time spent
   per change by the load generator, the centre's workers and their PostgreSQL backends
   (read from ``/proc``); what the backends waited on (``pg_stat_activity`` sampled
   every 50 ms); WAL, commits and fsyncs meanwhile. Then checks that the centre holds
   every change exactly once (rows in ``changes`` and distinct change ids equal the
   number written, no overlapping segments) and that its state digest equals that of a
   SQLite replica fed the same bundles; prints the tables' sizes.
5. In the same run, before each push, the baselines: the same rows (one per change, the
   ``changes`` table's columns and primary key) written from one process with one
   binary ``COPY``, and with one ``executemany``, each in one transaction. The ingest rate
   is printed as a ratio to both, by wall-clock time and by CPU time.

``--repeat N`` runs the baselines and the push N times (a fresh schema each time, the
same bundles) and prints the median of each figure. Exit status 0 when every check of
every round passes. The schema is dropped at the end (``--keep`` keeps the last one).
Needs the http and postgres extras and a PostgreSQL server on this machine (the CPU
figures of its backends come from ``/proc``; elsewhere they are left out).
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
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo

from offsync import Identity, Replica, policies
from offsync.bundle import open_bundle
from offsync.segment import hash32
from offsync.stores.base import pack_ids
from offsync.stores.postgres import PostgresStore

HERE = Path(__file__).resolve().parent
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
    busy_latencies: list[float] = field(default_factory=list)  # seconds until a 503 came
    busy_bytes: int = 0  # bundle bytes sent in requests answered 503
    backoff: float = 0.0  # seconds the sites slept on Retry-After, summed
    delivery: list[float] = field(default_factory=list)  # first try to 200, per delivery
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by part
    elapsed: float = 0.0  # seconds the push took
    held: int = 0  # 202 held answers (a spooling centre): asked again later
    held_latencies: list[float] = field(default_factory=list)  # seconds, answered 202 held
    upload_latencies: list[float] = field(default_factory=list)  # requests carrying a body


# -- CPU time of processes, from /proc (Linux) ---------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of these live processes."""
    out = {}
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            out[pid] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def cpu_stall() -> float | None:
    """Seconds, since boot, in which some runnable task waited for a CPU (Linux PSI)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(line.rsplit("total=", 1)[1]) / 1e6


def descendants(pid: int) -> list[int]:
    """This process and every live process below it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two samples by the processes alive at both."""
    return sum(after[p] - before[p] for p in after if p in before)


class Backends:
    """The PostgreSQL backends of the connections named ``app``: their CPU time, and
    what they wait on, sampled every ``every`` seconds from ``pg_stat_activity``."""

    def __init__(self, dsn: str, app: str, every: float = 0.05, after: float = 0.0) -> None:
        self.dsn, self.app, self.every, self.after = dsn, app, every, after
        self.waits: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._conn = psycopg.connect(dsn, autocommit=True)
        self.cpu_before: dict[int, float] = {}

    def pids(self) -> list[int]:
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,)
        ).fetchall()
        return [int(r[0]) for r in rows]

    def start(self, cpu: bool = True) -> None:
        """Start sampling waits (and take the backends' CPU times, with ``cpu``)."""
        if cpu:
            self.cpu_before = proc_cpu(self.pids())
        self._thread.start()

    def _sample(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                if time.time() < self.after:  # (epoch seconds) not started yet
                    continue
                for state, kind, event in conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (self.app,),
                ):
                    if state == "active":
                        what = f"{kind}:{event}" if kind else "running (CPU)"
                    else:
                        what = str(state)
                    self.waits[what] += 1

    def stop(self) -> float:
        """Stop sampling; the CPU seconds the backends used since ``start``."""
        self._stop.set()
        self._thread.join()
        used = cpu_delta(self.cpu_before, proc_cpu(self.pids()))
        self._conn.close()
        return used


def server_counters(dsn: str) -> dict[str, float]:
    """Whole-server WAL and fsync counters and this database's transaction counters
    (other sessions on the server count too)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        wal = conn.execute(
            "SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync FROM pg_stat_wal"
        ).fetchone()
        db = conn.execute(
            "SELECT xact_commit, xact_rollback, deadlocks FROM pg_stat_database"
            " WHERE datname = current_database()"
        ).fetchone()
    names = ("wal_records", "wal_fpi", "wal_bytes", "wal_write", "wal_sync")
    out = {n: float(v) for n, v in zip(names, wal or (), strict=False)}
    out.update(zip(("commits", "rollbacks", "deadlocks"), map(float, db or ()), strict=False))
    return out


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
        first_try = time.perf_counter()
        asking = False  # held by a spooling centre: ask what became of it, no body
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("load test deadline passed")
            start = time.perf_counter()
            stats.requests += 1
            try:
                if asking:
                    response = await client.put(
                        f"/bundles/{bundle_id}",
                        content=b"",
                        headers={"Content-Range": f"bytes */{len(bundle)}"},
                    )
                else:
                    response = await client.put(f"/bundles/{bundle_id}", content=bundle)
            except httpx.TransportError as exc:  # a dropped connection: try again
                name = type(exc).__name__
                stats.retried[name] = stats.retried.get(name, 0) + 1
                await asyncio.sleep(rng.uniform(0.05, 0.3))
                continue
            elapsed = time.perf_counter() - start
            if response.status_code == 202 and response.json().get("status") == "held":
                # Held durably, not applied yet: not delivered. Ask again after Retry-After.
                stats.held += 1
                stats.held_latencies.append(elapsed)
                if not asking:
                    stats.upload_latencies.append(elapsed)
                asking = True
                pause = float(response.headers.get("retry-after", "1")) * rng.uniform(0.5, 1.0)
                await asyncio.sleep(pause)
                continue
            if response.status_code == 202:  # it forgot what it held: upload it again
                asking = False
                continue
            if response.status_code == 503:
                stats.busy += 1
                stats.busy_latencies.append(elapsed)
                stats.busy_bytes += len(bundle)
                pause = float(response.headers.get("retry-after", "1")) * rng.uniform(0.5, 1.0)
                stats.backoff += pause
                await asyncio.sleep(pause)
                continue
            if response.status_code != 200:
                key = f"HTTP {response.status_code}: {response.text[:120]}"
                stats.errors[key] = stats.errors.get(key, 0) + 1
                raise RuntimeError(key)
            stats.latencies.append(elapsed)
            if not asking:
                stats.upload_latencies.append(elapsed)
            stats.delivery.append(time.perf_counter() - first_try)
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
    shared_client: bool = False,
) -> Stats:
    """Every site pushes at once; ``stats.elapsed`` and ``stats.cpu`` time the pushing,
    not making the clients.

    Each site has its own client (one connection), as separate machines would. One
    client shared by all sites (``shared_client``) costs the load generator far more CPU
    per request as the sites grow (its connection pool scans every connection for every
    request), which then measures the load generator rather than the centre."""
    stats = Stats()
    if shared_client:
        limits = httpx.Limits(max_connections=len(sites), max_keepalive_connections=len(sites))
        shared = httpx.AsyncClient(base_url=url, timeout=120, limits=limits)
        clients = [shared] * len(sites)
    else:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [httpx.AsyncClient(base_url=url, timeout=120, limits=limits) for _ in sites]
    try:
        cpu, start = time.process_time(), time.perf_counter()
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
                for i, (client, bundles) in enumerate(zip(clients, sites, strict=True))
            )
        )
        stats.elapsed = time.perf_counter() - start
        stats.cpu["load generator"] = time.process_time() - cpu
    finally:
        for client in dict.fromkeys(clients):
            await client.aclose()
    return stats


_READY: Any = None  # a direct worker's barrier: every worker connected, the clock starts


def _direct_init(ready: Any) -> None:
    global _READY
    _READY = ready


def _direct_worker(
    dsn: str,
    schema: str,
    seed: bytes,
    sites: list[list[bytes]],
    dup_rate: float,
    rng_seed: int,
) -> tuple[list[float], int, float, float]:
    """One worker process applying its sites' bundles straight to the store (no HTTP).

    Returns the latencies, the duplicates sent, and the CPU seconds of the apply loop in
    this process and in its PostgreSQL backend (imports and connecting not counted)."""
    store = PostgresStore(dsn, schema=schema)
    replica = Replica(store, Identity(seed, "centre"), POLICIES)
    rng = random.Random(rng_seed)
    latencies: list[float] = []
    duplicates = 0
    queue = [b for bundles in sites for b in bundles]
    backend = int(store._q("SELECT pg_backend_pid()")[0][0])
    _READY.wait()  # every worker starts together
    backend_before = proc_cpu([backend])
    cpu = time.process_time()
    while queue:
        bundle = queue.pop(0)
        start = time.perf_counter()
        replica.apply(bundle)
        replica.receipt()  # what the server answers with
        latencies.append(time.perf_counter() - start)
        if rng.random() < dup_rate:
            duplicates += 1
            queue.insert(rng.randrange(len(queue) + 1), bundle)
    cpu = time.process_time() - cpu
    backend_cpu = cpu_delta(backend_before, proc_cpu([backend]))
    replica.close()
    return latencies, duplicates, cpu, backend_cpu


def push_direct(
    dsn: str,
    schema: str,
    seed: bytes,
    sites: list[list[bytes]],
    workers: int,
    args: Any,
    backends: Backends,
) -> tuple[Stats, float]:
    """Apply every bundle with ``workers`` processes, timed from the moment all of them
    are spawned and connected; the stats and the seconds taken."""
    import multiprocessing

    shares = [sites[i::workers] for i in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(workers + 1)
    with ctx.Pool(workers, initializer=_direct_init, initargs=(ready,)) as pool:
        pending = pool.starmap_async(
            _direct_worker,
            [
                (dsn, schema, seed, share, args.dup_rate, args.seed + i)
                for i, share in enumerate(shares)
            ],
            chunksize=1,
        )
        ready.wait(timeout=120)
        start = time.perf_counter()
        backends.after = time.time()
        results = pending.get(timeout=args.timeout)
        elapsed = time.perf_counter() - start
    stats = Stats()
    stats.cpu = {"load generator": 0.0, "centre workers": 0.0, "postgres backends": 0.0}
    for latencies, duplicates, cpu, backend_cpu in results:
        stats.latencies += latencies
        stats.delivery += latencies
        stats.duplicates_sent += duplicates
        stats.requests += len(latencies)
        stats.cpu["centre workers"] += cpu
        stats.cpu["postgres backends"] += backend_cpu
    return stats, elapsed


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
    args: Any,
    dsn: str,
    app: str,
    schema: str,
    centre: Identity,
    tmp: Path,
    sites: list[list[bytes]],
) -> tuple[Stats, float, Counter[str]]:
    """Run uvicorn with ``args.workers`` centre workers and push every site's backlog;
    the stats, the seconds the push took and what the backends waited on."""
    key = tmp / "centre.key"
    centre.save(key, PASSPHRASE)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        OFFSYNC_POSTGRES=dsn,
        OFFSYNC_SCHEMA=schema,
        OFFSYNC_IDENTITY=str(key),
        OFFSYNC_PASSPHRASE=PASSPHRASE,
        OFFSYNC_POLICIES=POLICY_SPEC,
        OFFSYNC_MAX_IN_FLIGHT=str(args.max_in_flight),
        OFFSYNC_RETRY_AFTER=str(args.retry_after),
    )
    if args.admission_wait is not None:  # 0: a request finding no free slot gets 503 at once
        env["OFFSYNC_ADMISSION_WAIT"] = str(args.admission_wait)
    if args.max_waiting is not None:
        env["OFFSYNC_MAX_WAITING"] = str(args.max_waiting)
    if args.spool:
        env["OFFSYNC_SPOOL"] = str(args.spool)
    factory = "offsync.centre:app_from_env"
    probe_dir = tmp / "probe"
    if args.probe:  # the same worker, timing its requests (benchmarks/centre_probe.py)
        factory = "centre_probe:app_from_env"
        probe_dir.mkdir()
        env["OFFSYNC_PROBE_DIR"] = str(probe_dir)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "uvicorn", "--factory", factory]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers)]
    command += ["--log-level", "warning", "--no-access-log"]
    with open(tmp / "uvicorn.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        backends = Backends(args.dsn, app)
        try:
            wait_for_server(url, proc)
            deadline = time.monotonic() + 60  # every worker connected: imports are done
            while len(backends.pids()) < args.workers and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            print(f"uvicorn: {args.workers} workers on {url}, {args.max_in_flight} in flight each")
            workers_before = proc_cpu(descendants(proc.pid))
            backends.start()
            stats = asyncio.run(
                push_all(
                    url,
                    sites,
                    args.seed,
                    time.monotonic() + args.timeout,
                    args.dup_rate,
                    args.lost_rate,
                    args.shared_client,
                )
            )
            stats.cpu["centre workers"] = cpu_delta(workers_before, proc_cpu(descendants(proc.pid)))
            stats.cpu["postgres backends"] = backends.stop()
            return stats, stats.elapsed, backends.waits
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode not in (0, -15):
                print((tmp / "uvicorn.log").read_text()[-3000:])
            if args.probe:
                from centre_probe import summary

                print("\n".join(summary(probe_dir)))


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.0f}"


def report(stats: Stats, elapsed: float, total: int, n_bundles: int) -> None:
    lat = stats.latencies
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
    if stats.held:
        up = stats.upload_latencies
        print(
            f"spool: {stats.held} answers 202 held (asked again after Retry-After);"
            f" uploads answered in p50 {ms(up, 50)} / p99 {ms(up, 99)} ms;"
            f" receipt (first try to 200 with a receipt covering it):"
            f" p50 {ms(stats.delivery, 50)} / p99 {ms(stats.delivery, 99)} ms"
        )
    if stats.retried:
        print(f"connection errors, tried again: {stats.retried}")
    print(
        f"latency ms (answered): p50 {ms(lat, 50)}  p90 {ms(lat, 90)}  p99 {ms(lat, 99)}"
        f"  max {max(lat, default=0) * 1000:.0f}  mean {statistics.fmean(lat) * 1000 if lat else 0:.0f}"
    )
    if stats.busy:
        d = stats.delivery
        print(
            f"what the 503s cost the sites: {stats.busy / max(1, len(d)):.2f} per delivery,"
            f" answered after p50 {ms(stats.busy_latencies, 50)} / p99"
            f" {ms(stats.busy_latencies, 99)} ms, {stats.busy_bytes / 1e6:.1f} MB sent for"
            f" nothing, {stats.backoff:.0f} s slept on Retry-After (summed over sites)"
        )
        print(
            f"delivery ms (first try to 200, backoffs included): p50 {ms(d, 50)}"
            f"  p90 {ms(d, 90)}  p99 {ms(d, 99)}  max {max(d, default=0) * 1000:.0f}"
        )
    if stats.cpu:
        parts = "  ".join(
            f"{name} {cpu:.1f} s = {cpu / total * 1e6:.0f}" for name, cpu in stats.cpu.items()
        )
        print(f"CPU during the push (s, us/change): {parts}")
        centre = stats.cpu.get("centre workers", 0) + stats.cpu.get("postgres backends", 0)
        machine = centre + stats.cpu.get("load generator", 0)
        if centre:
            print(
                f"changes per centre-CPU-second (workers + backends): {total / centre:,.0f};"
                f" the load generator took {100 * stats.cpu.get('load generator', 0) / machine:.0f}%"
                " of the CPU used"
            )


# -- the baselines: the same rows, written from one process ----------------------------------

RAW_TABLE = (
    "CREATE TABLE {} (collection bytea NOT NULL, key bytea NOT NULL, origin bytea NOT NULL,"
    " seq bigint NOT NULL, hlc bigint NOT NULL, op smallint NOT NULL, fields bytea,"
    " parents bytea, PRIMARY KEY (collection, key, origin, seq))"
)
RAW_COLUMNS = "collection, key, origin, seq, hlc, op, fields, parents"
RAW_TYPES = ["bytea", "bytea", "bytea", "int8", "int8", "int2", "bytea", "bytea"]


def change_rows(sites: list[list[bytes]], centre: Identity) -> list[tuple[Any, ...]]:
    """Every change the sites wrote, as a row of the ``changes`` table (not timed)."""
    rows = []
    for bundles in sites:
        for data in bundles:
            for seg in open_bundle(data, centre).segments:
                for c in seg.open_changes():
                    parents = pack_ids(c.parents) if c.parents else None
                    rows.append(
                        (
                            c.collection.encode(),
                            c.key.encode(),
                            c.origin,
                            c.seq,
                            c.hlc,
                            c.op,
                            c.fields,
                            parents,
                        )
                    )
    return rows


def baselines(dsn: str, rows: list[tuple[Any, ...]]) -> dict[str, dict[str, float]]:
    """Write ``rows`` into a fresh table with one binary COPY, then into another with one
    executemany, each in one transaction, from this process: wall and CPU seconds
    (client, and its backend from /proc)."""
    schema = f"offsync_raw_{uuid.uuid4().hex[:10]}"
    out: dict[str, dict[str, float]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        conn.execute(f"CREATE SCHEMA {schema}")
        try:
            for name in ("copy", "executemany"):
                table = f"{schema}.raw_{name}"
                conn.execute(RAW_TABLE.format(table))
                before, cpu, t = proc_cpu([backend]), time.process_time(), time.perf_counter()
                with conn.transaction(), conn.cursor() as cur:
                    if name == "copy":
                        with cur.copy(
                            f"COPY {table} ({RAW_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                        ) as copy:
                            copy.set_types(RAW_TYPES)
                            for row in rows:
                                copy.write_row(row)
                    else:
                        cur.executemany(
                            f"INSERT INTO {table} ({RAW_COLUMNS}) VALUES"
                            " (%s, %s, %s, %s, %s, %s, %s, %s)",
                            rows,
                        )
                out[name] = {
                    "seconds": time.perf_counter() - t,
                    "client": time.process_time() - cpu,
                    "backend": cpu_delta(before, proc_cpu([backend])),
                }
                (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[misc]
                if count != len(rows):
                    raise RuntimeError(f"baseline {name}: {count} rows, expected {len(rows)}")
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return out


# -- one round: baselines, push, checks --------------------------------------------------------


def one_round(
    args: Any,
    sites: list[list[bytes]],
    total: int,
    rows: list[tuple[Any, ...]],
    centre_seed: bytes,
    reference: Replica,
    first: bool,
    last: bool,
) -> dict[str, Any]:
    """Baselines, then the push into a fresh schema, then the checks; the figures."""
    n_bundles = sum(len(b) for b in sites)
    base = baselines(args.dsn, rows)
    for name, b in base.items():
        cpu = b["client"] + b["backend"]
        print(
            f"baseline {name:11}: {len(rows) / b['seconds']:>9,.0f} rows/s; CPU client"
            f" {b['client'] / len(rows) * 1e6:.1f} + backend {b['backend'] / len(rows) * 1e6:.1f}"
            f" = {cpu / len(rows) * 1e6:.1f} us/row"
        )
    schema = f"offsync_load_{uuid.uuid4().hex[:10]}"
    app = schema.replace("offsync_load_", "offsync-load-")
    dsn = make_conninfo(args.dsn, application_name=app)
    centre = Identity(centre_seed, "centre")
    store = PostgresStore(args.dsn, schema=schema)  # migrate once, before the workers start
    counters = server_counters(args.dsn)
    stall_before, wall_before = cpu_stall(), time.perf_counter()
    ok = False
    try:
        with tempfile.TemporaryDirectory(prefix="offsync-load-") as tmp:
            if args.direct:
                print(f"direct: {args.workers} worker processes apply without HTTP")
                backends = Backends(args.dsn, app, after=float("inf"))
                backends.start(cpu=False)  # the workers measure their backends' CPU
                stats, elapsed = push_direct(
                    dsn, schema, centre_seed, sites, args.workers, args, backends
                )
                backends.stop()
                waits = backends.waits
            else:
                stats, elapsed, waits = serve_and_push(
                    args, dsn, app, schema, centre, Path(tmp), sites
                )
        report(stats, elapsed, total, n_bundles)
        stall_after = cpu_stall()
        pressure = float("nan")
        if stall_before is not None and stall_after is not None:
            pressure = 100 * (stall_after - stall_before) / (time.perf_counter() - wall_before)
            print(
                f"machine: some task waited for a CPU {pressure:.0f}% of the time"
                f" (PSI; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
            )
        after = server_counters(args.dsn)
        delta = {k: after[k] - counters.get(k, 0) for k in after}
        print(
            f"meanwhile (whole server, other sessions included): WAL {delta['wal_bytes'] / 1e6:.1f}"
            f" MB = {delta['wal_bytes'] / total:,.0f} B/change, {delta['wal_fpi']:.0f} full pages;"
            f" {delta['wal_sync']:.0f} WAL fsyncs = {delta['wal_sync'] / n_bundles:.2f} per bundle;"
            f" {delta['commits']:.0f} commits, {delta['rollbacks']:.0f} rollbacks,"
            f" {delta['deadlocks']:.0f} deadlocks in this database"
        )
        seen = sum(waits.values())
        if seen:
            shares = ", ".join(f"{w} {100 * c / seen:.0f}%" for w, c in waits.most_common(8))
            print(f"centre backends, sampled every 50 ms ({seen} samples): {shares}")
        rate = total / elapsed
        centre_cpu = stats.cpu.get("centre workers", 0) + stats.cpu.get("postgres backends", 0)
        figures: dict[str, Any] = {
            "changes/s": rate,
            "503 %": 100 * stats.busy / max(1, stats.requests),
            "p50 ms": percentile(stats.latencies, 50) * 1000,
            "p99 ms": percentile(stats.latencies, 99) * 1000,
            "delivery p99 ms": percentile(stats.delivery, 99) * 1000,
            "centre cpu us/chg": centre_cpu / total * 1e6,
            "changes per centre cpu s": total / max(centre_cpu, 1e-9),
            "upload p99 ms": percentile(stats.upload_latencies, 99) * 1000,
            "client cpu us/chg": stats.cpu.get("load generator", 0) / total * 1e6,
            "fsyncs/bundle": delta["wal_sync"] / n_bundles,
            "cpu pressure %": pressure,
        }
        for name, b in base.items():
            figures[f"{name} rows/s"] = len(rows) / b["seconds"]
            figures[f"x {name}"] = rate * b["seconds"] / len(rows)
            figures[f"x {name} by cpu"] = (b["client"] + b["backend"]) / max(centre_cpu, 1e-9)
        print(
            "ratio to the baselines: "
            + ", ".join(
                f"{figures[f'x {n}']:.3f}x {n} ({figures[f'x {n} by cpu']:.3f}x by CPU)"
                for n in base
            )
            + " (by CPU: the centre's workers and backends against the baseline's client"
            " and backend)"
        )
        # A change id is unique within its stream (origin, partition); the sites here
        # write with one partition per collection, so (origin, collection, seq).
        (rows_held, distinct) = store._q(
            "SELECT count(*), count(DISTINCT (origin, collection, seq)) FROM changes"
        )[0]
        overlaps = store._q(
            "SELECT count(*) FROM segments a JOIN segments b ON a.origin = b.origin"
            " AND a.collection = b.collection AND a.prefix = b.prefix"
            " AND a.first_seq < b.first_seq AND b.first_seq <= a.last_seq"
        )[0][0]
        centre_view = Replica(store, centre, POLICIES)
        checks = {
            f"changes rows == written ({rows_held} == {total})": rows_held == total,
            f"no change twice ({distinct} distinct ids)": distinct == rows_held,
            "no overlapping segments": overlaps == 0,
            "state digest == SQLite replica fed the same bundles": centre_view.state_digest()
            == reference.state_digest(),
            "knowledge == SQLite replica's": centre_view.knowledge() == reference.knowledge(),
            "no request failed for good": not stats.errors,
        }
        for what, passed in checks.items():
            print(f"  [{'ok' if passed else 'FAIL'}] {what}")
        ok = all(checks.values())
        if first:
            print("table        rows      heap KiB   index KiB   total KiB   bytes/change")
            for table, n, heap, idx, tot in table_sizes(store):
                print(
                    f"{table:10} {n:8} {heap / 1024:11.0f} {idx / 1024:11.0f} {tot / 1024:11.0f} {tot / max(1, total):12.1f}"
                )
        figures["ok"] = ok
        return figures
    finally:
        if args.keep and last:
            print(f"kept schema {schema}")
            store.close()
        else:
            store.drop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=60, help="writes per site")
    parser.add_argument("--per-bundle", type=int, default=20, help="writes per bundle")
    parser.add_argument("--bundle-bytes", type=int, default=1 << 20, help="max bytes per bundle")
    parser.add_argument("--workers", type=int, default=3, help="uvicorn worker processes")
    parser.add_argument("--max-in-flight", type=int, default=4, help="per worker")
    parser.add_argument("--retry-after", type=int, default=1)
    parser.add_argument(
        "--admission-wait",
        type=float,
        default=None,
        help="seconds a request may wait for a slot (server default; 0: 503 at once)",
    )
    parser.add_argument("--max-waiting", type=int, default=None, help="requests waiting per worker")
    parser.add_argument(
        "--spool",
        type=int,
        default=0,
        help="the centre spools uploads and applies up to this many bundles per"
        " transaction (OFFSYNC_SPOOL; 0: applied in the request)",
    )
    parser.add_argument("--dup-rate", type=float, default=0.1)
    parser.add_argument("--lost-rate", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for the push phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; prints the median")
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "OFFSYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--keep", action="store_true", help="keep the (last) schema afterwards")
    parser.add_argument(
        "--shared-client",
        action="store_true",
        help="HTTP: one httpx client for all sites (the load generator then costs more)",
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="HTTP: workers time their requests (benchmarks/centre_probe.py) and report",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="no HTTP: --workers processes apply the bundles straight to the store",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 8 or not 1 <= args.sites <= 1000:
        parser.error("1-8 workers and 1-1000 sites")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat: 1-10 rounds")

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
    rows = change_rows(sites, centre)
    if len(rows) != total:
        raise RuntimeError(f"decoded {len(rows)} changes, expected {total}")
    results = []
    with tempfile.TemporaryDirectory(prefix="offsync-load-ref-") as tmp:
        t2 = time.perf_counter()
        reference = Replica.open(
            str(Path(tmp) / "reference.sqlite"), identity=centre, policies=POLICIES
        )
        for site_bundles in sites:
            for bundle in site_bundles:
                reference.apply(bundle)
        print(
            f"(one SQLite replica applying the same bundles alone: "
            f"{total / (time.perf_counter() - t2):,.0f} changes/s)"
        )
        try:
            for r in range(args.repeat):
                if args.repeat > 1:
                    print(f"\n-- round {r + 1} of {args.repeat}")
                results.append(
                    one_round(
                        args,
                        sites,
                        total,
                        rows,
                        centre_seed,
                        reference,
                        first=r == 0,
                        last=r == args.repeat - 1,
                    )
                )
        finally:
            reference.close()
    if args.repeat > 1:
        print(f"\n== median of {args.repeat} rounds (min-max) ==")
        for name in results[0]:
            if name == "ok":
                continue
            values = [x[name] for x in results]
            fmt = ",.0f" if max(values) >= 100 else ".3f"
            print(
                f"{name:22} {statistics.median(values):>12{fmt}}"
                f"   ({min(values):{fmt}} - {max(values):{fmt}})"
            )
    ok = all(x["ok"] for x in results)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
