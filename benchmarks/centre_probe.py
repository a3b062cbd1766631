"""A centre worker that times its own requests: ``loadtest.py --probe`` runs this one.

``app_from_env()`` builds the worker exactly as ``offsync.centre.app_from_env`` does and
wraps, without changing them, the ASGI app (time from the request reaching the app to
the end of the response, and its status), the replica's lock (time waiting for it) and
the replica's ``apply`` and ``receipt`` (wall and thread CPU time). Each worker writes
its records as JSON lines to ``$OFFSYNC_PROBE_DIR/<pid>.jsonl`` as requests end; ``summary``
reads them back. Comparing these with the latencies the load generator saw tells time
spent in the centre from time spent outside it (the client's event loop, connection
pool, the listen queue).
"""

from __future__ import annotations

import contextvars
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from offsync.centre import app_from_env as _app_from_env

T = TypeVar("T")
#: The record of the request being served; anyio copies the context into the worker
#: threads that run the blocking work, so the wrapped calls find it there.
_REC: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("rec", default=None)


def app_from_env() -> Any:
    app = _app_from_env()
    state = app.state.offsync
    replica = state.replica
    # One line per request, written as it ends: uvicorn's worker processes leave through
    # os._exit, so nothing registered to run at exit would.
    out = open(  # noqa: SIM115 - open for the life of the worker
        Path(os.environ["OFFSYNC_PROBE_DIR"]) / f"{os.getpid()}.jsonl", "a", buffering=1
    )

    run_locked = state.run_locked

    def timed_run_locked(fn: Callable[[], T]) -> T:
        asked = time.perf_counter()

        def inner() -> T:
            waited = time.perf_counter() - asked
            rec = _REC.get()
            if rec is not None:
                rec["lock_wait"] = rec.get("lock_wait", 0.0) + waited
            return fn()

        result: T = run_locked(inner)
        return result

    state.run_locked = timed_run_locked

    def timing(name: str, method: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                rec = _REC.get()
                if rec is not None:
                    rec[name] = rec.get(name, 0.0) + time.perf_counter() - wall
                    rec[f"{name}_cpu"] = rec.get(f"{name}_cpu", 0.0) + time.thread_time() - cpu

        return timed

    replica.apply = timing("apply", replica.apply)
    replica.receipt = timing("receipt", replica.receipt)

    def atiming(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            wall = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                rec = _REC.get()
                if rec is not None:
                    rec[name] = rec.get(name, 0.0) + time.perf_counter() - wall

        return timed

    spool, applier = state.spool, state.applier
    if spool is not None and applier is not None:  # a spooling centre (--spool)
        spool.put = atiming("spool_put", spool.put)
        spool.wait = atiming("spool_wait", spool.wait)
        spool.lookup = atiming("spool_lookup", spool.lookup)
        step = applier.step
        idle_steps = [0, 0.0]

        def timed_step() -> int:
            wall, cpu = time.perf_counter(), time.thread_time()
            done: int = step()
            if not done:
                idle_steps[0] += 1
                idle_steps[1] += time.thread_time() - cpu
                rec0 = {"method": "IDLE", "steps": idle_steps[0], "cpu": idle_steps[1]}
                if idle_steps[0] % 20 == 0:
                    out.write(json.dumps(rec0) + "\n")
            if done:
                rec = {"method": "APPLY", "status": 0, "bundles": done}
                rec["total"] = time.perf_counter() - wall
                rec["apply_cpu"] = time.thread_time() - cpu
                out.write(json.dumps(rec) + "\n")
            return done

        applier.step = timed_step

        def thread_cpu() -> None:
            """Every 0.5 s, the CPU seconds so far of the event loop's thread, the spool
            writer's, the applier's and the rest (anyio's worker threads: receipts,
            files), from /proc: where a spooling worker's CPU goes."""
            tick = os.sysconf("SC_CLK_TCK")

            def cpu(tid: int | None) -> float:
                try:
                    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1]
                    parts = fields.split()
                    return (int(parts[11]) + int(parts[12])) / tick
                except (OSError, IndexError, ValueError):
                    return 0.0

            roles = {
                "loop": threading.main_thread().native_id,
                "writer": spool._thread.native_id,
                "applier": applier._thread.native_id if applier._thread else None,
            }
            while True:
                t = os.times()
                rec: dict[str, Any] = {name: cpu(tid) for name, tid in roles.items()}
                rec["all"] = t.user + t.system
                rec["method"] = "THREADS"
                out.write(json.dumps(rec) + "\n")
                time.sleep(0.5)

        threading.Thread(target=thread_cpu, daemon=True).start()

    async def probe(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rec: dict[str, Any] = {"method": scope["method"], "start": time.perf_counter()}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                rec["status"] = message["status"]
            await send(message)

        _REC.set(rec)
        try:
            await app(scope, receive, sending)
        finally:
            rec["total"] = time.perf_counter() - rec.pop("start")
            out.write(json.dumps(rec) + "\n")

    return probe


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def summary(directory: Path) -> list[str]:
    """Lines describing the requests every worker recorded."""
    recs = [json.loads(x) for f in directory.glob("*.jsonl") for x in f.read_text().splitlines()]
    puts = [r for r in recs if r["method"] == "PUT"]
    lines = [f"centre-side timing of {len(puts)} uploads (in the app, ms: p50 / p99 / mean):"]
    for status in sorted({r.get("status", 0) for r in puts}):
        group = [r for r in puts if r.get("status", 0) == status]
        for name in (
            "total",
            "lock_wait",
            "apply",
            "apply_cpu",
            "receipt",
            "receipt_cpu",
            "spool_put",
            "spool_wait",
            "spool_lookup",
        ):
            values = [r[name] * 1000 for r in group if name in r]
            if values:
                lines.append(
                    f"  {status} {name:12} n={len(values):5} {_p(values, 50):8.1f}"
                    f" {_p(values, 99):8.1f} {statistics.fmean(values):8.1f}"
                )
    threads: dict[str, float] = {}
    for f in directory.glob("*.jsonl"):
        samples = [json.loads(x) for x in f.read_text().splitlines()]
        samples = [r for r in samples if r["method"] == "THREADS"]
        if len(samples) >= 2:
            first, last = samples[0], samples[-1]
            for name in ("loop", "writer", "applier", "all"):
                threads[name] = threads.get(name, 0.0) + last[name] - first[name]
    if threads:
        rest = threads["all"] - threads["loop"] - threads["writer"] - threads["applier"]
        lines.append(
            "spooling workers' CPU by thread (s, all workers): event loop (HTTP, routes)"
            f" {threads['loop']:.2f}, spool writer {threads['writer']:.2f}, applier"
            f" {threads['applier']:.2f}, other threads {rest:.2f}"
        )
    idle: dict[str, tuple[int, float]] = {}
    for f in directory.glob("*.jsonl"):
        for x in f.read_text().splitlines():
            r = json.loads(x)
            if r["method"] == "IDLE":
                idle[f.name] = (r["steps"], r["cpu"])
    if idle:
        steps = sum(n for n, _ in idle.values())
        cpu = sum(c for _, c in idle.values())
        lines.append(f"appliers' empty steps: {steps}, {cpu:.2f} s of CPU")
    groups = [r for r in recs if r["method"] == "APPLY"]
    if groups:
        n = sum(r["bundles"] for r in groups)
        lines.append(
            f"spool appliers: {len(groups)} groups, {n / len(groups):.1f} bundles per group;"
            f" per group ms p50 / p99: wall {_p([r['total'] * 1000 for r in groups], 50):.0f}"
            f" / {_p([r['total'] * 1000 for r in groups], 99):.0f},"
            f" thread CPU {_p([r['apply_cpu'] * 1000 for r in groups], 50):.0f}"
            f" / {_p([r['apply_cpu'] * 1000 for r in groups], 99):.0f};"
            f" CPU per bundle {sum(r['apply_cpu'] for r in groups) / n * 1000:.2f} ms"
        )
    return lines
