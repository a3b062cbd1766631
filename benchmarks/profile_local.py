"""What a local write and a local apply cost on SQLite: calls per change, time by part.

    .venv/bin/python benchmarks/profile_local.py put --n 100000
    .venv/bin/python benchmarks/profile_local.py apply --workdir DIR --n 1000000

``put``: N puts of the benchmark's records in ``batch()``es of 10,000 into a fresh file
replica (as ``throughput.py``'s write row), counting the SQLite statements executed
(``set_trace_callback``: every step of a statement, ``executemany`` rows included) and
the store calls per put, and timing (CPU) sealing, the store calls and canonical field
encoding by wrapping them; then each piece alone on the same records: canonical encoding,
``Change.to_row``, and sealing the whole backlog into segments.

``schema``: the same N rows into the records table as the SQLite store has it, into
``throughput.py``'s raw table, and into variants (``WITHOUT ROWID``), in three row
orders (fully sorted by key, each chunk sorted, unsorted): CPU per row.

``plain-put`` / ``plain-put-many``: the same writes (``put`` in batches, or ``put_many``
per collection) with nothing wrapped or timed, and ``--setup-only`` the same run without
them: run both under ``valgrind --tool=cachegrind --cache-sim=no`` and the difference of
their instruction counts divided by N is the instructions per record, a figure that
other processes on the machine do not move (benchmarks/README.md).

``apply``: applies the bundles ``throughput.py --workdir DIR --keep`` left in
``DIR/n<N>/bundles`` into a fresh replica, counting statements and store calls per
bundle and timing the stages by wrapping them (signature checks, opening the segments'
changes, ``_merge``, the store's writes, the commit).

Wrapping adds a little time to each wrapped call; the shares, not the totals, are the
point (``throughput.py`` gives the totals). For a sampling profile of the same work:
``py-spy record -f raw -o /tmp/p.txt -- python benchmarks/profile_local.py put`` and
``python benchmarks/stacks.py /tmp/p.txt --only put``.
"""

from __future__ import annotations

import argparse
import operator
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from offsync import Identity, Replica  # noqa: E402
from offsync.change import Change  # noqa: E402
from offsync.encoding import canonical_fields  # noqa: E402
from offsync.segment import NO_PREVIOUS, Segment  # noqa: E402
from registry_data import records  # noqa: E402
from throughput import POLICIES, RECEIVER_SEED, SENDER_SEED, WRITE_BATCH  # noqa: E402


class Timed:
    """CPU seconds and calls of wrapped methods; nested wrapped calls count in both."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def most_cpu(self) -> list[tuple[str, float]]:
        """(label, CPU seconds), the most first."""
        return sorted(self.cpu.items(), key=lambda item: item[1], reverse=True)

    def wrap(self, owner: Any, name: str, label: str | None = None) -> None:
        method: Callable[..., Any] = getattr(owner, name)
        label = label or name

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.cpu[label] += time.process_time() - start
                self.calls[label] += 1

        setattr(owner, name, timed)


def _statements(rep: Replica) -> Counter[str]:
    seen: Counter[str] = Counter()

    def trace(sql: str) -> None:
        seen[" ".join(sql.split()[:3])] += 1

    rep.store.db.set_trace_callback(trace)  # type: ignore[attr-defined]
    return seen


def put(n: int) -> None:
    from offsync.plan import write as write_plan

    data = list(records(n))
    with tempfile.TemporaryDirectory() as tmp:
        rep = Replica.open(
            f"{tmp}/w.sqlite", identity=Identity(SENDER_SEED, "writer"), policies=POLICIES
        )
        timed = Timed()
        for name in (
            "get_record",
            "try_first_change",
            "add_outbox",
            "add_first_changes",
            "set_meta",
        ):
            timed.wrap(rep.store, name, f"store.{name}")
        timed.wrap(rep, "_seal", "sealing (_seal: encode columns, zstd, sign, store)")
        timed.wrap(rep, "_merge", "_merge (store the change, the record row)")
        timed.wrap(write_plan, "canonical_value", "canonical_value (canonical_fields)")
        seen = _statements(rep)
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(0, n, WRITE_BATCH):
            with rep.batch():
                for c, k, f in data[i : i + WRITE_BATCH]:
                    rep.put(c, k, f)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rep.store.db.set_trace_callback(None)  # type: ignore[attr-defined]
        rep.close()
    print(
        f"put in batch(), {n:,} records: {wall / n * 1e6:.1f} us wall, {cpu / n * 1e6:.1f} us CPU per put"
    )
    print(f"SQLite statement steps per put: {sum(seen.values()) / n:.2f}")
    for sql, count in seen.most_common(12):
        print(f"  {count / n:7.3f}  {sql}")
    print("wrapped calls (CPU us per put, share of the put's CPU, calls per put):")
    for label, secs in timed.most_cpu():
        print(
            f"  {secs / n * 1e6:7.2f} us  {100 * secs / cpu:5.1f}%  "
            f"{timed.calls[label] / n:7.4f}  {label}"
        )
    # Each piece alone, on the same records.
    t = time.process_time()
    encoded = [canonical_fields(f) for _, _, f in data]
    enc = time.process_time() - t
    ident = Identity(SENDER_SEED, "writer")
    changes = [
        Change(ident.public_key, i + 1, (i + 1) << 16, c, k, 1, e, ())
        for i, ((c, k, _), e) in enumerate(zip(data, encoded, strict=True))
    ]
    t = time.process_time()
    rows = [ch.to_row() for ch in changes]
    to_row = time.process_time() - t
    t = time.process_time()
    back = [Change.from_row(ident.public_key, i + 1, r) for i, r in enumerate(rows)]
    from_row = time.process_time() - t
    seal: dict[int, float] = {}
    for level in (15, 3):
        t = time.process_time()
        prev = NO_PREVIOUS
        for i in range(0, n, 2000):
            seg = Segment.seal(ident, back[i : i + 2000], prev, level)
            prev = seg.hash
        seal[level] = time.process_time() - t
    t = time.process_time()
    for _, _, f in data:
        msgpack.packb(f)
    plain = time.process_time() - t
    print("alone, per record (CPU us):")
    for what, secs in (
        ("canonical_fields", enc),
        ("msgpack.packb (what the raw baseline encodes with)", plain),
        ("Change.to_row (outbox row)", to_row),
        ("Change.from_row (read back to seal)", from_row),
        ("Segment.seal, 2000 changes, level 15", seal[15]),
        ("Segment.seal, 2000 changes, level 3", seal[3]),
    ):
        print(f"  {secs / n * 1e6:7.2f} us  {100 * secs / cpu:5.1f}% of a put  {what}")


def apply(n: int, workdir: Path) -> None:
    from offsync.replica import applying as replica_module

    bundles = sorted((workdir / f"n{n}" / "bundles").iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        rep = Replica.open(
            f"{tmp}/r.sqlite", identity=Identity(RECEIVER_SEED, "receiver"), policies=POLICIES
        )
        timed = Timed()
        timed.wrap(replica_module, "open_bundle", "open_bundle (bundle signature, parse)")
        timed.wrap(Segment, "verify", "Segment.verify (segment signature)")
        timed.wrap(Segment, "open_changes", "Segment.open_changes (zstd, decode, validate)")
        timed.wrap(Segment, "encode", "Segment.encode (bytes to store)")
        timed.wrap(rep, "_merge", "_merge (changes and records)")
        for name in ("add_segments", "add_first_changes", "add_changes", "put_records"):
            timed.wrap(rep.store, name, f"store.{name}")
        seen = _statements(rep)
        cpu, wall = time.process_time(), time.perf_counter()
        for path in bundles:
            rep.apply(path.read_bytes())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        rep.store.db.set_trace_callback(None)  # type: ignore[attr-defined]
        rep.close()
    print(
        f"apply {len(bundles)} bundles, {n:,} changes: {wall / n * 1e6:.2f} us wall,"
        f" {cpu / n * 1e6:.2f} us CPU per change"
    )
    print(f"SQLite statement steps per bundle: {sum(seen.values()) / len(bundles):.1f}")
    for sql, count in seen.most_common(12):
        print(f"  {count / len(bundles):9.1f}  {sql}")
    print("wrapped calls (CPU us per change, share of the apply's CPU):")
    for label, secs in timed.most_cpu():
        print(f"  {secs / n * 1e6:7.2f} us  {100 * secs / cpu:5.1f}%  {label}")


#: The records table as the SQLite store has it (stores/sqlite.py), and variants.
RECORDS_NOW = (
    "CREATE TABLE records (collection TEXT NOT NULL, key TEXT NOT NULL, fields BLOB,"
    " heads BLOB NOT NULL, conflict INTEGER NOT NULL, sole_origin INTEGER, sole_seq INTEGER,"
    " sole_hlc INTEGER, PRIMARY KEY (collection, key));"
    " CREATE INDEX records_conflict ON records (conflict) WHERE conflict"
)
_RAW = (
    "CREATE TABLE records (collection TEXT NOT NULL, key TEXT NOT NULL, fields BLOB NOT NULL,"
    " PRIMARY KEY (collection, key)) WITHOUT ROWID",
    "INSERT INTO records (collection, key, fields) VALUES (?, ?, ?) ON CONFLICT"
    " (collection, key) DO UPDATE SET fields = excluded.fields",
)
_NOW = (
    RECORDS_NOW,
    "INSERT INTO records (collection, key, fields, heads, conflict, sole_origin, sole_seq,"
    " sole_hlc) VALUES (?, ?, ?, x'', 0, 1, ?, ?) ON CONFLICT DO NOTHING",
)
_NOW_WR = (RECORDS_NOW.replace("(collection, key));", "(collection, key)) WITHOUT ROWID;"), _NOW[1])
#: (what, (table, statement), row order): "full" = sorted by (collection, key), as the raw
#: limit's stream arrives (its pack reads the table in key order); "chunk" = each chunk of
#: 50,000 sorted by key, as the SQLite store sorts what it writes; "arrival" = unsorted.
SHAPES = [
    (
        "raw: 3 columns, WITHOUT ROWID, rows fully sorted (as throughput.py's raw limit)",
        _RAW,
        "full",
    ),
    ("raw: the same, chunks sorted", _RAW, "chunk"),
    ("raw: the same, in write order", _RAW, "arrival"),
    ("offsync now: 8 columns, rowid table + key index, chunks sorted (as apply)", _NOW, "chunk"),
    ("offsync now: the same, rows fully sorted", _NOW, "full"),
    ("offsync: 8 columns WITHOUT ROWID, chunks sorted", _NOW_WR, "chunk"),
    ("offsync: 8 columns WITHOUT ROWID, rows fully sorted", _NOW_WR, "full"),
]


_KEY = operator.itemgetter(1)
_FULL = operator.itemgetter(0, 1)


def schema(n: int) -> None:
    """The same rows into the records table as it is and in other shapes: CPU per row."""
    import sqlite3

    data = [
        (c, k, msgpack.packb(f), i + 1, (i + 1) << 16) for i, (c, k, f) in enumerate(records(n))
    ]
    print(f"{n:,} rows, fields as msgpack, executemany per 50,000 rows, one transaction")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (ddl, sql), order) in enumerate(SHAPES):
            db = sqlite3.connect(f"{tmp}/{i}.sqlite", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(ddl)
            rows = [r[:3] if ddl is _RAW[0] else r for r in data]
            if order == "full":
                rows.sort(key=_FULL)
            cpu, wall = time.process_time(), time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            for j in range(0, n, 50_000):
                chunk = rows[j : j + 50_000]
                db.executemany(sql, sorted(chunk, key=_KEY) if order == "chunk" else chunk)
            db.execute("COMMIT")
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            size = sum(Path(f"{tmp}/{i}.sqlite{x}").stat().st_size for x in ("", "-wal"))
            db.close()
            Path(f"{tmp}/{i}.sqlite").unlink()
            print(
                f"  {cpu / n * 1e6:6.2f} us CPU  {wall / n * 1e6:6.2f} us wall"
                f"  {size / n:6.0f} B/row (file + WAL)  {name}"
            )


def plain(n: int, bulk: bool, setup_only: bool) -> None:
    """N puts in ``batch()``es of 10,000 (``bulk``: ``put_many`` per collection) into a
    fresh replica, nothing wrapped or timed: for counting instructions, which a busy
    machine does not change (run it under valgrind with and without ``--setup-only``,
    subtract, divide by N; benchmarks/README.md)."""
    data = list(records(n))
    by_collection: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for c, k, f in data:
        by_collection.setdefault(c, []).append((k, f))
    with tempfile.TemporaryDirectory() as tmp:
        rep = Replica.open(
            f"{tmp}/w.sqlite", identity=Identity(SENDER_SEED, "writer"), policies=POLICIES
        )
        if not setup_only and bulk:
            for c, rows in by_collection.items():
                rep.put_many(c, rows)
        elif not setup_only:
            for i in range(0, n, WRITE_BATCH):
                with rep.batch():
                    for c, k, f in data[i : i + WRITE_BATCH]:
                        rep.put(c, k, f)
        rep.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["put", "apply", "schema", "plain-put", "plain-put-many"])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, help="apply: throughput.py's --workdir")
    ap.add_argument("--cprofile", action="store_true", help="CPU by module (cProfile)")
    ap.add_argument("--setup-only", action="store_true", help="plain-*: only the setup")
    args = ap.parse_args(argv)
    if args.what == "apply" and args.workdir is None:
        ap.error("apply needs --workdir (of throughput.py --keep)")

    def go() -> None:
        if args.what == "put":
            put(args.n)
        elif args.what == "schema":
            schema(args.n)
        elif args.what.startswith("plain-"):
            plain(args.n, args.what == "plain-put-many", args.setup_only)
        else:
            apply(args.n, args.workdir)

    if args.cprofile:
        from stacks import cpu_by_module

        print("\n".join(cpu_by_module(go)))
    else:
        go()
    return 0


if __name__ == "__main__":
    sys.exit(main())
