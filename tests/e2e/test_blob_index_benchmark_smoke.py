"""The blob index benchmark runs end to end (tiny N) and prints every row; no figure is
asserted but the counts (the benchmark itself checks that the index and the scan agree)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "blob_index.py"


def test_the_blob_index_benchmark_prints_every_row() -> None:
    args = ["--n", "300", "--missing", "7"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== 300 records, 300 references, 293 blobs held" in out
    for row, count in (
        ("missing, scan of every record", "7 references"),
        ("missing, index", "7 references"),
        ("Replica.missing_blobs()", "7 blobs"),
        ("missing_blobs of one record", "1 blobs"),
        ("every reference, index", "300"),
        ("collect_blobs (all referenced)", "0 collected"),
    ):
        line = next(ln for ln in out.splitlines() if ln.startswith(row))
        assert "ms wall" in line and "ms cpu" in line and line.rstrip().endswith(count), line
