"""The blob lane benchmark runs end to end (tiny N) and prints every row; no figure is
asserted but the bytes (benchmarks/blob_lane.py says what they mean)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "blob_lane.py"


def test_the_blob_lane_benchmark_resumes_and_prints_every_row() -> None:
    args = ["--n", "6", "--size", "3000", "--break-every", "7000"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("== 6 blobs x 3000 bytes")
    push = next(line for line in lines if line.startswith("push  syncs"))
    assert "breaks 2" in push and "chunk bytes sent 18000 " in push  # each byte once
    wire = next(line for line in lines if line.startswith("push  wire bytes"))
    # Cut in flight at 7000 and 14000 bytes: 1000 bytes of a chunk lost each time.
    assert "wire bytes 20000 " in wire and "2000 lost" in wire
    assert any(line.startswith("pull  blobs 6  bytes 18000") for line in lines)
