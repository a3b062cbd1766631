"""The format-3 codecs against format 2's, in the same run on the same records.

    .venv/bin/python benchmarks/format3_codec.py              # 100,000 changes
    .venv/bin/python benchmarks/format3_codec.py --n 20000 --reps 3

What is measured, per format, on ``registry_data.records(n)`` (residents and doses):

* **seal**: encode every segment's columns, compress them at zstd level 15 and sign
  them (format 3: also draw the secret and compute the commitment, one salted hash
  per change), in segments of at most 2000 changes as replicas seal them. Format 2
  seals one stream per origin; format 3 one per (origin, partition), with the
  partition rule ``{"residents": 6, "doses": 6}`` (the NIK's district).
* **open**: what a receiver does with each encoded segment on the apply path: parse
  it, verify its origin's signature, decompress the block and decode and validate
  every change (the commitment is not recomputed: ``H(block)`` is signed).
* **bytes/change**: the encoded segments' bytes over the number of changes.

Each measurement alternates the two formats ``--reps`` times and keeps each one's
fastest run (CPU time of this process), so that a busy machine slows both alike. The
figures are printed, never asserted (tests/e2e/test_v3_benchmark_smoke.py only runs it).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from offsync import change as change2  # noqa: E402
from offsync import segment as segment2  # noqa: E402
from offsync.encoding import canonical_fields as canonical_fields2  # noqa: E402
from offsync.identity import Identity  # noqa: E402
from offsync.scope import PartitionRule  # noqa: E402
from offsync.v3 import change as change3  # noqa: E402
from offsync.v3 import segment as segment3  # noqa: E402
from registry_data import records  # noqa: E402

ORIGIN = Identity(bytes(range(32)), "kec-saradan")
RULE = PartitionRule({"residents": 6, "doses": 6})
SEGMENT_CHANGES = 2000
LEVEL = 15
FIRST_HLC = 1_700_000_000_000 << 16


def changes_v2(rows: list[tuple[str, str, dict[str, object]]]) -> list[change2.Change]:
    return [
        change2.Change(
            ORIGIN.public_key, i + 1, FIRST_HLC + i, c, k, change2.PUT, canonical_fields2(f)
        )
        for i, (c, k, f) in enumerate(rows)
    ]


def streams_v3(rows: list[tuple[str, str, dict[str, object]]]) -> list[list[change3.Change]]:
    """The same writes, numbered per stream (origin, partition)."""
    streams: dict[tuple[str, str], list[change3.Change]] = {}
    for i, (c, k, f) in enumerate(rows):
        partition = RULE.partition_of(c, k)
        run = streams.setdefault(partition, [])
        run.append(
            change3.Change(
                ORIGIN.public_key,
                len(run) + 1,
                FIRST_HLC + i,
                c,
                k,
                change3.PUT,
                change3.canonical_fields(f),
                (),
                partition.prefix,
            )
        )
    return list(streams.values())


def seal_v2(changes: list[change2.Change]) -> list[bytes]:
    out, previous = [], segment2.NO_PREVIOUS
    for i in range(0, len(changes), SEGMENT_CHANGES):
        seg = segment2.Segment.seal(ORIGIN, changes[i : i + SEGMENT_CHANGES], previous, LEVEL)
        previous = seg.hash
        out.append(seg.encode())
    return out


def seal_v3(streams: list[list[change3.Change]]) -> list[bytes]:
    out = []
    for run in streams:
        previous = segment3.NO_PREVIOUS
        for i in range(0, len(run), SEGMENT_CHANGES):
            seg = segment3.Segment.seal(ORIGIN, run[i : i + SEGMENT_CHANGES], previous, LEVEL)
            previous = seg.hash
            out.append(seg.encode())
    return out


def open_v2(encoded: list[bytes]) -> int:
    n = 0
    for raw in encoded:
        seg = segment2.Segment.decode(raw)
        seg.verify()
        n += len(seg.open_changes())
    return n


def open_v3(encoded: list[bytes]) -> int:
    n = 0
    for raw in encoded:
        seg = segment3.Segment.decode(raw)
        seg.verify()
        n += len(seg.open_changes())
    return n


def fastest(reps: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each run's fastest CPU time over ``reps`` alternations."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(reps):
        for name, run in runs.items():
            started = time.process_time()
            run()
            best[name] = min(best[name], time.process_time() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="changes (default 100,000)")
    parser.add_argument("--reps", type=int, default=7, help="alternations for open (default 7)")
    parser.add_argument(
        "--seal-reps", type=int, default=2, help="alternations for seal (default 2)"
    )
    args = parser.parse_args(argv)
    n = args.n
    rows = list(records(n))
    v2, v3 = changes_v2(rows), streams_v3(rows)
    encoded: dict[str, list[bytes]] = {}

    def sealer(name: str, run: Callable[[], list[bytes]]) -> Callable[[], None]:
        def go() -> None:
            encoded[name] = run()

        return go

    seal = fastest(
        args.seal_reps,
        {"v2": sealer("v2", lambda: seal_v2(v2)), "v3": sealer("v3", lambda: seal_v3(v3))},
    )
    opened = fastest(
        args.reps, {"v2": lambda: open_v2(encoded["v2"]), "v3": lambda: open_v3(encoded["v3"])}
    )
    assert open_v2(encoded["v2"]) == open_v3(encoded["v3"]) == n
    size = {name: sum(map(len, segs)) for name, segs in encoded.items()}

    print(
        f"== {n:,} registry changes; segments: format 2 {len(encoded['v2'])}, format 3 {len(encoded['v3'])}"
    )
    print(f"{'':24}{'format 2':>12}{'format 3':>12}{'3 / 2':>9}")
    rowfmt = "{:<24}{:>12.2f}{:>12.2f}{:>9.3f}"
    print(
        rowfmt.format(
            "seal   µs/change", seal["v2"] / n * 1e6, seal["v3"] / n * 1e6, seal["v3"] / seal["v2"]
        )
    )
    print(
        rowfmt.format(
            "open   µs/change",
            opened["v2"] / n * 1e6,
            opened["v3"] / n * 1e6,
            opened["v3"] / opened["v2"],
        )
    )
    print(rowfmt.format("bytes/change", size["v2"] / n, size["v3"] / n, size["v3"] / size["v2"]))
    print(
        f"seal: changes/s format 2 {n / seal['v2']:,.0f}, format 3 {n / seal['v3']:,.0f};"
        f" open: changes/s format 2 {n / opened['v2']:,.0f}, format 3 {n / opened['v3']:,.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
