"""A full or failing disk under a replica: an offsync error, and a store that is either
unchanged or exactly what was committed, also after reopening the file.

The disk fills for real: SQLite's ``PRAGMA max_page_count`` caps the file (no root
needed), and the command line runs under ``RLIMIT_FSIZE``, where writes past the limit
fail with EFBIG as they would with ENOSPC.
"""

from __future__ import annotations

import logging
import random
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import offsync.plan.seal as seal_plan
from offsync import Identity, Replica
from offsync.errors import StorageError, StorageFullError
from offsync.scope import Partition, Stream
from tests.helpers.cli import Shell, command, environment

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

ALICE = Identity(b"\x0a" * 32, label="alice")
BOB = Identity(b"\x0b" * 32, label="bob")


def _fill_disk(rep: Replica, spare_pages: int = 0) -> None:
    """Let the store's file grow by ``spare_pages`` pages at most, from now on."""
    db = rep.store.db  # type: ignore[attr-defined]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + spare_pages}")


def _free_disk(rep: Replica) -> None:
    rep.store.db.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]


def _state(rep: Replica) -> tuple[Any, ...]:
    """Everything a failed write must leave as it was."""
    return (
        rep.state_digest(),
        rep.knowledge(),
        rep.seq,
        rep.quarantined(),
        rep.store.outbox(),
        rep.store.get_meta("sealed"),
        rep.store.get_meta("hlc"),
        rep.store.peers(),
        sorted(rep.store.segment_index()),
    )


def _blob(seed: int, size: int) -> bytes:
    """Incompressible bytes: a field that takes its size on disk and in a segment."""
    return random.Random(seed).randbytes(size)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Replica, str]]:
    path = str(tmp_path / "alice.sqlite")
    rep = Replica.open(path, identity=ALICE)
    for i in range(3):
        rep.put("residents", f"r{i}", {"name": f"resident {i}"})
    rep.pack()  # seal what is there, so every kind of row exists
    yield rep, path
    rep.close()


def _reopened(path: str) -> tuple[Any, ...]:
    with Replica.open(path, identity=ALICE) as again:
        return _state(again)


def test_put_on_a_full_disk_raises_storage_full_and_changes_nothing(
    site: tuple[Replica, str],
) -> None:
    rep, path = site
    before = _state(rep)
    _fill_disk(rep)
    with pytest.raises(StorageFullError, match="full"):
        rep.put("residents", "big", {"photo": _blob(1, 200_000)})
    assert _state(rep) == before
    _free_disk(rep)  # and the replica works on once there is room
    rep.put("residents", "after", {"name": "x"})
    assert rep.seq == before[2] + 1
    rep.close()
    assert _reopened(path)[2] == before[2] + 1


def test_batch_on_a_full_disk_raises_storage_full_and_changes_nothing(
    site: tuple[Replica, str],
) -> None:
    rep, path = site
    before = _state(rep)
    _fill_disk(rep, spare_pages=30)
    with pytest.raises(StorageFullError), rep.batch():
        for i in range(40):
            rep.put("residents", f"b{i}", {"photo": _blob(i, 20_000)})
    assert _state(rep) == before
    rep.close()
    assert _reopened(path) == before


def test_an_error_caught_inside_a_batch_still_rolls_the_batch_back(
    site: tuple[Replica, str],
) -> None:
    # SQLite rolls a transaction back by itself on a full disk; an application that
    # catches the error inside its batch and writes on must not commit half a batch.
    rep, path = site
    before = _state(rep)
    _fill_disk(rep, spare_pages=8)
    with pytest.raises(StorageError), rep.batch():
        for i in range(20):
            try:  # large writes fail, small ones would fit
                rep.put("residents", f"c{i}", {"photo": _blob(i, 20_000 if i % 2 else 10)})
            except StorageFullError:
                continue
    assert _state(rep) == before
    rep.close()
    assert _reopened(path) == before


def test_apply_on_a_full_disk_raises_storage_full_and_changes_nothing(
    site: tuple[Replica, str],
) -> None:
    rep, path = site
    bob = Replica.open(":memory:", identity=BOB)
    with bob.batch():
        for i in range(30):
            bob.put("residents", f"bob{i}", {"photo": _blob(100 + i, 10_000)})
    [bundle] = bob.pack()
    before = _state(rep)
    _fill_disk(rep, spare_pages=10)
    with pytest.raises(StorageFullError):
        rep.apply(bundle)
    assert _state(rep) == before
    _free_disk(rep)
    assert rep.apply(bundle).applied == 30  # nothing of it was half-applied
    rep.close()
    assert _reopened(path)[1].max_seq(Stream(BOB.public_key, RESIDENTS_PARTITION)) == 30


def test_sealing_at_pack_on_a_full_disk_raises_and_changes_nothing(
    site: tuple[Replica, str],
) -> None:
    rep, path = site
    with rep.batch():
        for i in range(20):
            rep.put("residents", f"s{i}", {"photo": _blob(200 + i, 10_000)})
    before = _state(rep)
    _fill_disk(rep)
    with pytest.raises(StorageFullError):
        rep.pack()
    assert _state(rep) == before
    rep.close()
    assert _reopened(path) == before


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seal_plan, "SEGMENT_MAX_CHANGES", 5)


def _sealed(rep: Replica) -> int:
    return int(rep.store.get_meta("sealed") or b"0")


@pytest.mark.usefixtures("small_segments")
def test_a_put_that_committed_returns_although_the_seal_after_it_fails(
    site: tuple[Replica, str], caplog: pytest.LogCaptureFixture
) -> None:
    rep, path = site
    for i in range(4):  # one more write fills a segment, and sealing follows it
        rep.put("residents", f"p{i}", {"photo": _blob(300 + i, 6_000)})
    sealed = _sealed(rep)
    # Room for the write (its outbox row and record), not for the segment after it.
    _fill_disk(rep, spare_pages=6)
    with caplog.at_level(logging.WARNING, logger="offsync"):
        change = rep.put("residents", "fifth", {"photo": _blob(304, 6_000)})
    assert rep.get("residents", "fifth") == {"photo": _blob(304, 6_000)}
    assert change.seq == rep.seq and _sealed(rep) == sealed  # committed, not sealed
    [record] = [r for r in caplog.records if r.name == "offsync"]
    assert "StorageFullError" in record.getMessage() and "fifth" not in record.getMessage()
    # Pack still raises when it cannot seal; the record stays written once.
    with pytest.raises(StorageFullError):
        rep.pack()
    _free_disk(rep)
    rep.put("residents", "sixth", {"name": "x"})  # the next write seals
    assert _sealed(rep) > sealed
    rep.close()
    with Replica.open(path, identity=ALICE) as again:
        assert again.seq == change.seq + 1
        assert again.get("residents", "fifth") == {"photo": _blob(304, 6_000)}


@pytest.mark.usefixtures("small_segments")
def test_a_batch_that_committed_returns_although_the_seal_after_it_fails(
    site: tuple[Replica, str], caplog: pytest.LogCaptureFixture
) -> None:
    rep, path = site
    for i in range(3):  # two more writes fill a segment
        rep.put("residents", f"p{i}", {"photo": _blob(400 + i, 12_000)})
    sealed, seq = _sealed(rep), rep.seq
    _fill_disk(rep, spare_pages=5)
    with caplog.at_level(logging.WARNING, logger="offsync"), rep.batch():
        for i in range(2):
            rep.put("residents", f"q{i}", {"photo": _blob(410 + i, 2_000)})
    assert rep.seq == seq + 2 and _sealed(rep) == sealed
    assert any("StorageFullError" in r.getMessage() for r in caplog.records)
    _free_disk(rep)
    rep.pack()
    assert _sealed(rep) == seq + 2
    rep.close()
    assert _reopened(path)[2] == seq + 2


def _run_limited(cwd: Path, limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    """``offsync ARGS`` with every file it writes capped at ``limit`` bytes."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [*command(), *args],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=cap,
    )


@pytest.mark.slow
def test_the_command_line_says_the_disk_is_full_without_a_traceback(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    sh.init("kec")
    site = ("--site", "kec")
    sh.run(*site, "put", "residents", "1", "name=Siti")
    before = sh.json(*site, "status")
    bob = Replica.open(":memory:", identity=BOB)
    with bob.batch():
        for i in range(40):
            bob.put("residents", f"bob{i}", {"photo": _blob(500 + i, 20_000)})
    (tmp_path / "in").mkdir()
    for i, bundle in enumerate(bob.pack(max_bytes=300_000)):
        (tmp_path / "in" / f"{i}.ofs").write_bytes(bundle)
    limit = 96 * 1024  # bytes per file: room for small writes, not for these
    photo = "photo=" + "x" * 100_000
    for args in (("put", "residents", "2", photo), ("apply", "in")):
        done = _run_limited(tmp_path, limit, *site, *args)
        assert done.returncode == 1, done
        assert "full" in done.stderr and "next:" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    # A courier disk brought to this site: the import stops the same way.
    sh.init("kab")
    key = sh.json(*site, "id")["public_key"]
    sh.run("--site", "kab", "apply", "in")  # it carries bob's records on
    (tmp_path / "usb").mkdir()
    sh.run("--site", "kab", "disk", "export", "usb", "--to", key, "--no-encrypt")
    done = _run_limited(tmp_path, limit, *site, "disk", "import", "usb", "--no-reply")
    assert done.returncode == 1, done
    assert "full" in done.stderr and "Traceback" not in done.stderr, done.stderr
    after = sh.json(*site, "status")
    assert after == before
    sh.run(*site, "get", "residents", "2", code=1)
    sh.run(*site, "disk", "import", "usb", "--no-reply")  # with room, the same disk
    assert sh.json(*site, "status")["changes_held"] == before["changes_held"] + 40
    sh.run(*site, "apply", "in")  # and the same files: all there already


def test_a_certificate_written_on_a_full_disk_stands_and_its_effect_follows_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An authority's replica holds a site's changes in quarantine (no certificate yet).
    # Certifying the site commits a small record, then applies the held changes, which
    # do not fit: the certificate stands, and the rest happens with the next bundle.
    from offsync.trust import issue_certificate

    path = str(tmp_path / "authority.sqlite")
    auth = Replica.open(path, identity=ALICE, trust=[ALICE.public_key])
    bob = Replica.open(":memory:", identity=BOB)
    with bob.batch():
        for i in range(5):
            bob.put("residents", f"bob{i}", {"photo": _blob(600 + i, 20_000)})
    for bundle in bob.pack():
        auth.apply(bundle)
    assert len(auth.quarantined_changes()) == 5
    _fill_disk(auth, spare_pages=4)
    with caplog.at_level(logging.WARNING, logger="offsync"):
        issue_certificate(auth, BOB)  # returns: the certificate is committed
    assert auth.trust_store is not None and BOB.public_key in auth.trust_store.certificates
    assert auth.get("residents", "bob4") is None and len(auth.quarantined()) == 1  # not yet
    assert any("StorageFullError" in r.getMessage() for r in caplog.records)
    _free_disk(auth)
    for bundle in bob.pack(auth.knowledge(), always=True):  # the next bundle, even empty
        auth.apply(bundle)
    assert auth.quarantined() == []
    assert auth.get("residents", "bob4") == {"photo": _blob(604, 20_000)}
    auth.close()
