"""What one bundle costs the centre: statements, round trips, transactions, store calls.

    .venv/bin/python benchmarks/profile_centre.py --sites 500 --backlog 100 --per-bundle 100

Makes the same sites as ``loadtest.py`` (its ``make_sites``), then applies every bundle
in one process, one at a time, to a ``Replica`` on a fresh PostgreSQL schema, answering
each with a receipt as the server does, and counts per bundle (no concurrency: what a
bundle costs by itself; ``loadtest.py`` adds the contention):

* SQL statements sent (``Connection.execute`` calls) and their kinds;
* round trips: turns from client to server and back, read from libpq's protocol trace
  (``PQtrace``); in pipeline mode several statements travel in one turn;
* transactions and commits (each commit is one WAL flush with ``synchronous_commit``);
* store method calls and the rows passed to them (how many records take the merge path,
  with a row lock and a read of their changes, against the bulk path for new records);
* wall and CPU seconds in this process and in its PostgreSQL backend (``/proc``).

Then applies every bundle again: all duplicates (a re-sent bundle, a lost answer).
``--trace-one`` prints the statements of one bundle. Profile the stages with py-spy:
``py-spy record -f raw -o /tmp/centre.txt -- python benchmarks/profile_centre.py ...``
and ``python benchmarks/stacks.py /tmp/centre.txt``. The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from psycopg import pq  # noqa: E402

from loadtest import POLICIES, make_sites, proc_cpu  # noqa: E402
from offsync import Identity, Replica  # noqa: E402
from offsync.stores.postgres import PostgresStore  # noqa: E402

STORE_METHODS = (
    "lock_origins",
    "segment_index_near",
    "segments_changed",
    "add_segments",
    "add_first_changes",
    "add_changes",
    "add_new_records",
    "lock_records",
    "changes_for_many",
    "put_records",
    "set_peer",
    "set_meta",
    "get_meta",
    "peers",
)


class Counting:
    """Counts the statements a store's connection executes and the store calls made."""

    def __init__(self, store: PostgresStore) -> None:
        self.statements: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.log: list[str] | None = None
        execute = store.conn.execute

        def counted_execute(query: Any, *args: Any, **kwargs: Any) -> Any:
            text = query if isinstance(query, str) else str(query)
            words = text.split()
            kind = " ".join(words[:3]) if words[:1] != ["SELECT"] else _select_kind(text)
            self.statements[kind] += 1
            if self.log is not None:
                self.log.append(text[:110])
            return execute(query, *args, **kwargs)

        store.conn.execute = counted_execute  # type: ignore[method-assign]
        for name in STORE_METHODS:
            setattr(store, name, self._wrap(name, getattr(store, name)))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if args and hasattr(args[0], "__len__") and not isinstance(args[0], str | bytes):
                self.rows[name] += len(args[0])
            return method(*args, **kwargs)

        return counted


def _select_kind(text: str) -> str:
    for marker in ("pg_advisory_xact_lock", "pg_snapshot_xmin", "FROM segments", "FROM changes"):
        if marker in text:
            return f"SELECT .. {marker}"
    return "SELECT other"


def round_trips(trace: Path) -> tuple[int, Counter[str], Counter[str]]:
    """From a libpq trace: turns (client messages, then server messages), the client's
    message kinds, and the server's command tags (BEGIN, COMMIT, INSERT, ...)."""
    turns, last, sent, done = 0, "", Counter[str](), Counter[str]()
    for line in trace.read_text(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0] not in ("F", "B"):
            continue
        direction, kind = parts[0], parts[2]
        if direction == "F":
            sent[kind] += 1
        else:
            if last == "F":
                turns += 1
            if kind == "CommandComplete" and len(parts) > 3:
                done[parts[3].strip().strip('"').split()[0]] += 1
        last = direction
    return turns, sent, done


def run(replica: Replica, bundles: list[bytes], backend: int) -> dict[str, float]:
    before = proc_cpu([backend])
    cpu, t = time.process_time(), time.perf_counter()
    applied = duplicates = 0
    for b in bundles:
        report = replica.apply(b)
        replica.receipt()
        applied += report.applied
        duplicates += report.duplicates
    return {
        "seconds": time.perf_counter() - t,
        "cpu": time.process_time() - cpu,
        "backend": proc_cpu([backend]).get(backend, 0) - before.get(backend, 0),
        "applied": applied,
        "duplicates": duplicates,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=500)
    ap.add_argument("--backlog", type=int, default=100)
    ap.add_argument("--per-bundle", type=int, default=100)
    ap.add_argument("--bundle-bytes", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-trace", action="store_true", help="no libpq trace (for profiling)")
    ap.add_argument("--cprofile", action="store_true", help="CPU by module (cProfile)")
    ap.add_argument("--trace-one", action="store_true", help="print one bundle's statements")
    ap.add_argument(
        "--dsn",
        default=os.environ.get(
            "OFFSYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = ap.parse_args(argv)
    sites, total = make_sites(args.sites, args.backlog, args.per_bundle, args.bundle_bytes, 1)
    # Interleave the sites' bundles as a flood would bring them: day 1 of every site, ...
    bundles = [b for day in zip(*sites, strict=False) for b in day]
    bundles += [b for s in sites for b in s[len(min(sites, key=len)) :]]
    n = len(bundles)
    print(f"{args.sites} sites, {total} changes in {n} bundles of {total / n:.0f} changes")
    schema = f"offsync_prof_{uuid.uuid4().hex[:10]}"
    store = PostgresStore(args.dsn, schema=schema)
    try:
        replica = Replica(store, Identity(os.urandom(32), "centre"), POLICIES)
        backend = int(store._q("SELECT pg_backend_pid()")[0][0])
        counting = Counting(store)
        with tempfile.TemporaryDirectory() as tmp:
            trace = Path(tmp) / "trace.txt"
            fd = os.open(trace, os.O_WRONLY | os.O_CREAT)
            if not args.no_trace:
                store.conn.pgconn.trace(fd)
                store.conn.pgconn.set_trace_flags(
                    pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE
                )
            if args.trace_one:
                counting.log = []
                run(replica, bundles[:1], backend)
                print("statements of the first bundle, in order:")
                for line in counting.log:
                    print(f"  {line}")
                counting.log = None
                bundles = bundles[1:]
                n -= 1
            counting.statements.clear()
            counting.calls.clear()
            counting.rows.clear()
            if args.cprofile:
                from stacks import cpu_by_module

                box: list[dict[str, float]] = []
                lines = cpu_by_module(lambda: box.append(run(replica, bundles, backend)))
                fresh = box[0]
            else:
                fresh = run(replica, bundles, backend)
            store.conn.pgconn.untrace()
            os.close(fd)
            turns, sent, done = (
                round_trips(trace) if not args.no_trace else (0, Counter(), Counter())
            )
            trace.unlink()
            print(
                f"\nfresh bundles: {n}, {fresh['applied']:.0f} changes applied;"
                f" {fresh['seconds'] / n * 1000:.1f} ms wall,"
                f" {fresh['cpu'] / n * 1000:.1f} ms CPU here +"
                f" {fresh['backend'] / n * 1000:.1f} ms CPU in the backend per bundle"
                f" ({(fresh['cpu'] + fresh['backend']) / max(1, fresh['applied']) * 1e6:.0f}"
                " us CPU per change)"
            )
            print(
                f"per bundle: {sum(counting.statements.values()) / n:.1f} statements from"
                f" the store + {(done['BEGIN'] + done['COMMIT'] + done['ROLLBACK']) / n:.1f}"
                f" BEGIN/COMMIT = {sent['Execute'] / n:.1f} executed; {turns / n:.1f} round"
                f" trips; {done['COMMIT'] / n:.2f} commits, {done['ROLLBACK'] / n:.2f}"
                f" rollbacks; {sent['Parse'] / n:.1f} statements parsed (not prepared)"
            )
            print("  statements by kind, per bundle:")
            for kind, count in counting.statements.most_common():
                print(f"    {count / n:6.2f}  {kind}")
            print("  store calls per bundle (rows passed per bundle):")
            for name, count in counting.calls.most_common():
                print(f"    {count / n:6.2f}  {name:20} ({counting.rows[name] / n:.1f} rows)")
            if args.cprofile:
                print("\n".join(lines))
            cpu = time.process_time()
            receipt = b""
            for _ in range(20):
                replica._known = None  # as after an apply: rebuilt, signed, encoded
                receipt = replica.receipt().encode()
            print(
                f"\na receipt (the centre's knowledge of {replica.knowledge().stream_count()} streams,"
                f" signed): {len(receipt):,} bytes, {(time.process_time() - cpu) / 20 * 1000:.2f}"
                " ms CPU to build, sign and encode"
            )
            dup = run(replica, bundles, backend)
            print(
                f"\nthe same bundles again (all duplicates, {dup['duplicates']:.0f} changes):"
                f" {dup['seconds'] / n * 1000:.1f} ms wall, {dup['cpu'] / n * 1000:.1f} ms CPU"
                f" here + {dup['backend'] / n * 1000:.1f} ms in the backend per bundle"
            )
        replica.close()
    finally:
        dropper = PostgresStore(args.dsn, schema=schema)
        dropper.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
