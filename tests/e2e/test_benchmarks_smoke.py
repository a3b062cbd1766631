"""The throughput benchmark runs end to end (tiny N) and prints every row and verdict.

No timing is asserted: figures depend on the machine. The benchmark itself checks that
every apply stored all N records and that the receiver's state equals the sender's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "throughput.py"
#: Rows with every figure: rate, x raw, x json, CPU per change, x raw by CPU, bytes per
#: change, peak memory, wall seconds, CPU seconds.
ROWS = [
    "pack   offsync first pack",
    "pack   offsync relay re-pack",
    "pack   raw limit msgpack+zstd",
    "pack   json+gzip+hmac",
    "apply  offsync streamed",
    "apply  raw limit msgpack+zstd",
    "apply  json+gzip+hmac",
]
#: Local entry: against the raw upsert of the same rows, no JSON baseline.
WRITE_ROWS = [
    "write  offsync put in batch()",
    "write  offsync, level=3",
    "write  offsync put_many (bulk)",
]
#: The raw write baselines: no JSON ratio and no bytes on a wire.
RAW_WRITE_ROWS = [
    "write  raw upsert, one per row",
    "write  raw upsert, executemany",
]
VERDICTS = [
    "apply >= 0.5x the raw limit",
    "pack >= 5x the json+gzip+hmac baseline",
    "bytes/change <= 0.8x json+gzip+hmac",
    "peak memory target is for 1,000,000 changes",
    "put in batch() >= 0.5x a raw SQLite upsert by CPU",
    "bulk import (put_many) >= 100,000 records/s",
    "by CPU time",
]
ALL = ROWS + WRITE_ROWS + RAW_WRITE_ROWS


def _figures(line: str) -> list[str]:
    return line[32:].split("(")[0].split()  # after the label column, before a note


@pytest.mark.slow
def test_quick_benchmark_prints_every_row(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--n",
            "2000",
            "--repeat",
            "2",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "== 2,000 changes" in out
    assert "median of 2 rounds" in out
    for label in [*ALL, *VERDICTS]:
        assert label in out, f"missing {label!r} in:\n{out}"
    rows = [line for line in out.splitlines() if line.startswith(tuple(ALL))]
    assert len(rows) == len(ALL), out
    for line in rows:
        figures = _figures(line)
        if line.startswith(tuple(RAW_WRITE_ROWS)):  # no bytes per change
            assert figures[4] == "-", line
            del figures[4]
        want = {**dict.fromkeys(ROWS, 9), **dict.fromkeys(WRITE_ROWS, 8)}
        want.update(dict.fromkeys(RAW_WRITE_ROWS, 7))
        assert len(figures) == want[line[:32].rstrip()], line
        assert all(f[0].isdigit() for f in figures), line
    # Each round's ratios are printed, so the spread behind a median is visible.
    assert sum(line.startswith("rounds ") for line in out.splitlines()) == 4, out
