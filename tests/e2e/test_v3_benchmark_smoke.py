"""The format-3 codec benchmark runs end to end (tiny N) and prints every row.

No figure is asserted: they depend on the machine (benchmarks/format3_codec.py says
what they mean). The benchmark itself checks that both partition rules open every change.
"""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "format3_codec.py"


def test_the_codec_benchmark_prints_every_row() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "3000", "--reps", "1", "--seal-reps", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "== 3,000 registry changes" in out
    for row in ("seal   µs/change", "open   µs/change", "bytes/change"):
        line = next(line for line in out.splitlines() if line.startswith(row))
        figures = line[len(row) :].split()
        assert len(figures) == 3 and all(f[0].isdigit() for f in figures), line
