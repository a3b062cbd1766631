"""The systemd units of docs/operations.md ("Starting at boot: systemd") pass
``systemd-analyze verify``, with the path of this ``offsync`` put in for the one the
page shows; skipped, saying why, where the tool is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCS = ROOT / "docs" / "operations.md"
UNIT = re.compile(r"^```ini title=(\S+\.service)\n(.*?)^```$", re.M | re.S)
SHOWN = "/opt/offsync/venv/bin/offsync"
ANALYZE = shutil.which("systemd-analyze")


def units() -> dict[str, str]:
    return {name: body for name, body in UNIT.findall(DOCS.read_text())}


def test_the_page_has_a_unit_for_a_site_and_for_the_centre() -> None:
    found = units()
    assert set(found) == {"offsync-site.service", "offsync-centre.service"}
    for body in found.values():
        assert f"ExecStart={SHOWN} serve" in body
        assert "OFFSYNC_PASSPHRASE_FILE=%d/passphrase" in body and "LoadCredential=" in body
        assert "OFFSYNC_PASSPHRASE=" not in body  # never the passphrase itself


def verify(folder: Path, name: str, body: str) -> subprocess.CompletedProcess[str]:
    offsync = Path(sys.executable).parent / "offsync"
    (folder / name).write_text(body.replace(SHOWN, str(offsync)))
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", str(folder / name)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("name", sorted(units()))
def test_a_unit_passes_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    done = verify(tmp_path, name, units()[name])
    problems = [line for line in done.stderr.splitlines() if name in line]
    assert done.returncode == 0 and not problems, done.stderr


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
def test_the_check_finds_a_broken_unit(tmp_path: Path) -> None:
    """The check can fail: a misspelt setting is reported."""
    body = units()["offsync-site.service"].replace("ExecStart=", "ExecStrat=")
    done = verify(tmp_path, "offsync-site.service", body)
    assert done.returncode != 0 or "Unknown key" in done.stderr
