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


def test_disk_export_and_import_carry_blobs_and_a_full_disk_says_what_is_left(
    sh: Shell,
) -> None:
    sh.init("a")
    b = sh.init("b")
    faces = [os.urandom(200_000 + i) for i in range(3)]
    for i, face in enumerate(faces):
        (sh.cwd / f"face{i}.jpg").write_bytes(face)
        sh.run("--site", "a", "put", "people", f"k{i}", "--attach", f"photo=face{i}.jpg")
    usb, second = sh.cwd / "usb", sh.cwd / "usb2"
    usb.mkdir()
    second.mkdir()
    # A disk with room for the bundles, the reserve and two photos (1 MiB chunks).
    room = str(1_048_576 + 100_000 + 2 * 233_472)
    full = sh.json("--site", "a", "disk", "export", str(usb), "--to", b, "--assume-free", room)
    [row] = full["rounds"]
    assert row["blobs_sent"] == 2 and row["blobs_left"] == 1
    assert row["blobs_sent_bytes"] == sum(sorted(len(f) for f in faces)[:2])
    text = sh.run("--site", "a", "disk", "export", str(second), "--to", b)
    assert "1 out" in text.stdout  # the one that did not fit, and only that one
    got = sh.json("--site", "b", "disk", "import", str(usb), "--no-reply")
    assert got["rounds"][0]["blobs_received"] == 2
    assert got["status"]["missing_blobs"]["blobs"] == 1
    shown = sh.run("--site", "b", "disk", "import", str(second), "--no-reply")
    assert "1 in (" in shown.stdout
    assert sh.json("--site", "b", "status")["missing_blobs"]["blobs"] == 0
    for i, face in enumerate(faces):
        sh.run("--site", "b", "get", "people", f"k{i}", "--save", f"photo=got{i}.jpg")
        assert (sh.cwd / f"got{i}.jpg").read_bytes() == face
