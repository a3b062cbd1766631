"""Bundle throughput: offsync pack/apply against two baselines measured in the same run.

Run ``python benchmarks/throughput.py --quick`` (20,000 changes) or without options for
the full run (100,000 and 1,000,000 changes); benchmarks/README.md says what each
figure means. Every scenario runs in its own child process, so its peak memory
(``ru_maxrss``) and its timing are its own; the parent only prints the table.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import hmac
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from offsync import Identity, Knowledge, Replica, policies  # noqa: E402
from registry_data import records  # noqa: E402

SENDER_SEED = bytes(range(32))
RECEIVER_SEED = bytes(range(32, 64))
HMAC_KEY = b"benchmark shared secret"
POLICIES = {"residents": policies.LastWriterWins(), "doses": policies.FirstWriterWins()}
BASELINE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records (collection TEXT NOT NULL, key TEXT NOT NULL,"
    " fields BLOB NOT NULL, PRIMARY KEY (collection, key)) WITHOUT ROWID"
)
#: Writes per ``batch()`` (and per transaction of the raw write baselines).
WRITE_BATCH = 10_000
UPSERT = (
    "INSERT INTO records (collection, key, fields) VALUES (?, ?, ?)"
    " ON CONFLICT (collection, key) DO UPDATE SET fields = excluded.fields"
)


def _identity(seed: bytes, label: str) -> Identity:
    return Identity(seed, label=label)


def _baseline_db(path: Path) -> sqlite3.Connection:
    """The same SQLite file semantics offsync uses: WAL, synchronous=NORMAL."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(BASELINE_SCHEMA)
    return db


def _fresh(*paths: Path) -> None:
    """Remove a scenario's outputs (and SQLite's -wal/-shm), so that a repeat starts
    from the same state as the first run."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


def cpu_stall() -> float:
    """Seconds, since boot, in which some runnable task waited for a CPU (Linux PSI;
    0 where the kernel does not say)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(line.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


class Clock:
    """Wall and CPU time (this process, all threads) of the timed part of a scenario,
    and how much of it some task on the machine waited for a CPU (``pressure``)."""

    def __enter__(self) -> Clock:
        self.stall = cpu_stall()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.stall = cpu_stall() - self.stall

    def result(self, **more: Any) -> dict[str, Any]:
        pressure = self.stall / self.wall if self.wall > 0 else 0.0
        return {"seconds": self.wall, "cpu": self.cpu, "pressure": pressure, **more}


def _count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        db.close()


# -- scenarios (each runs alone in a child process) -------------------------------------


def setup(n: int, work: Path) -> dict[str, Any]:
    """Not measured: the sender replica (N unsealed own changes) and the baselines' sources."""
    sender = Replica.open(
        str(work / "sender.sqlite"),
        identity=_identity(SENDER_SEED, "sender"),
        policies=POLICIES,
    )
    raw = _baseline_db(work / "raw_source.sqlite")
    js = _baseline_db(work / "json_source.sqlite")
    raw.execute("BEGIN")
    js.execute("BEGIN")
    chunk: list[tuple[str, str, dict[str, Any]]] = []

    def flush() -> None:
        with sender.batch():
            for c, k, f in chunk:
                sender.put(c, k, f)
        raw.executemany(UPSERT, [(c, k, msgpack.packb(f)) for c, k, f in chunk])
        js.executemany(UPSERT, [(c, k, json.dumps(f)) for c, k, f in chunk])
        chunk.clear()

    for record in records(n):
        chunk.append(record)
        if len(chunk) == 10_000:
            flush()
    flush()
    raw.execute("COMMIT")
    js.execute("COMMIT")
    raw.close()
    js.close()
    sender.close()
    return {}


def _write_bundles(bundles: Iterator[bytes], out: Path) -> tuple[int, int]:
    out.mkdir()
    total = count = 0
    for i, bundle in enumerate(bundles):
        (out / f"{i:06d}.ofs").write_bytes(bundle)
        total += len(bundle)
        count += 1
    return total, count


def _write(n: int, work: Path, name: str, **options: Any) -> dict[str, Any]:
    """Local entry: N puts in batches of 10,000, sealing (and compressing) whole
    segments as they fill. The bytes those segments come to are measured after the
    clock stops, by packing them."""
    _fresh(work / name)
    rep = Replica.open(
        str(work / name), identity=_identity(SENDER_SEED, "writer"), policies=POLICIES, **options
    )
    data = list(records(n))
    with Clock() as clock:
        for i in range(0, n, WRITE_BATCH):
            with rep.batch():
                for c, k, f in data[i : i + WRITE_BATCH]:
                    rep.put(c, k, f)
    size = sum(len(b) for b in rep.iter_pack())
    rep.close()
    return clock.result(bytes=size)


def offsync_write(n: int, work: Path) -> dict[str, Any]:
    """Local entry at the default seal level."""
    return _write(n, work, "writer.sqlite")


def offsync_write_fast(n: int, work: Path) -> dict[str, Any]:
    """Local entry with ``level=3``: what a faster seal costs in bytes."""
    return _write(n, work, "writer-l3.sqlite", level=3)


#: Records per ``put_many`` call in the bulk-import row (each call is one transaction).
BULK_CHUNK = 100_000


def offsync_write_many(n: int, work: Path) -> dict[str, Any]:
    """Bulk import: the same records through ``Replica.put_many``, one call per
    collection and ``BULK_CHUNK`` records, into a fresh replica; sealing included (at
    put_many's default level). Grouping the records by collection is not timed (an
    import reads them from a table per collection anyway)."""
    path = work / "writer-many.sqlite"
    _fresh(path)
    rep = Replica.open(str(path), identity=_identity(SENDER_SEED, "writer"), policies=POLICIES)
    by_collection: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for c, k, f in records(n):
        by_collection.setdefault(c, []).append((k, f))
    with Clock() as clock:
        for c, rows in by_collection.items():
            for i in range(0, len(rows), BULK_CHUNK):
                rep.put_many(c, rows[i : i + BULK_CHUNK])
    size = sum(len(b) for b in rep.iter_pack())
    rep.close()
    if _count(path) != n:
        raise SystemExit("offsync put_many: wrong record count")
    return clock.result(bytes=size)


def _raw_write(n: int, work: Path, name: str, many: bool) -> dict[str, Any]:
    """The same records upserted into the raw table (fields as msgpack), in transactions
    of ``WRITE_BATCH``: one ``execute`` per record (what an application that writes a
    form at a time does) or one ``executemany`` per transaction (a bulk import)."""
    path = work / name
    _fresh(path)
    db = _baseline_db(path)
    data = list(records(n))
    packb, execute = msgpack.packb, db.execute
    with Clock() as clock:
        for i in range(0, n, WRITE_BATCH):
            execute("BEGIN IMMEDIATE")
            if many:
                db.executemany(UPSERT, [(c, k, packb(f)) for c, k, f in data[i : i + WRITE_BATCH]])
            else:
                for c, k, f in data[i : i + WRITE_BATCH]:
                    execute(UPSERT, (c, k, packb(f)))
            execute("COMMIT")
    db.close()
    if _count(path) != n:
        raise SystemExit("raw write: wrong record count")
    return clock.result()


def raw_write(n: int, work: Path) -> dict[str, Any]:
    return _raw_write(n, work, "raw_write.sqlite", many=False)


def raw_write_many(n: int, work: Path) -> dict[str, Any]:
    return _raw_write(n, work, "raw_write_many.sqlite", many=True)


def offsync_pack(n: int, work: Path) -> dict[str, Any]:
    """The first pack after the writes: seal the tail, frame segments into bundles.

    Packs a copy of the sender (made before the clock starts), so that every repeat
    seals the same tail."""
    source, copy = work / "sender.sqlite", work / "sender-pack.sqlite"
    _fresh(copy, work / "bundles")
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{copy}{suffix}")
    rep = Replica.open(str(copy), identity=_identity(SENDER_SEED, "sender"), policies=POLICIES)
    with Clock() as clock:
        size, count = _write_bundles(rep.iter_pack(), work / "bundles")
    rep.close()
    return clock.result(bytes=size, bundles=count)


def offsync_apply(n: int, work: Path) -> dict[str, Any]:
    """A fresh SQLite file replica applies the bundles one at a time (streamed)."""
    path = work / "receiver.sqlite"
    _fresh(path)
    rep = Replica.open(str(path), identity=_identity(RECEIVER_SEED, "receiver"), policies=POLICIES)
    files = sorted((work / "bundles").iterdir())
    applied = 0
    with Clock() as clock:
        for f in files:
            applied += rep.apply(f.read_bytes()).applied
    rep.close()
    if applied != n or _count(path) != n:
        raise SystemExit(f"offsync apply: {applied} changes applied, expected {n}")
    return clock.result()


def offsync_repack(n: int, work: Path) -> dict[str, Any]:
    """A relay re-packs segments it holds (already sealed, by another origin) for a peer."""
    _fresh(work / "relayed")
    rep = Replica.open(
        str(work / "receiver.sqlite"),
        identity=_identity(RECEIVER_SEED, "receiver"),
        policies=POLICIES,
    )
    with Clock() as clock:
        size, count = _write_bundles(rep.iter_pack(Knowledge()), work / "relayed")
    rep.close()
    return clock.result(bytes=size, bundles=count)


def raw_pack(n: int, work: Path) -> dict[str, Any]:
    """The raw limit: msgpack records spliced from stored bytes, one zstd stream."""
    db = _baseline_db(work / "raw_source.sqlite")
    with Clock() as clock:
        compressor = zstandard.ZstdCompressor(level=3)
        with open(work / "raw.msgpack.zst", "wb") as out, compressor.stream_writer(out) as z:
            for c, k, f in db.execute("SELECT collection, key, fields FROM records"):
                z.write(b"\x93" + msgpack.packb(c) + msgpack.packb(k) + f)
    db.close()
    return clock.result(bytes=(work / "raw.msgpack.zst").stat().st_size)


def raw_apply(n: int, work: Path) -> dict[str, Any]:
    """The raw limit: decompress, decode every record, one executemany upsert."""
    path = work / "raw_dest.sqlite"
    _fresh(path)
    db = _baseline_db(path)
    packb = msgpack.packb
    with Clock() as clock, open(work / "raw.msgpack.zst", "rb") as src:
        reader = zstandard.ZstdDecompressor().stream_reader(src)
        unpacker = msgpack.Unpacker(reader, raw=False)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(UPSERT, ((c, k, packb(f)) for c, k, f in unpacker))
        db.execute("COMMIT")
    db.close()
    if _count(path) != n:
        raise SystemExit("raw apply: wrong record count")
    return clock.result()


def json_pack(n: int, work: Path) -> dict[str, Any]:
    """By hand: JSON lines, gzip (the module's default level), HMAC-SHA256 of the file."""
    db = _baseline_db(work / "json_source.sqlite")
    dumps = json.dumps
    path = work / "records.jsonl.gz"
    with Clock() as clock:
        with open(path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
            for c, k, f in db.execute("SELECT collection, key, fields FROM records"):
                line = f'{{"collection": {dumps(c)}, "key": {dumps(k)}, "fields": {f}}}\n'
                gz.write(line.encode())
        tag = hmac.new(HMAC_KEY, path.read_bytes(), hashlib.sha256).digest()
        (work / "records.jsonl.gz.hmac").write_bytes(tag)
    db.close()
    return clock.result(bytes=path.stat().st_size + len(tag))


def json_apply(n: int, work: Path) -> dict[str, Any]:
    """By hand: check the HMAC, then gunzip, json.loads each line, one executemany upsert."""
    path = work / "json_dest.sqlite"
    _fresh(path)
    db = _baseline_db(path)
    loads, dumps = json.loads, json.dumps
    src = work / "records.jsonl.gz"
    with Clock() as clock:
        mac = hmac.new(HMAC_KEY, digestmod=hashlib.sha256)
        with open(src, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                mac.update(block)
        if not hmac.compare_digest(mac.digest(), (work / "records.jsonl.gz.hmac").read_bytes()):
            raise SystemExit("json apply: HMAC does not verify")
        with gzip.open(src, "rb") as gz:
            rows = ((r["collection"], r["key"], dumps(r["fields"])) for r in map(loads, gz))
            db.execute("BEGIN IMMEDIATE")
            db.executemany(UPSERT, rows)
            db.execute("COMMIT")
    db.close()
    if _count(path) != n:
        raise SystemExit("json apply: wrong record count")
    return clock.result()


def verify(n: int, work: Path) -> dict[str, Any]:
    """Not measured: the receiver shows exactly the sender's state."""
    digests = []
    for name, seed in (("sender", SENDER_SEED), ("receiver", RECEIVER_SEED)):
        rep = Replica.open(str(work / f"{name}.sqlite"), identity=_identity(seed, name))
        digests.append(rep.state_digest())
        rep.close()
    if digests[0] != digests[1]:
        raise SystemExit("receiver state differs from sender state")
    return {}


SCENARIOS: dict[str, Callable[[int, Path], dict[str, Any]]] = {
    "setup": setup,
    "offsync-pack": offsync_pack,
    "offsync-apply": offsync_apply,
    "offsync-repack": offsync_repack,
    "offsync-write-fast": offsync_write_fast,
    "offsync-write": offsync_write,
    "offsync-write-many": offsync_write_many,
    "raw-pack": raw_pack,
    "raw-apply": raw_apply,
    "raw-write": raw_write,
    "raw-write-many": raw_write_many,
    "json-pack": json_pack,
    "json-apply": json_apply,
    "verify": verify,
}

# -- the parent: run every scenario in a child, print the table ---------------------------


def _child(name: str, n: int, work: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--scenario", name, "--n", str(n), "--workdir", str(work)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"scenario {name} failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


ROWS = (  # (label, scenario, kind); each kind's baselines are raw-KIND and json-KIND
    ("pack   offsync first pack", "offsync-pack", "pack"),
    ("pack   offsync relay re-pack", "offsync-repack", "pack"),
    ("pack   raw limit msgpack+zstd", "raw-pack", "pack"),
    ("pack   json+gzip+hmac", "json-pack", "pack"),
    ("apply  offsync streamed", "offsync-apply", "apply"),
    ("apply  raw limit msgpack+zstd", "raw-apply", "apply"),
    ("apply  json+gzip+hmac", "json-apply", "apply"),
    ("write  offsync put in batch()", "offsync-write", "write"),
    ("write  offsync, level=3", "offsync-write-fast", "write"),
    ("write  offsync put_many (bulk)", "offsync-write-many", "write"),
    ("write  raw upsert, one per row", "raw-write", "write"),
    ("write  raw upsert, executemany", "raw-write-many", "write"),
)
WIRE = {  # which pack produced the bytes an apply consumes
    "offsync-apply": "offsync-pack",
    "raw-apply": "raw-pack",
    "json-apply": "json-pack",
}
ORDER = [  # the order of one round; apply after pack, re-pack after apply
    "offsync-pack",
    "offsync-apply",
    "offsync-repack",
    "offsync-write",
    "offsync-write-fast",
    "offsync-write-many",
    "raw-write",
    "raw-write-many",
    "raw-pack",
    "raw-apply",
    "json-pack",
    "json-apply",
]
#: Write rows' notes: what the ratio is against.
NOTES = {
    "offsync-write": "sealing included; x raw: one-per-row upsert",
    "offsync-write-fast": "sealing included; x raw: one-per-row upsert",
    "offsync-write-many": "sealing included, level 3",
    "raw-write-many": "the bulk-import baseline",
}


def _median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's figures over the rounds: the median of each timing, the largest
    peak memory, and every round's wall and CPU seconds (for the spread)."""
    out = dict(runs[0])
    for name in ("seconds", "cpu"):
        out[name] = statistics.median(r[name] for r in runs)
        out[f"all_{name}"] = [r[name] for r in runs]
    out["maxrss_kb"] = max(r["maxrss_kb"] for r in runs)
    return out


def _ratio(values: list[float], base: list[float]) -> str:
    """Each round's ratio base/value (a time ratio: higher is faster), for the spread."""
    return " ".join(f"{b / v:.2f}" for v, b in zip(values, base, strict=True))


def run_size(n: int, root: Path, repeat: int = 1) -> None:
    work = root / f"n{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t = time.perf_counter()
    _child("setup", n, work)
    print(f"\n== {n:,} changes (setup {time.perf_counter() - t:.1f} s, not measured) ==")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in ORDER}
    for _ in range(repeat):  # rounds interleaved: every ratio compares runs made side by side
        for name in ORDER:
            rounds[name].append(_child(name, n, work))
    _child("verify", n, work)
    res = {name: _median_of(runs) for name, runs in rounds.items()}
    for r in res.values():
        r["rate"] = n / r["seconds"] if r["seconds"] > 0 else float("inf")
    if repeat > 1:
        print(f"median of {repeat} rounds (each ratio: of the medians; spreads below)")
    header = (
        f"{'scenario':32} {'changes/s':>11} {'x raw':>7} {'x json':>7} {'cpu us/chg':>10} "
        f"{'x raw cpu':>9} {'bytes/chg':>10} {'peak MB':>8} {'seconds':>8} {'cpu s':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, name, kind in ROWS:
        r = res[name]
        raw = res[f"raw-{kind}"]
        js = res.get(f"json-{kind}")
        size = r.get("bytes", res[WIRE[name]]["bytes"] if name in WIRE else None)
        per_change = f"{size / n:>10.1f}" if size is not None else f"{'-':>10}"
        x_json = f"{r['rate'] / js['rate']:>6.2f}x" if js else f"{'':>7}"
        note = f"   ({NOTES[name]})" if name in NOTES else ""
        print(
            f"{label:32} {r['rate']:>11,.0f} {r['rate'] / raw['rate']:>6.2f}x {x_json} "
            f"{r['cpu'] / n * 1e6:>10.2f} {raw['cpu'] / r['cpu']:>8.2f}x {per_change} "
            f"{r['maxrss_kb'] / 1024:>8.1f} {r['seconds']:>8.2f} {r['cpu']:>7.2f}{note}"
        )
    if repeat > 1:
        for what, name, base in (
            ("apply x raw", "offsync-apply", "raw-apply"),
            ("put x raw", "offsync-write", "raw-write"),
            ("many x raw", "offsync-write-many", "raw-write-many"),
            ("pack x json", "offsync-pack", "json-pack"),
        ):
            print(
                f"rounds  {what:12} wall {_ratio(res[name]['all_seconds'], res[base]['all_seconds'])}"
                f"   cpu {_ratio(res[name]['all_cpu'], res[base]['all_cpu'])}"
            )
    pressures = sorted(r["pressure"] for runs in rounds.values() for r in runs)
    print(
        f"machine: some task waited for a CPU during {100 * statistics.median(pressures):.0f}%"
        f" of the timed parts (median; {100 * pressures[0]:.0f}-{100 * pressures[-1]:.0f}%,"
        " Linux PSI): the higher, the less the wall-clock figures say"
    )
    apply_x = res["offsync-apply"]["rate"] / res["raw-apply"]["rate"]
    pack_x = res["offsync-pack"]["rate"] / res["json-pack"]["rate"]
    bytes_x = res["offsync-pack"]["bytes"] / res["json-pack"]["bytes"]
    peak = res["offsync-apply"]["maxrss_kb"] / 1024
    cpu_apply = res["raw-apply"]["cpu"] / res["offsync-apply"]["cpu"]
    cpu_pack = res["json-pack"]["cpu"] / res["offsync-pack"]["cpu"]
    cpu_relay = res["json-pack"]["cpu"] / res["offsync-repack"]["cpu"]
    cpu_put = res["raw-write"]["cpu"] / res["offsync-write"]["cpu"]
    print(
        f"by CPU time (steadier on a busy machine): apply {cpu_apply:.2f}x the raw limit, "
        f"pack {cpu_pack:.2f}x json (relay re-pack {cpu_relay:.2f}x), "
        f"put {cpu_put:.2f}x a raw upsert"
    )

    def verdict(ok: bool) -> str:
        return "met    " if ok else "NOT MET"

    print(
        f"{verdict(apply_x >= 0.5)} apply >= 0.5x the raw limit (aim 1.0x): {apply_x:.2f}x"
        f"{'  (aim reached)' if apply_x >= 1.0 else ''}"
    )
    relay_x = res["offsync-repack"]["rate"] / res["json-pack"]["rate"]
    print(
        f"{verdict(pack_x >= 5)} pack >= 5x the json+gzip+hmac baseline: {pack_x:.2f}x"
        f" first pack after writing ({relay_x:.2f}x re-packing sealed segments)"
    )
    print(
        f"{verdict(bytes_x <= 0.8)} bytes/change <= 0.8x json+gzip+hmac (aim 0.5x): "
        f"{bytes_x:.2f}x{'  (aim reached)' if bytes_x <= 0.5 else ''}"
    )
    if n >= 1_000_000:
        print(f"{verdict(peak < 500)} 1,000,000-change streamed apply under 500 MB: {peak:.0f} MB")
        print(
            f"{verdict(cpu_apply >= 0.8)} apply >= 0.8x the raw limit by CPU at 1,000,000"
            f" (issue 13): {cpu_apply:.2f}x"
        )
    else:
        print(f"n/a     peak memory target is for 1,000,000 changes; here {peak:.0f} MB")
        print(f"n/a     apply >= 0.8x the raw limit by CPU is for 1,000,000; here {cpu_apply:.2f}x")
    print(
        f"{verdict(cpu_put >= 0.5)} put in batch() >= 0.5x a raw SQLite upsert by CPU"
        f" (issue 13): {cpu_put:.2f}x"
    )
    bulk = res["offsync-write-many"]
    bulk_cpu = n / bulk["cpu"] if bulk["cpu"] > 0 else float("inf")
    print(
        f"{verdict(bulk_cpu >= 100_000)} bulk import (put_many) >= 100,000 records/s into a"
        f" fresh replica (issue 13): {bulk_cpu:,.0f} per CPU second, {bulk['rate']:,.0f} per"
        f" second of wall time; {res['raw-write-many']['cpu'] / bulk['cpu']:.2f}x a raw"
        " executemany upsert by CPU"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one size, 20,000 changes")
    ap.add_argument("--n", type=int, action="append", help="number of changes (repeatable)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds per size; prints the median")
    ap.add_argument("--workdir", help="where the SQLite files and bundles go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.scenario:  # a child: run one scenario, report on stdout's last line
        out = SCENARIOS[args.scenario](args.n[0], Path(args.workdir))
        out["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(out))
        return 0
    sizes = args.n or ([20_000] if args.quick else [100_000, 1_000_000])
    root = Path(args.workdir or tempfile.mkdtemp(prefix="offsync-bench-"))
    print(
        f"offsync bundle throughput; python {sys.version.split()[0]}, sqlite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} cpus; work dir {root}"
    )
    try:
        for n in sizes:
            run_size(n, root, args.repeat)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
