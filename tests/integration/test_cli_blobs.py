"""``offsync put --attach``, ``get --save`` and blobs in ``status`` (issue 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offsync.blobs import blob_hash
from tests.helpers.cli import InProcess, Shell


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return InProcess(tmp_path)


def test_attach_a_file_then_save_it_and_status_lists_missing_blobs(sh: Shell) -> None:
    sh.init("a")
    sh.init("b")
    face = os.urandom(250_000)
    (sh.cwd / "face.jpg").write_bytes(face)
    (sh.cwd / "thumb.bin").write_bytes(b"tiny")
    key = "3519010101900001"
    written = sh.json(
        "--site", "a", "put", "people", key, "name=Dewi",
        "--attach", "photo=face.jpg", "--attach", "thumb=thumb.bin",
    )  # fmt: skip
    assert written["blobs"]["photo"]["size"] == 250_000
    record = sh.json("--site", "a", "get", "people", key)
    assert record["name"] == "Dewi" and "$blob" in record["photo"]
    assert "image/jpeg" in str(record["photo"]) and "application/octet-stream" in str(
        record["thumb"]
    )
    saved = sh.run("--site", "a", "get", "people", key, "--save", "photo=copy.jpg")
    assert "saved photo (250000 bytes, image/jpeg)" in saved.stdout
    assert (sh.cwd / "copy.jpg").read_bytes() == face
    assert sh.json("--site", "a", "status")["missing_blobs"]["blobs"] == 0

    # The record travels in a bundle; its blobs do not (yet): b lists them as missing.
    sh.json("--site", "a", "pack", "outbox")
    sh.json("--site", "b", "apply", "outbox")
    assert sh.json("--site", "b", "get", "people", key)["name"] == "Dewi"
    missing = sh.json("--site", "b", "status")["missing_blobs"]
    assert missing == {
        "fetch": "eager",
        "asked_for": 0,
        "blobs": 2,
        "bytes": 250_004,
        "records": 1,
        "first_records": [f"people/{key}"],
    }
    assert "2 blob(s) missing" in sh.run("--site", "b", "status").stdout
    refused = sh.run("--site", "b", "get", "people", key, "--save", "photo=x.jpg", code=1)
    assert blob_hash(face).hex() in refused.stderr and "not here yet" in refused.stderr
    assert not (sh.cwd / "x.jpg").exists()

    # Attaching the same file at b completes it.
    sh.run("--site", "b", "put", "other", "k", "--attach", "photo=face.jpg")
    missing = sh.json("--site", "b", "status")["missing_blobs"]
    assert missing["blobs"] == 1 and missing["bytes"] == 4


def test_attach_and_save_usage_errors(sh: Shell) -> None:
    sh.init("a")
    sh.run("--site", "a", "put", "people", "k", "--attach", "photo", code=2)
    sh.run("--site", "a", "put", "people", "k", "--attach", "photo=nowhere.jpg", code=1)
    sh.run("--site", "a", "put", "people", "k", "name=x")
    bad = sh.run("--site", "a", "get", "people", "k", "--save", "name=x.txt", code=2)
    assert "holds no blob reference" in bad.stderr
