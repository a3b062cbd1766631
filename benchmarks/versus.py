"""This tree against an earlier commit (by default the last of format 2), same run.

    .venv/bin/python benchmarks/versus.py                       # 100,000 changes, 3 rounds
    .venv/bin/python benchmarks/versus.py --n 20000 --rounds 5 --base REV

Issue 12 asks that pack and apply of a new wire format stay within 10% of the old
one's, measured in the same run. The old format's code is gone from this tree, so the
baseline is the old tree itself: ``git archive BASE src benchmarks`` unpacked into a
temporary directory, each tree running its own ``benchmarks/throughput.py`` scenarios
(the same records from ``registry_data``, the same public API: ``put`` in ``batch()``,
``iter_pack``, ``apply``) in child processes with its own ``src`` on ``PYTHONPATH``.
Rounds alternate the trees, scenario by scenario, so that a busy machine slows both
alike; the table gives each tree's median CPU and wall seconds and the ratio this/base
(above 1.00: this tree is slower). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: The last commit of wire format 2 (tag ``format-2-last`` where the clone has tags).
FORMAT_2_LAST = "a1b93c7"

#: Timed scenarios of throughput.py, in the order of one round (apply reads what pack wrote).
SCENARIOS = ("offsync-pack", "offsync-apply", "offsync-repack", "offsync-write")


def extract(rev: str, into: Path) -> Path:
    """The ``src`` and ``benchmarks`` of ``rev``, unpacked under ``into``."""
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src", "benchmarks"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def child(tree: Path, scenario: str, n: int, work: Path) -> dict[str, float]:
    """One scenario of ``tree``'s throughput.py, in its own process; its figures."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    proc = subprocess.run(
        [
            sys.executable,
            str(tree / "benchmarks" / "throughput.py"),
            "--scenario",
            scenario,
            "--n",
            str(n),
            "--workdir",
            str(work),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{tree}: scenario {scenario} failed (exit {proc.returncode})")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--base", default=FORMAT_2_LAST, help="the baseline commit (default: %(default)s)"
    )
    ap.add_argument("--n", type=int, default=100_000, help="changes (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default: %(default)s)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="offsync-versus-") as tmp:
        base = extract(args.base, Path(tmp) / "base")
        trees = {"base": base, "this": ROOT}
        works = {name: Path(tmp) / f"work-{name}" for name in trees}
        for name, tree in trees.items():
            works[name].mkdir()
            child(tree, "setup", args.n, works[name])
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for scenario in SCENARIOS:
                for name, tree in trees.items():
                    runs.setdefault((name, scenario), []).append(
                        child(tree, scenario, args.n, works[name])
                    )
        print(f"{args.n:,} changes, {args.rounds} rounds; base {args.base}, this {ROOT}")
        head = f"{'scenario':16} {'base cpu s':>10} {'this cpu s':>10} {'cpu x':>6} "
        head += f"{'base wall s':>11} {'this wall s':>11} {'wall x':>6} {'bytes x':>7}"
        print(head)
        print("-" * len(head))
        for scenario in SCENARIOS:
            med = {
                (name, what): statistics.median(r[what] for r in runs[(name, scenario)])
                for name in trees
                for what in ("cpu", "seconds")
            }
            base_size, this_size = (runs[(name, scenario)][0].get("bytes") for name in trees)
            size_x = f"{this_size / base_size:>7.3f}" if base_size and this_size else f"{'-':>7}"
            print(
                f"{scenario:16} {med['base', 'cpu']:>10.3f} {med['this', 'cpu']:>10.3f} "
                f"{med['this', 'cpu'] / med['base', 'cpu']:>6.3f} "
                f"{med['base', 'seconds']:>11.3f} {med['this', 'seconds']:>11.3f} "
                f"{med['this', 'seconds'] / med['base', 'seconds']:>6.3f} {size_x}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
