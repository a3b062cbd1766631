"""The format-3 codecs on the same records under two partition rules, in one run.

    .venv/bin/python benchmarks/format3_codec.py              # 100,000 changes
    .venv/bin/python benchmarks/format3_codec.py --n 20000 --reps 3

Format 2's codecs are gone (its figures against format 3's, from before the switch,
are in benchmarks/README.md); what remains to compare is what the partition rule
costs. What is measured, per rule, on ``registry_data.records(n)`` (residents, doses):

* **seal**: encode every segment's columns, compress them at zstd level 15 and sign
  them (draw the secret and compute the commitment, one salted hash per change), in
  segments of at most 2000 changes as replicas seal them, one stream per (origin,
  partition): ``whole`` is one partition per collection, ``district`` the rule
  ``{"residents": 6, "doses": 6}`` (the NIK's district).
* **open**: what a receiver does with each encoded segment on the apply path: parse
  it, verify its origin's signature, decompress the block and decode and validate
  every change (the commitment is not recomputed: ``H(block)`` is signed).
* **bytes/change**: the encoded segments' bytes over the number of changes.

Each measurement alternates the two rules ``--reps`` times and keeps each one's
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

from offsync import change as change3  # noqa: E402
from offsync import segment as segment3  # noqa: E402
from offsync.identity import Identity  # noqa: E402
from offsync.scope import PartitionRule  # noqa: E402
from registry_data import records  # noqa: E402

ORIGIN = Identity(bytes(range(32)), "kec-saradan")
RULES = {"whole": PartitionRule({}), "district": PartitionRule({"residents": 6, "doses": 6})}
SEGMENT_CHANGES = 2000
LEVEL = 15
FIRST_HLC = 1_700_000_000_000 << 16


def streams_of(
    rows: list[tuple[str, str, dict[str, object]]], rule: PartitionRule
) -> list[list[change3.Change]]:
    """The writes, numbered per stream (origin, partition) under ``rule``."""
    streams: dict[tuple[str, str], list[change3.Change]] = {}
    for i, (c, k, f) in enumerate(rows):
        partition = rule.partition_of(c, k)
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


def seal(streams: list[list[change3.Change]]) -> list[bytes]:
    out = []
    for run in streams:
        previous = segment3.NO_PREVIOUS
        for i in range(0, len(run), SEGMENT_CHANGES):
            seg = segment3.Segment.seal(ORIGIN, run[i : i + SEGMENT_CHANGES], previous, LEVEL)
            previous = seg.hash
            out.append(seg.encode())
    return out


def open_all(encoded: list[bytes]) -> int:
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
    streams = {name: streams_of(rows, rule) for name, rule in RULES.items()}
    encoded: dict[str, list[bytes]] = {}

    def sealer(name: str) -> Callable[[], None]:
        def go() -> None:
            encoded[name] = seal(streams[name])

        return go

    sealed = fastest(args.seal_reps, {name: sealer(name) for name in RULES})

    def opener(name: str) -> Callable[[], object]:
        return lambda: open_all(encoded[name])

    opened = fastest(args.reps, {name: opener(name) for name in RULES})
    assert all(open_all(encoded[name]) == n for name in RULES)
    size = {name: sum(map(len, segs)) for name, segs in encoded.items()}
    w, d = "whole", "district"

    print(
        f"== {n:,} registry changes; segments: whole collections {len(encoded[w])},"
        f" districts {len(encoded[d])} (in {len(streams[d])} streams)"
    )
    print(f"{'':24}{'whole':>12}{'district':>12}{'d / w':>9}")
    rowfmt = "{:<24}{:>12.2f}{:>12.2f}{:>9.3f}"
    print(
        rowfmt.format(
            "seal   µs/change", sealed[w] / n * 1e6, sealed[d] / n * 1e6, sealed[d] / sealed[w]
        )
    )
    print(
        rowfmt.format(
            "open   µs/change", opened[w] / n * 1e6, opened[d] / n * 1e6, opened[d] / opened[w]
        )
    )
    print(rowfmt.format("bytes/change", size[w] / n, size[d] / n, size[d] / size[w]))
    print(
        f"seal: changes/s whole {n / sealed[w]:,.0f}, district {n / sealed[d]:,.0f};"
        f" open: changes/s whole {n / opened[w]:,.0f}, district {n / opened[d]:,.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
