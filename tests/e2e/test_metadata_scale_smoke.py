"""The metadata benchmark runs end to end (a small centre) and prints every row.

No figure is asserted: they depend on the machine (benchmarks/metadata_scale.py says
what they mean).
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "metadata_scale.py"


def test_the_metadata_benchmark_prints_every_row() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sites", "200"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 200 |")]
    whats = [r.split("|")[2].strip() for r in rows]
    assert len(rows) == 15, done.stdout
    assert any(w.startswith("idle HTTP round (0 uploads)") for w in whats), whats
    assert whats.count("duplicate upload answer") == 2 and whats.count("GET /knowledge") == 2
    assert "centre at 200 sites" in done.stdout
