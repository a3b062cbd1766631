"""The courier recordings benchmark runs end to end (a few recordings) and prints every
row; no figure is asserted (benchmarks/courier_recordings.py says what they mean)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "courier_recordings.py"


def test_the_courier_benchmark_carries_every_blob_to_the_centre() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--recordings", "6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("== 6 recordings x 14 blobs = 84 blobs, 1.5 MB")
    for phase in ("export", "cp -r", "import", "forward"):
        assert any(line.startswith(phase) and "peak RSS" in line for line in lines), phase
    assert any(line.startswith("disk ") and "allocated" in line for line in lines)
    assert lines[-1] == "centre   84 blobs held, 0 missing"
