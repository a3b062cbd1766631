"""The ``offsync`` script in subprocesses, as operators run it: the courier flow, the
folder flow, and the HTTP flow against `offsync serve` on a free loopback port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers.cli import Shell, serving


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


@pytest.mark.slow
def test_courier_flow(sh: Shell) -> None:
    """A sub-district's backlog goes to the district on a disk; receipts come back."""
    kec = sh.init("kec-saradan")
    kab = sh.init("kab-madiun")
    for i in range(2):
        sh.run("--site", "kec-saradan", "put", "residents", f"3519{i:012d}", f"name=R{i}")
    sh.run("--site", "kab-madiun", "put", "notices", "n1", "text=clinic closed friday")
    usb = sh.cwd / "usb"
    usb.mkdir()

    out = sh.json("--site", "kec-saradan", "disk", "export", str(usb), "--to", kab)
    assert out["rounds"][0]["sent_changes"] == 2
    files = sorted(p.name for p in usb.rglob("*") if p.is_file())
    assert any(n.endswith(".ofb") for n in files) and any(n.endswith(".man") for n in files)

    # At the district: import, and the return trip is written to the same disk.
    at_kab = sh.json("--site", "kab-madiun", "disk", "import", str(usb))
    assert at_kab["rounds"][0]["applied"] == 2
    assert any(r["peer"] == kec and r["sent_bundles"] >= 1 for r in at_kab["rounds"])
    assert sh.json("--site", "kab-madiun", "get", "residents", f"3519{1:012d}") == {"name": "R1"}

    # Back at the sub-district: the district's receipt says it holds both.
    at_kec = sh.json("--site", "kec-saradan", "disk", "import", str(usb), "--no-reply")
    assert at_kec["rounds"][0]["applied"] == 1  # the district's notice came back too
    status = sh.json("--site", "kec-saradan", "status")
    [peer] = status["peers"]
    assert peer["peer"] == kab and peer["holds_of_mine"] == 2 and peer["pending_of_mine"] == 0
    kab_status = sh.json("--site", "kab-madiun", "status")
    assert kab_status["state_digest"] == status["state_digest"]
    human = sh.run("--site", "kec-saradan", "status").stdout
    assert "2/2" in human and "Nothing quarantined" in human

    # A damaged file on the disk is refused (exit 3) and set aside, never applied.
    sh.run("--site", "kec-saradan", "put", "residents", "x", "name=late entry")
    sh.run("--site", "kec-saradan", "disk", "export", str(usb), "--to", kab)
    [bundle] = [p for p in usb.rglob("*.ofb") if f"to-{kab[:32]}" in str(p)]
    data = bytearray(bundle.read_bytes())
    data[-10] ^= 0xFF
    bundle.write_bytes(bytes(data))
    before = sh.json("--site", "kab-madiun", "status")["state_digest"]
    hurt = sh.run("--site", "kab-madiun", "disk", "import", str(usb), "--no-reply", code=3)
    assert "refused" in hurt.stdout + hurt.stderr
    assert sh.json("--site", "kab-madiun", "status")["state_digest"] == before


def test_demo_command(sh: Shell) -> None:
    done = sh.run("demo", "--residents", "15")
    assert "every replica has the same state digest" in done.stdout
    assert "--residents" in sh.run("demo", "--help").stdout


@pytest.mark.slow
def test_http_flow(sh: Shell) -> None:
    """Two sites sync through a centre served by `offsync serve` (real uvicorn)."""
    centre = sh.init("pusat")
    sh.init("kec-a")
    b = sh.init("kec-b")
    sh.run("--site", "kec-a", "put", "residents", "3519010101900001", "name=Siti")
    sh.run("--site", "kec-a", "put", "residents", "3519010101900002", "name=Budi")
    sh.run("--site", "kec-b", "put", "residents", "3519020202850003", "name=Ani")

    # The centre is down: a transport failure (exit 4) that says to try again later.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
        down = sh.run("--site", "kec-a", "sync", dead, "--retries", "0", code=4)
    assert "try again later" in down.stderr

    with serving(sh, "pusat") as (url, _):
        assert url.startswith("http://127.0.0.1:")
        first = sh.json("--site", "kec-a", "sync", url, "--server-key", centre)
        assert first["rounds"][0]["sent_changes"] == 2
        [peer] = first["status"]["peers"]
        assert peer["peer"] == centre and peer["pending_of_mine"] == 0
        second = sh.json("--site", "kec-b", "sync", url)
        assert second["rounds"][0]["applied"] == 2  # kec-a's work, via the centre
        third = sh.json("--site", "kec-a", "sync", url)
        assert third["rounds"][0]["applied"] == 1  # kec-b's
        # A server that is not the one we expect is refused.
        wrong = sh.run("--site", "kec-a", "sync", url, "--server-key", b, "--retries", "0", code=4)
        assert "refused" in wrong.stderr and "next:" in wrong.stderr
        human = sh.run("--site", "kec-b", "sync", url).stdout
        assert f"sync with {url}" in human
    held = sh.json("--site", "pusat", "status")
    assert held["changes_held"] == 3
    digests = {sh.json("--site", s, "status")["state_digest"] for s in ("kec-a", "kec-b")}
    assert digests == {held["state_digest"]}
