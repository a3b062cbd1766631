"""Backups of SQLite stores with SQLite's online backup API (``offsync.stores.sqlite``).

A backup is taken while the store's owner keeps writing, is the store at one moment
(the copy of a store written in order holds a prefix of what was written, and its state
digest is the one reported), is checked before it gets its name, never overwrites, and a
damaged copy is found out by ``check_backup``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.errors import StorageError, UsageError
from offsync.stores.sqlite import backup, check_backup, schema_version

SITE = Identity(bytes([4]) * 32, "kec-saradan")


def _key(i: int) -> str:
    return f"3519{i:012d}"


def test_a_backup_of_a_store_being_written_is_the_store_at_one_moment(tmp_path: Path) -> None:
    rep = Replica.open(str(tmp_path / "site.sqlite"), identity=SITE)
    for i in range(200):
        rep.put("residents", _key(i), {"n": i})
    stop = threading.Event()
    written = [200]

    def clerk() -> None:  # writes records in order, one transaction each, until told
        while not stop.is_set():
            rep.put("residents", _key(written[0]), {"n": written[0]})
            written[0] += 1

    writer = threading.Thread(target=clerk)
    writer.start()
    reports = []
    try:
        for n in range(4):
            reports.append(backup(tmp_path / "site.sqlite", tmp_path / f"copy-{n}.sqlite"))
    finally:
        stop.set()
        writer.join()
    assert written[0] > 200  # the owner did write while the copies were taken
    for report in reports:
        assert report.schema_version == schema_version() and report.identity == SITE.public_key
        assert report.size == os.path.getsize(report.path)
        with Replica.open(report.path, identity=SITE, read_only=True) as copy:
            keys = [k for k, _ in copy.items("residents")]
            # The copy holds exactly the first n records written, n its own seq.
            assert keys == [_key(i) for i in range(copy.seq)] and copy.seq == report.seq
            assert copy.state_digest() == report.state_digest
        assert check_backup(report.path, report) == report
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["site.sqlite", "site.sqlite-wal", "site.sqlite-shm", "site.sqlite.lock"]
        + [f"copy-{n}.sqlite" for n in range(4)]
    )  # single files: no -wal or temporary file left beside the copies
    final = rep.state_digest()
    rep.close()
    last = backup(tmp_path / "site.sqlite", tmp_path / "after.sqlite")
    assert last.state_digest == final  # with no owner too


def test_a_backup_never_overwrites_and_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    with Replica.open(str(tmp_path / "site.sqlite"), identity=SITE) as rep:
        rep.put("residents", _key(1), {"n": 1})
    (tmp_path / "taken.sqlite").write_text("yesterday's backup")
    with pytest.raises(UsageError, match="never overwrites"):
        backup(tmp_path / "site.sqlite", tmp_path / "taken.sqlite")
    assert (tmp_path / "taken.sqlite").read_text() == "yesterday's backup"
    with pytest.raises(UsageError, match="no such directory"):
        backup(tmp_path / "site.sqlite", tmp_path / "nowhere" / "copy.sqlite")
    (tmp_path / "not-a-store.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with pytest.raises(StorageError):
        backup(tmp_path / "not-a-store.sqlite", tmp_path / "copy.sqlite")
    with pytest.raises(StorageError, match="no such store"):
        backup(tmp_path / "gone.sqlite", tmp_path / "copy.sqlite")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".") or n == "copy.sqlite"]


def test_check_backup_finds_a_damaged_or_different_copy(tmp_path: Path) -> None:
    with Replica.open(str(tmp_path / "site.sqlite"), identity=SITE) as rep:
        for i in range(300):
            rep.put("residents", _key(i), {"name": "x" * 100})
        good = backup(tmp_path / "site.sqlite", tmp_path / "good.sqlite")
        rep.put("residents", _key(1000), {"n": 1})
    later = backup(tmp_path / "site.sqlite", tmp_path / "later.sqlite")
    with pytest.raises(StorageError, match="differs from its source"):
        check_backup(later.path, good)

    data = bytearray(Path(good.path).read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for offset in range(page, len(data), page):  # every b-tree page's header: nonsense
        data[offset : offset + 8] = b"\xff" * 8
    (tmp_path / "damaged.sqlite").write_bytes(bytes(data))
    with pytest.raises(StorageError):
        check_backup(tmp_path / "damaged.sqlite")
    (tmp_path / "torn.sqlite").write_bytes(Path(good.path).read_bytes()[: len(data) // 2])
    with pytest.raises(StorageError):
        check_backup(tmp_path / "torn.sqlite")
    assert check_backup(good.path) == good
