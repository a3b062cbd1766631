"""The bootstrap benchmark runs end to end on a tiny centre and prints every row.

No figure is asserted (benchmarks/README.md, "Bootstrap", has them); the benchmark
itself exits 1 when a site holds fewer changes than its scope or the incremental round
does not bring exactly the 100 changes in scope.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "bootstrap.py"


def test_the_bootstrap_benchmark_prints_every_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--records", "8000", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [
        line for line in done.stdout.splitlines() if line.startswith("| ") and "|---" not in line
    ]
    assert len(rows) == 1 + 3 * 2  # the header, then three scopes by two paths
    assert "incremental: 100 changes in scope among 4,000 elsewhere" in done.stdout
