"""Statement shapes for the centre's writes, measured side by side on PostgreSQL.

    .venv/bin/python benchmarks/pg_shapes.py --rows 50000 --batch 100 --group 50

Writes the same ``changes``-shaped rows (the columns and primary key of the centre's
``changes`` table; 16-digit keys, 32-byte origins, ~60-byte fields) in batches of
``--batch`` rows (one bundle's changes), each shape into a fresh table, and reports the
CPU per row of this process and of its backend (``/proc``) and the wall time:

* ``unnest %s``: ``INSERT ... SELECT FROM unnest(%s::bytea[], ...)``, what the store
  does now (psycopg dumps the arrays as text: hex, quoted, escaped by regex);
* ``unnest %b``: the same with binary parameters;
* ``copy``: ``COPY ... FROM STDIN (FORMAT BINARY)`` straight into the table;
* ``copy+merge``: COPY each batch into a temporary staging table, then one ``INSERT ...
  SELECT ... ON CONFLICT DO NOTHING`` per transaction (idempotent ingest, where a
  batch may repeat);

each with one commit per batch (a transaction per bundle, as now) and with one commit
per ``--group`` batches (a group commit of many bundles). Every commit waits for its
WAL flush (``synchronous_commit`` as the server has it).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadtest import RAW_COLUMNS, RAW_TABLE, RAW_TYPES, cpu_stall, proc_cpu  # noqa: E402

Row = tuple[Any, ...]


def make_rows(n: int, seed: int = 1) -> list[Row]:
    rng = random.Random(seed)
    origins = [rng.randbytes(32) for _ in range(500)]
    rows = []
    for i in range(n):
        fields = b"\x83\xa4name\xb0resident %06d\xa7village\xa4Kare\xa4born\xcd\x07\xc6" % i
        rows.append(
            (
                b"residents",
                b"35%014d" % rng.randrange(10**14),
                origins[i % 500],
                i // 500 + 1,
                (1_700_000_000_000 + i) << 16,
                1,
                fields,
                None,
            )
        )
    return rows


def _unnest(fmt: str) -> Callable[[psycopg.Connection[Any], str, list[Row]], None]:
    types = ["bytea", "bytea", "bytea", "bigint", "bigint", "smallint", "bytea", "bytea"]
    params = ", ".join(f"{fmt}::{t}[]" for t in types)

    def write(conn: psycopg.Connection[Any], table: str, batch: list[Row]) -> None:
        columns = [list(c) for c in zip(*batch, strict=True)]
        conn.execute(
            f"INSERT INTO {table} ({RAW_COLUMNS}) SELECT * FROM unnest({params})"
            " ON CONFLICT DO NOTHING",
            columns,
        )

    return write


def _copy(conn: psycopg.Connection[Any], table: str, batch: list[Row]) -> None:
    with conn.cursor().copy(f"COPY {table} ({RAW_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(RAW_TYPES)
        for row in batch:
            copy.write_row(row)


def _stage(conn: psycopg.Connection[Any], table: str, batch: list[Row]) -> None:
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staging (LIKE {table}) ON COMMIT DELETE ROWS")
    _copy(conn, "staging", batch)


def _merge(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        f"INSERT INTO {table} ({RAW_COLUMNS}) SELECT {RAW_COLUMNS} FROM staging"
        " ON CONFLICT DO NOTHING"
    )


Write = Callable[[psycopg.Connection[Any], str, list[Row]], None]
Finish = Callable[[psycopg.Connection[Any], str], None] | None
#: name: (write one batch, what to do once before each commit)
SHAPES: dict[str, tuple[Write, Finish]] = {
    "unnest %s (now)": (_unnest("%s"), None),
    "unnest %b": (_unnest("%b"), None),
    "copy": (_copy, None),
    "copy+merge": (_stage, _merge),
}


def measure(
    dsn: str, schema: str, name: str, rows: list[Row], batch: int, group: int
) -> dict[str, float]:
    write, finish = SHAPES[name]
    with psycopg.connect(dsn, autocommit=True) as conn:
        table = f"{schema}.t_{uuid.uuid4().hex[:8]}"
        conn.execute(RAW_TABLE.format(table))
        backend = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        batches = [rows[i : i + batch] for i in range(0, len(rows), batch)]
        before, stall = proc_cpu([backend]), cpu_stall()
        cpu, wall = time.process_time(), time.perf_counter()
        for g in range(0, len(batches), group):
            with conn.transaction():
                for b in batches[g : g + group]:
                    write(conn, table, b)
                if finish is not None:
                    finish(conn, table)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stall_after = cpu_stall()
        used = proc_cpu([backend]).get(backend, 0) - before.get(backend, 0)
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[misc]
        assert count == len(rows), (name, count)
    pressure = (stall_after - stall) / wall if stall is not None and stall_after else 0.0
    return {"wall": wall, "client": cpu, "backend": used, "pressure": pressure}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=100, help="rows per batch (a bundle)")
    ap.add_argument("--group", type=int, default=50, help="batches per group commit")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--dsn",
        default=os.environ.get(
            "OFFSYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = ap.parse_args(argv)
    rows = make_rows(args.rows)
    schema = f"offsync_shapes_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for _ in range(args.repeat):  # rounds interleaved, medians below
            for name in SHAPES:
                for group in (1, args.group):
                    r = measure(args.dsn, schema, name, rows, args.batch, group)
                    results.setdefault((name, group), []).append(r)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    n = args.rows
    print(
        f"{n:,} rows in batches of {args.batch}; median of {args.repeat};"
        " CPU and wall per row in us"
    )
    print(
        f"{'shape':18} {'commit every':>14} {'client':>8} {'backend':>8} {'total':>8} {'wall':>8}"
    )
    for (name, group), runs in results.items():
        med = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
        every = f"{group * args.batch} rows"
        print(
            f"{name:18} {every:>14} {med['client'] / n * 1e6:8.1f} {med['backend'] / n * 1e6:8.1f}"
            f" {(med['client'] + med['backend']) / n * 1e6:8.1f} {med['wall'] / n * 1e6:8.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
