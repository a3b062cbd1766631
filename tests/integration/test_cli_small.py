"""The small things operators trip on, checked on the real command (subprocesses).

Ctrl-C exits 130 with one line; every error has one shape (``error: ...`` then
``next: ...``), click's own usage errors too; every time in ``--json`` is ISO 8601 UTC;
peers are shown with their labels (certificates in trust mode, the address book in open
mode) and named by them where a label names one key; no report prints raw bytes.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import Shell, as_from_a_terminal, command

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


def test_ctrl_c_exits_130_with_one_line(sh: Shell) -> None:
    sh.init("kec")
    with socket.socket() as silent:  # accepts the connection, then never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            as_from_a_terminal(
                [*command(), "--site", "kec", "sync", f"http://127.0.0.1:{port}", "--retries", "0"]
            ),
            cwd=sh.cwd,
            env=sh.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        silent.settimeout(60)
        conn, _ = silent.accept()  # the command is now waiting for an answer
        with conn:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert [line for line in err.splitlines() if line.strip()] == ["error: interrupted (Ctrl-C)"]
    assert "Aborted" not in err and "Traceback" not in err and out == ""


def _shape(stderr: str) -> list[str]:
    """The lines of an error report: one ``error:`` line, then ``next:`` hints."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), stderr
    assert all(line.startswith(("next: ", "  ")) for line in lines[1:]), stderr
    assert "Usage:" not in stderr and "Error:" not in stderr and "Traceback" not in stderr
    return lines


@pytest.mark.slow
def test_every_error_on_the_command_line_has_one_shape(sh: Shell) -> None:
    sh.init("kec")
    cases = [
        (("frobnicate",), "No such command"),  # click's usage errors ...
        (("--site", "kec", "pack", "out", "--max-bytes", "10"), "--max-bytes"),
        (("--site", "kec", "put"), "Missing argument"),
        (("inspect", "no-such-file"), "does not exist"),
        (("--site", "nowhere", "status"), "not an offsync site"),  # ... and offsync's own
        (("--site", "kec", "put", "residents", "1", "no-equals-sign"), "cannot read"),
        (("--site", "kec", "peers", "add", "kab", "not-a-key"), "not a public key"),
    ]
    for args, what in cases:
        lines = _shape(sh.run(*args, code=2).stderr)
        assert what in lines[0], lines
        assert any(line.startswith("next: ") for line in lines), lines
    usage = _shape(sh.run("--site", "kec", "pack", code=2).stderr)
    assert usage[1] == "next: `offsync pack --help` shows the usage"


def _times(doc: Any, keys: set[str]) -> list[str | None]:
    """Every value under one of ``keys``, anywhere in a JSON document."""
    found: list[str | None] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in keys and not isinstance(v, (dict, list)):
                found.append(v)
            else:
                found.extend(_times(v, keys))
    elif isinstance(doc, list):
        for v in doc:
            found.extend(_times(v, keys))
    return found


@pytest.mark.slow
def test_labels_iso_times_and_no_raw_bytes(sh: Shell) -> None:
    auth = sh.init("authority", "--authority")
    kec = sh.init("kec", "--trust", auth)
    kab = sh.init("kab", "--trust", auth)
    for key, label in ((kec, "kec-saradan"), (kab, "kab-madiun")):
        sh.run("--site", "authority", "trust", "issue", key, "--label", label,
               "--valid-until", "2030-01-01")  # fmt: skip
    sh.run("--site", "authority", "pack", "certs")
    for site in ("kec", "kab"):
        sh.run("--site", site, "apply", "certs")
    sh.run("--site", "kec", "put", "residents", "3519010101900001", "name=Siti")
    token = sh.run("--site", "kec", "attest", "issue", "residents", "3519010101900001").stdout
    # Trust mode: certified labels name peers (no address book needed).
    sh.run("--site", "kec", "pack", "--for", "kab-madiun", "to-kab")
    sh.run("--site", "kab", "apply", "to-kab")
    sh.run("--site", "kab", "pack", "--for", "kec-saradan", "to-kec")
    sh.run("--site", "kec", "apply", "to-kec")
    usb = sh.cwd / "usb"
    usb.mkdir()
    exported = sh.json("--site", "kec", "disk", "export", str(usb), "--to", "kab-madiun")
    assert [r["peer"] for r in exported["rounds"]] == [kab]
    assert exported["rounds"][0]["label"] == "kab-madiun"

    status = sh.json("--site", "kec", "status")
    labels = {p["peer"]: p["label"] for p in status["peers"]}
    assert labels[kab] == "kab-madiun" and labels[auth] == "authority"
    shown = sh.run("--site", "kec", "status").stdout
    assert "kab-madiun" in shown and kab[:12] in shown

    # Every time in --json is ISO 8601 UTC, to the second.
    docs = [
        status,
        sh.json("inspect", "to-kec"),
        sh.json("--site", "kec", "trust", "list"),
        sh.json("--site", "kab", "attest", "check", token.strip()),
    ]
    keys = {"last_receipt", "created", "valid_from", "valid_until", "recorded", "effective"}
    times = [t for doc in docs for t in _times(doc, keys)]
    assert len([t for t in times if t is not None]) >= 6, times
    assert all(t is None or ISO.fullmatch(t) for t in times), times
    assert "2030-01-01T00:00:00Z" in times

    # Open mode: the address book names peers; a label must name exactly one key.
    sh.init("open")
    sh.run("--site", "open", "apply", "to-kec")
    sh.run("--site", "open", "peers", "add", "kab", kab)
    assert sh.json("--site", "open", "peers") == {"kab": kab}
    heard = {p["peer"]: p["label"] for p in sh.json("--site", "open", "status")["peers"]}
    assert heard[kab] == "kab" and heard[kec] is None  # kab's bundle carried kec's receipt
    sh.run("--site", "open", "pack", "--for", "kab", "to-kab-2")
    sh.run("--site", "open", "peers", "add", "abcd12", kab, code=2)  # reads as a key prefix
    sh.run("--site", "open", "peers", "add", "kab", kec, code=2)  # the label is taken
    # In trust mode a book label that a certificate gives another key is ambiguous.
    sh.run("--site", "kec", "peers", "add", "kab-madiun", auth)
    ambiguous = sh.run("--site", "kec", "pack", "--for", "kab-madiun", "x", code=2)
    assert "more than one key" in ambiguous.stderr
    sh.run("--site", "kec", "peers", "remove", "kab-madiun")
    sh.run("--site", "kec", "pack", "--for", "kab-madiun", "x")

    # No report prints raw bytes, as text or as JSON.
    outputs = [
        shown,
        sh.run("--site", "kec", "trust", "list").stdout,
        sh.run("inspect", "to-kec").stdout,
        sh.run("--site", "kab", "apply", "to-kab").stdout,
        sh.run("--site", "kab", "disk", "import", str(usb)).stdout,
        sh.run("--site", "kab", "attest", "check", token.strip()).stdout,
        sh.run("--site", "open", "status").stdout,
        *(json.dumps(d) for d in docs),
    ]
    for text in outputs:  # b'...' as Python prints bytes, or a \x escape from one
        assert not re.search(r"(?<![0-9A-Za-z])b['\"]|\\x[0-9a-f]{2}", text), text
