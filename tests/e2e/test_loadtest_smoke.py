"""The centre's load test runs end to end on a tiny flood, over HTTP and direct.

No timing is asserted. The load test itself checks that the centre holds every change
exactly once and ends where a SQLite replica fed the same bundles does; here we check
that it says so (exit 0, PASS) and prints every figure the benchmarks README promises:
CPU time beside wall time, the ratios to COPY and executemany measured in the same run,
and the median of the rounds.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tests.helpers.postgres import DSN

SCRIPT = ROOT / "benchmarks" / "loadtest.py"

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize(
    "mode", [[], ["--direct"], ["--spool", "4"]], ids=["http", "direct", "spool"]
)
def test_tiny_load_test_passes_and_prints_every_figure(mode: list[str]) -> None:
    proc = subprocess.run(
        [
            *(sys.executable, str(SCRIPT), *mode, "--sites", "4", "--backlog", "20"),
            *("--per-bundle", "10", "--workers", "2", "--repeat", "2", "--dsn", DSN),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.rstrip().endswith("PASS"), out
    for line in (
        "baseline copy",
        "baseline executemany",
        "CPU during the push (s, us/change): load generator",
        "postgres backends",
        "ratio to the baselines:",
        "x copy by cpu",
        "x executemany by cpu",
        "centre cpu us/chg",
        "changes per centre cpu s",
        "WAL fsyncs",
        "== median of 2 rounds",
    ):
        assert line in out, f"missing {line!r} in:\n{out}"
    assert out.count("[ok] changes rows == written (80 == 80)") == 2, out
    assert "FAIL" not in out, out
