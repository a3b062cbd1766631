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
    rep = Replica.open(
        str(work / name), identity=_identity(SENDER_SEED, "writer"), policies=POLICIES, **options
    )
    data = list(records(n))
    start = time.perf_counter()
    for i in range(0, n, 10_000):
        with rep.batch():
            for c, k, f in data[i : i + 10_000]:
                rep.put(c, k, f)
    seconds = time.perf_counter() - start
    size = sum(len(b) for b in rep.iter_pack())
    rep.close()
    return {"seconds": seconds, "bytes": size}


def offsync_write(n: int, work: Path) -> dict[str, Any]:
    """Local entry at the default seal level."""
    return _write(n, work, "writer.sqlite")


def offsync_write_fast(n: int, work: Path) -> dict[str, Any]:
    """Local entry with ``level=3``: what a faster seal costs in bytes."""
    return _write(n, work, "writer-l3.sqlite", level=3)


def offsync_pack(n: int, work: Path) -> dict[str, Any]:
    """The first pack after the writes: seal the tail, frame segments into bundles."""
    rep = Replica.open(
        str(work / "sender.sqlite"), identity=_identity(SENDER_SEED, "sender"), policies=POLICIES
    )
    start = time.perf_counter()
    size, count = _write_bundles(rep.iter_pack(), work / "bundles")
    seconds = time.perf_counter() - start
    rep.close()
    return {"seconds": seconds, "bytes": size, "bundles": count}


def offsync_apply(n: int, work: Path) -> dict[str, Any]:
    """A fresh SQLite file replica applies the bundles one at a time (streamed)."""
    path = work / "receiver.sqlite"
    rep = Replica.open(str(path), identity=_identity(RECEIVER_SEED, "receiver"), policies=POLICIES)
    files = sorted((work / "bundles").iterdir())
    start = time.perf_counter()
    applied = 0
    for f in files:
        applied += rep.apply(f.read_bytes()).applied
    seconds = time.perf_counter() - start
    rep.close()
    if applied != n or _count(path) != n:
        raise SystemExit(f"offsync apply: {applied} changes applied, expected {n}")
    return {"seconds": seconds}


def offsync_repack(n: int, work: Path) -> dict[str, Any]:
    """A relay re-packs segments it holds (already sealed, by another origin) for a peer."""
    rep = Replica.open(
        str(work / "receiver.sqlite"),
        identity=_identity(RECEIVER_SEED, "receiver"),
        policies=POLICIES,
    )
    start = time.perf_counter()
    size, count = _write_bundles(rep.iter_pack(Knowledge()), work / "relayed")
    seconds = time.perf_counter() - start
    rep.close()
    return {"seconds": seconds, "bytes": size, "bundles": count}


def raw_pack(n: int, work: Path) -> dict[str, Any]:
    """The raw limit: msgpack records spliced from stored bytes, one zstd stream."""
    db = _baseline_db(work / "raw_source.sqlite")
    start = time.perf_counter()
    compressor = zstandard.ZstdCompressor(level=3)
    with open(work / "raw.msgpack.zst", "wb") as out, compressor.stream_writer(out) as z:
        for c, k, f in db.execute("SELECT collection, key, fields FROM records"):
            z.write(b"\x93" + msgpack.packb(c) + msgpack.packb(k) + f)
    seconds = time.perf_counter() - start
    db.close()
    return {"seconds": seconds, "bytes": (work / "raw.msgpack.zst").stat().st_size}


def raw_apply(n: int, work: Path) -> dict[str, Any]:
    """The raw limit: decompress, decode every record, one executemany upsert."""
    path = work / "raw_dest.sqlite"
    db = _baseline_db(path)
    packb = msgpack.packb
    start = time.perf_counter()
    with open(work / "raw.msgpack.zst", "rb") as src:
        reader = zstandard.ZstdDecompressor().stream_reader(src)
        unpacker = msgpack.Unpacker(reader, raw=False)
        db.execute("BEGIN IMMEDIATE")
        db.executemany(UPSERT, ((c, k, packb(f)) for c, k, f in unpacker))
        db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    if _count(path) != n:
        raise SystemExit("raw apply: wrong record count")
    return {"seconds": seconds}


def json_pack(n: int, work: Path) -> dict[str, Any]:
    """By hand: JSON lines, gzip (the module's default level), HMAC-SHA256 of the file."""
    db = _baseline_db(work / "json_source.sqlite")
    dumps = json.dumps
    start = time.perf_counter()
    path = work / "records.jsonl.gz"
    with open(path, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        for c, k, f in db.execute("SELECT collection, key, fields FROM records"):
            line = f'{{"collection": {dumps(c)}, "key": {dumps(k)}, "fields": {f}}}\n'
            gz.write(line.encode())
    tag = hmac.new(HMAC_KEY, path.read_bytes(), hashlib.sha256).digest()
    (work / "records.jsonl.gz.hmac").write_bytes(tag)
    seconds = time.perf_counter() - start
    db.close()
    return {"seconds": seconds, "bytes": path.stat().st_size + len(tag)}


def json_apply(n: int, work: Path) -> dict[str, Any]:
    """By hand: check the HMAC, then gunzip, json.loads each line, one executemany upsert."""
    path = work / "json_dest.sqlite"
    db = _baseline_db(path)
    loads, dumps = json.loads, json.dumps
    src = work / "records.jsonl.gz"
    start = time.perf_counter()
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
    seconds = time.perf_counter() - start
    db.close()
    if _count(path) != n:
        raise SystemExit("json apply: wrong record count")
    return {"seconds": seconds}


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
    "raw-pack": raw_pack,
    "raw-apply": raw_apply,
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


ROWS = (  # (label, scenario, kind)
    ("pack   offsync first pack", "offsync-pack", "pack"),
    ("pack   offsync relay re-pack", "offsync-repack", "pack"),
    ("pack   raw limit msgpack+zstd", "raw-pack", "pack"),
    ("pack   json+gzip+hmac", "json-pack", "pack"),
    ("apply  offsync streamed", "offsync-apply", "apply"),
    ("apply  raw limit msgpack+zstd", "raw-apply", "apply"),
    ("apply  json+gzip+hmac", "json-apply", "apply"),
)
WIRE = {  # which pack produced the bytes an apply consumes
    "offsync-apply": "offsync-pack",
    "raw-apply": "raw-pack",
    "json-apply": "json-pack",
}


def run_size(n: int, root: Path) -> None:
    work = root / f"n{n}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t = time.perf_counter()
    _child("setup", n, work)
    print(f"\n== {n:,} changes (setup {time.perf_counter() - t:.1f} s, not measured) ==")
    order = [
        "offsync-pack",
        "offsync-apply",
        "offsync-repack",
        "offsync-write",
        "offsync-write-fast",
        "raw-pack",
        "raw-apply",
        "json-pack",
        "json-apply",
    ]
    res = {name: _child(name, n, work) for name in order}
    _child("verify", n, work)
    for r in res.values():
        r["rate"] = n / r["seconds"] if r["seconds"] > 0 else float("inf")
    header = (
        f"{'scenario':32} {'changes/s':>11} {'x raw':>7} {'x json':>7} "
        f"{'bytes/chg':>10} {'peak MB':>8} {'seconds':>8} {'cpu s':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, name, kind in ROWS:
        r = res[name]
        raw, js = res[f"raw-{kind}"], res[f"json-{kind}"]
        size = r.get("bytes", res[WIRE[name]]["bytes"] if name in WIRE else 0)
        print(
            f"{label:32} {r['rate']:>11,.0f} {r['rate'] / raw['rate']:>6.2f}x "
            f"{r['rate'] / js['rate']:>6.2f}x {size / n:>10.1f} {r['maxrss_kb'] / 1024:>8.1f} "
            f"{r['seconds']:>8.2f} {r['cpu']:>7.2f}"
        )
    for label, name in (
        ("write  offsync put in batch()", "offsync-write"),
        ("write  offsync, level=3", "offsync-write-fast"),
    ):
        w = res[name]
        print(
            f"{label:32} {w['rate']:>11,.0f} {'':>7} {'':>7} {w['bytes'] / n:>10.1f} "
            f"{w['maxrss_kb'] / 1024:>8.1f} {w['seconds']:>8.2f} {w['cpu']:>7.2f}"
            "   (local entry, sealing included; no baseline)"
        )
    apply_x = res["offsync-apply"]["rate"] / res["raw-apply"]["rate"]
    pack_x = res["offsync-pack"]["rate"] / res["json-pack"]["rate"]
    bytes_x = res["offsync-pack"]["bytes"] / res["json-pack"]["bytes"]
    peak = res["offsync-apply"]["maxrss_kb"] / 1024
    cpu_apply = res["raw-apply"]["cpu"] / res["offsync-apply"]["cpu"]
    cpu_pack = res["json-pack"]["cpu"] / res["offsync-pack"]["cpu"]
    cpu_relay = res["json-pack"]["cpu"] / res["offsync-repack"]["cpu"]
    print(
        f"by CPU time (steadier on a busy machine): apply {cpu_apply:.2f}x the raw limit, "
        f"pack {cpu_pack:.2f}x json (relay re-pack {cpu_relay:.2f}x)"
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
    else:
        print(f"n/a     peak memory target is for 1,000,000 changes; here {peak:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one size, 20,000 changes")
    ap.add_argument("--n", type=int, action="append", help="number of changes (repeatable)")
    ap.add_argument("--workdir", help="where the SQLite files and bundles go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.scenario:  # a child: run one scenario, report on stdout's last line
        n = args.n[0]
        cpu = time.process_time()
        out = SCENARIOS[args.scenario](n, Path(args.workdir))
        out["cpu"] = time.process_time() - cpu  # includes the unmeasured open and close
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
            run_size(n, root)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
