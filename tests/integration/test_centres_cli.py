"""Several centres from the command line, as an operator runs them: a site lists two
centres, delivers to the one that is up, and the other, started later with
``offsync serve --peer``, catches up from its peer."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.helpers.cli import Shell, serving


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _held(sh: Shell, site: str, count: int) -> dict[str, object]:
    """``status`` of a served site once it holds ``count`` changes (bounded wait)."""
    for _ in range(240):
        doc: dict[str, object] = sh.json("--site", site, "status")
        if doc["changes_held"] == count:
            return doc
        time.sleep(0.25)
    raise AssertionError(f"{site} never held {count} changes: {doc}")


def test_a_site_fails_over_and_the_centres_converge(sh: Shell) -> None:
    key_a = sh.init("pusat-a")
    key_b = sh.init("pusat-b")
    sh.init("kec-a")
    port_a = _free_port()
    url_a = f"http://127.0.0.1:{port_a}"
    with serving(sh, "pusat-b") as (url_b, _):
        sh.run("--site", "kec-a", "centres", "add", url_a, "--key", key_a)
        sh.run("--site", "kec-a", "centres", "add", url_b)  # its key: pinned at first contact
        sh.run("--site", "kec-a", "put", "residents", "3519010101900001", "name=Siti")
        sh.run("--site", "kec-a", "put", "residents", "3519010101900002", "name=Budi")

        first = sh.json("--site", "kec-a", "sync", "--retries", "0")
        assert first["centre"] == url_b
        assert [f["centre"] for f in first["failed_centres"]] == [url_a]
        assert first["rounds"][0]["sent_changes"] == 2
        assert first["status"]["centres"]["undelivered_of_mine"] == 0
        listed = sh.json("--site", "kec-a", "centres")
        assert [c["key"] for c in listed] == [key_a, key_b]  # B's key pinned
        assert [c["answered_last"] for c in listed] == [False, True]
        human = sh.run("--site", "kec-a", "sync", "--retries", "0").stdout
        assert f"delivered through {url_b}" in human  # the last to answer: tried first

        peer = ("--port", str(port_a), "--peer", url_b, "--peer-every", "1")
        with serving(sh, "pusat-a", *peer) as (served_a, _):
            assert served_a == url_a
            held_a = _held(sh, "pusat-a", 2)
        held_b = sh.json("--site", "pusat-b", "status")
        assert held_a["state_digest"] == held_b["state_digest"]

    site = json.loads((sh.cwd / "kec-a" / "site.json").read_text())
    assert site["centres"] == [{"url": url_a, "key": key_a}, {"url": url_b, "key": key_b}]
    status = sh.json("--site", "kec-a", "status")
    assert status["centres"]["keys"] == [key_a, key_b]
    assert status["centres"]["delivered_of_mine"] == 2
    down = sh.run("--site", "kec-a", "sync", "--retries", "0", code=4)
    assert "no centre answered" in down.stderr


def test_centres_are_listed_checked_and_removed(sh: Shell) -> None:
    sh.init("kec-a")
    assert sh.json("--site", "kec-a", "centres") == []
    bad = sh.run("--site", "kec-a", "centres", "add", "ftp://x", code=2)
    assert "http" in bad.stderr
    sh.run("--site", "kec-a", "centres", "add", "http://127.0.0.1:9/")
    again = sh.run("--site", "kec-a", "centres", "add", "http://127.0.0.1:9", code=2)
    assert "listed already" in again.stderr
    none = sh.run("--site", "kec-a", "sync", "http://127.0.0.1:9", sh.cwd.as_posix(), code=2)
    assert "not an http(s) URL" in none.stderr
    sh.run("--site", "kec-a", "centres", "remove", "http://127.0.0.1:9")
    empty = sh.run("--site", "kec-a", "sync", code=2)
    assert "no centre listed" in empty.stderr


def test_a_restored_site_hears_every_centre_before_it_writes(sh: Shell) -> None:
    """Centre B alone holds a change the backup lacks (the centres have not peered):
    the restored site's first round with both takes it back from B, so the next write
    gets a new seq instead of reusing the lost one (a fork)."""
    sh.init("pusat-a")
    sh.init("pusat-b")
    sh.init("kec")
    nik = "35190101019000{:02d}"
    with serving(sh, "pusat-a") as (url_a, _), serving(sh, "pusat-b") as (url_b, _):
        sh.run("--site", "kec", "put", "residents", nik.format(1), "name=Dewi")
        sh.run("--site", "kec", "sync", url_a)
        sh.run("--site", "kec", "backup", "bk")  # seq 1, held by A
        sh.run("--site", "kec", "put", "residents", nik.format(2), "name=Eko")
        sh.run("--site", "kec", "sync", url_b)  # seq 2 reaches B only
        sh.run("--site", "kec", "restore", "bk")
        round_ = sh.json("--site", "kec", "sync", url_a, url_b)
        assert round_["status"]["seq"] == 2 and round_["status"]["restore"] is None
        sh.run("--site", "kec", "put", "residents", nik.format(3), "name=Sri")
        assert sh.json("--site", "kec", "status")["seq"] == 3
        sh.run("--site", "kec", "sync", url_a, url_b)
        sh.run("--site", "kec", "sync", url_b, url_a)
    held = [sh.json("--site", s, "status") for s in ("pusat-a", "pusat-b")]
    assert [h["quarantined"] for h in held] == [[], []]
    assert held[1]["changes_held"] == 3
