"""``offsync history COLLECTION KEY``: an audit question answered on the command line.

A sub-district edits a resident three times while offline; the district corrected the
name meanwhile; after folder rounds both sites list the same four versions with their
site and time, in the same order (run in-process: tests/helpers/cli.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.cli import InProcess, Shell

NIK = "3519010101900001"


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return InProcess(tmp_path)


def test_history_lists_every_version_with_its_site_on_both_sides(sh: Shell) -> None:
    kec = sh.init("kec-saradan")
    kab = sh.init("kab-madiun")
    share = sh.cwd / "share"
    share.mkdir()
    sh.run("--site", "kec-saradan", "put", "residents", NIK, "name=Siti Aminah", "village=Kare")
    sh.run("--site", "kec-saradan", "sync", str(share), "--peer", kab)
    sh.run("--site", "kab-madiun", "sync", str(share), "--peer", kec)
    # Offline at the sub-district: two edits; at the district: a correction.
    sh.run("--site", "kec-saradan", "put", "residents", NIK, "village=Kare Lor")
    sh.run("--site", "kec-saradan", "put", "residents", NIK, "phone=0812")
    sh.run("--site", "kab-madiun", "put", "residents", NIK, "name=Siti Aminah Putri")
    sh.run("--site", "kec-saradan", "sync", str(share), "--peer", kab)
    sh.run("--site", "kab-madiun", "sync", str(share), "--peer", kec)
    sh.run("--site", "kec-saradan", "sync", str(share))

    at_kec = sh.json("--site", "kec-saradan", "history", "residents", NIK)
    at_kab = sh.json("--site", "kab-madiun", "history", "residents", NIK)
    assert [v["change"] for v in at_kec] == [v["change"] for v in at_kab]
    assert len(at_kec) == 4
    names = {kec: "kec-saradan", kab: "kab-madiun"}
    by_site = sorted(
        ((names[v["origin"]], v["op"], v["fields"]) for v in at_kec), key=lambda t: repr(t)
    )
    assert by_site == [
        ("kab-madiun", "put", {"name": "Siti Aminah Putri"}),
        ("kec-saradan", "put", {"name": "Siti Aminah", "village": "Kare"}),
        ("kec-saradan", "put", {"phone": "0812"}),
        ("kec-saradan", "put", {"village": "Kare Lor"}),
    ]
    assert {v["site"] for v in at_kab if v["origin"] == kab} == {"kab-madiun"}, "own label"
    first = at_kec[0]
    assert first["fields"] == {"name": "Siti Aminah", "village": "Kare"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["time"])
    assert first["origin"] == kec and first["parents"] == [] and first["author"] is None
    assert first["held"] is None and first["schema"] == 0 and not first["current"]
    assert sorted(names[v["origin"]] for v in at_kec if v["current"]) == [
        "kab-madiun",
        "kec-saradan",
    ]

    table = sh.run("--site", "kab-madiun", "history", "residents", NIK).stdout
    assert (
        "kab-madiun" in table and kec[:12] in table and "Kare Lor" in table and "(current)" in table
    )
    assert table.index("Kare Lor") < table.index("0812"), "oldest first"


def test_history_of_nothing_exits_1(sh: Shell) -> None:
    sh.init("kec")
    missing = sh.run("--site", "kec", "history", "residents", NIK, code=1)
    assert "holds no change" in missing.stderr
    assert sh.json("--site", "kec", "history", "residents", NIK, code=1) == []
    sh.run("--site", "kec", "put", "residents", NIK, "name=Siti")
    sh.run("--site", "kec", "delete", "residents", NIK)
    gone = sh.json("--site", "kec", "history", "residents", NIK, "--held")
    assert [(v["op"], v["fields"], v["current"]) for v in gone] == [
        ("put", {"name": "Siti"}, False),
        ("delete", None, True),
    ]
