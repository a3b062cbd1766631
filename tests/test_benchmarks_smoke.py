"""The throughput benchmark runs end to end (tiny N) and prints every row and verdict.

No timing is asserted: figures depend on the machine. The benchmark itself checks that
every apply stored all N records and that the receiver's state equals the sender's.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "throughput.py"
ROWS = [
    "pack   offsync first pack",
    "pack   offsync relay re-pack",
    "pack   raw limit msgpack+zstd",
    "pack   json+gzip+hmac",
    "apply  offsync streamed",
    "apply  raw limit msgpack+zstd",
    "apply  json+gzip+hmac",
]
VERDICTS = [
    "apply >= 0.5x the raw limit",
    "pack >= 5x the json+gzip+hmac baseline",
    "bytes/change <= 0.8x json+gzip+hmac",
    "peak memory target is for 1,000,000 changes",
]
#: Local entry, sealing (and so compressing) included: no baselines, but bytes/change.
WRITE_ROWS = [
    "write  offsync put in batch()",
    "write  offsync, level=3",
]


def test_quick_benchmark_prints_every_row(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--n", "2000", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "== 2,000 changes" in out
    for label in ROWS + WRITE_ROWS + VERDICTS:
        assert label in out, f"missing {label!r} in:\n{out}"
    rows = [line for line in out.splitlines() if line.startswith(tuple(ROWS + WRITE_ROWS))]
    assert len(rows) == len(ROWS) + len(WRITE_ROWS), out
    for line in rows:
        figures = line[32:].split("(")[0].split()  # after the label column, before a note
        want = 5 if line.startswith(tuple(WRITE_ROWS)) else 7  # no "x raw", "x json"
        assert len(figures) == want and all(f[0].isdigit() for f in figures), line
