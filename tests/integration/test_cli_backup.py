"""``offsync backup`` and ``offsync restore``, run as an operator would (subprocesses).

A backup is taken while ``offsync serve`` owns the site and equals the store at that
moment; a site restored from an old backup refuses to write (and to seal what its backup
held unsealed) until a peer has answered, then until its own later changes are back
from that peer, and then carries on after them with no fork anywhere; a damaged backup,
another site's backup or a site in use is refused and changes nothing; an upgrade of the
store's schema by the command keeps a checked copy of the store as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from offsync.replica.packing import RESTORED_META
from offsync.stores.sqlite import SQLiteStore
from tests.helpers.cli import Shell, environment, serving

NIK = "35190303030300{:02d}"


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return Shell(tmp_path)


def _pair(sh: Shell) -> tuple[str, str]:
    """An office (kec) and its district (kab), each with the other in its address book."""
    kec = sh.init("kec", "--label", "kec-wungu")
    kab = sh.init("kab", "--label", "kab-madiun")
    sh.run("--site", "kec", "peers", "add", "kab-madiun", kab)
    sh.run("--site", "kab", "peers", "add", "kec-wungu", kec)
    return kec, kab


def _deliver(sh: Shell, src: str, dst: str, box: str, *extra: str) -> None:
    sh.run("--site", src, "pack", *extra, box)
    sh.run("--site", dst, "apply", box)


@pytest.mark.slow
def test_a_backup_taken_while_the_site_is_served_is_the_store_at_that_moment(sh: Shell) -> None:
    _, kab = _pair(sh)
    for i in range(3):
        sh.run("--site", "kec", "put", "residents", NIK.format(i), f"name=R{i}")
    with serving(sh, "kab") as (url, _pid):
        sh.run("--site", "kec", "sync", url, "--server-key", "kab-madiun")
        before = sh.json("--site", "kab", "status")["state_digest"]  # read-only beside serve
        made = sh.json("--site", "kab", "backup", "nightly")
        sh.run("--site", "kec", "put", "residents", NIK.format(9), "name=later")
        sh.run("--site", "kec", "sync", url, "--server-key", kab)
    assert made["path"] == "nightly" and made["state_digest"] == before
    assert made["site"] == "kab-madiun" and made["public_key"] == kab and made["key_file"]
    assert sorted(os.listdir(sh.cwd / "nightly")) == [
        "backup.json",
        "identity.key",
        "replica.sqlite",
        "site.json",
    ]
    assert oct(os.stat(sh.cwd / "nightly" / "identity.key").st_mode & 0o777) == "0o600"
    assert json.loads((sh.cwd / "nightly" / "backup.json").read_text())["taken"].endswith("Z")
    # A second backup into the same folder of backups gets a directory of its own.
    (sh.cwd / "all").mkdir()
    inside = sh.json("--site", "kab", "backup", "all", "--no-key")
    assert Path(inside["path"]).parent == Path("all") and not inside["key_file"]
    refused = sh.run("--site", "kab", "backup", "nightly", code=2)
    assert "already" in refused.stderr and "never overwrites" in refused.stderr

    # Restored into a new directory, the backup is the district as it was then.
    sh.run("--site", "kab-copy", "restore", "nightly")
    assert sh.json("--site", "kab-copy", "status")["state_digest"] == before


@pytest.mark.slow
def test_a_restored_site_waits_for_its_peer_then_takes_its_own_changes_back(
    sh: Shell,
) -> None:
    kec, kab = _pair(sh)
    sh.run("--site", "kec", "put", "residents", NIK.format(1), "name=Dewi")
    _deliver(sh, "kec", "kab", "out1")
    _deliver(sh, "kab", "kec", "back1", "--for", "kec-wungu")
    sh.run("--site", "kec", "put", "residents", NIK.format(2), "name=Eko")  # unsealed
    sh.run("--site", "kec", "backup", "last-night")
    sh.run("--site", "kec", "put", "residents", NIK.format(3), "name=Fajar")
    _deliver(sh, "kec", "kab", "out2")  # the district holds seqs 1-3

    # The disk dies; the site directory comes back from last night's backup.
    for name in os.listdir(sh.cwd / "kec"):
        (sh.cwd / "kec" / name).unlink()
    done = sh.json("--site", "kec", "restore", "last-night")
    assert done["seq"] == 2 and done["waiting_for"] == [kab] and done["replaced"] is None
    restored = SQLiteStore(str(sh.cwd / "kec" / "replica.sqlite"), read_only=True)
    try:  # what it told its peers before is not believed: it says everything again
        assert restored.get_meta(RESTORED_META)
    finally:
        restored.close()
    status = sh.json("--site", "kec", "status")
    assert status["restore"]["waiting"] and status["restore"]["waiting_for"][0]["label"] == (
        "kab-madiun"
    )
    refused = sh.run("--site", "kec", "put", "residents", NIK.format(4), "name=Sri", code=2)
    assert "restored" in refused.stderr and "kab-madiun" in refused.stderr
    assert "next:" in refused.stderr and "offsync restore --resume" in refused.stderr
    sealing = sh.run("--site", "kec", "pack", "early", code=2)  # seq 2 is not sealed yet
    assert "could fork" in sealing.stderr and not (sh.cwd / "early").exists()

    # The district answers: the wait ends, and the district's claim blocks writing.
    _deliver(sh, "kab", "kec", "mail", "--for", "kec-wungu")
    claim = sh.run("--site", "kec", "put", "residents", NIK.format(4), "name=Sri", code=2)
    assert "up to seq 3" in claim.stderr and "answered since the restore" in claim.stderr
    [blocking] = sh.json("--site", "kec", "status")["seq_claims"]
    assert blocking["label"] == "kab-madiun" and blocking["blocks_writing"]
    # This site's receipt tells the district what it lacks; its answer brings it back.
    _deliver(sh, "kec", "kab", "reply")
    _deliver(sh, "kab", "kec", "mail2", "--for", "kec-wungu")
    assert sh.json("--site", "kec", "get", "residents", NIK.format(3)) == {"name": "Fajar"}
    sh.run("--site", "kec", "put", "residents", NIK.format(4), "name=Sri")
    _deliver(sh, "kec", "kab", "out3", "--for", "kab-madiun")

    site, district = sh.json("--site", "kec", "status"), sh.json("--site", "kab", "status")
    assert site["seq"] == 4 and site["restore"] is None and site["seq_claims"] == []
    assert district["quarantined"] == [] and site["quarantined"] == []
    assert site["state_digest"] == district["state_digest"]
    [office] = district["peers"]
    assert (office["peer"], office["label"], office["holds"]) == (kec, "kec-wungu", 4)


@pytest.mark.slow
def test_a_restored_site_gets_its_changes_back_in_one_sync_over_http(sh: Shell) -> None:
    _pair(sh)
    sh.run("--site", "kec", "put", "residents", NIK.format(1), "name=Dewi")
    sh.run("--site", "kec", "backup", "bk")  # seq 1, not sealed
    sh.run("--site", "kec", "put", "residents", NIK.format(2), "name=Eko")
    with serving(sh, "kab") as (url, _pid):
        sh.run("--site", "kec", "sync", url, "--server-key", "kab-madiun")
        sh.run("--site", "kec", "restore", "bk")
        refused = sh.run("--site", "kec", "put", "residents", NIK.format(3), "name=X", code=2)
        assert "no peer has answered" in refused.stderr
        round_ = sh.json("--site", "kec", "sync", url, "--server-key", "kab-madiun")
        sh.run("--site", "kec", "put", "residents", NIK.format(3), "name=Sri")
        sh.run("--site", "kec", "sync", url, "--server-key", "kab-madiun")
    # Seqs 1-2 came back as the one segment the district holds (1 was unsealed here).
    assert sum(r["applied"] for r in round_["rounds"]) == 2
    assert round_["status"]["seq"] == 2 and round_["status"]["restore"] is None
    site, district = sh.json("--site", "kec", "status"), sh.json("--site", "kab", "status")
    assert site["seq"] == 3 and district["quarantined"] == [] and site["quarantined"] == []
    assert site["state_digest"] == district["state_digest"]


@pytest.mark.slow
def test_restore_refuses_what_it_cannot_restore_safely_and_changes_nothing(sh: Shell) -> None:
    kec, _ = _pair(sh)
    sh.run("--site", "kec", "put", "residents", NIK.format(1), "name=Dewi")
    sh.run("--site", "kec", "backup", "good")
    sh.run("--site", "kec", "put", "residents", NIK.format(2), "name=Eko")
    digest = sh.json("--site", "kec", "status")["state_digest"]

    # A damaged copy: found out before anything is touched.
    sh.run("--site", "kec", "backup", "damaged")
    store = sh.cwd / "damaged" / "replica.sqlite"
    data = bytearray(store.read_bytes())
    data[len(data) // 2 :] = b"\x00" * (len(data) - len(data) // 2)
    store.write_bytes(bytes(data))
    broken = sh.run("--site", "kec", "restore", "damaged", code=1)
    assert "error:" in broken.stderr and "next:" in broken.stderr
    # Another site's backup over this one; a site in use; nothing to restore from.
    sh.run("--site", "kab", "backup", "district")
    other = sh.run("--site", "kec", "restore", "district", code=2)
    assert "kab-madiun" in other.stderr and "kec-wungu" in other.stderr
    with serving(sh, "kec"):
        busy = sh.run("--site", "kec", "restore", "good", code=2)
        assert "open in another process" in busy.stderr
    sh.run("--site", "kec", "restore", code=2)
    sh.run("--site", "kec", "restore", "good", "--resume", code=2)
    assert sh.json("--site", "kec", "status")["state_digest"] == digest
    assert not (sh.cwd / "kec" / "restore.json").exists()

    # A missing store is not silently replaced by an empty one ...
    for name in ("replica.sqlite", "replica.sqlite-wal", "replica.sqlite-shm"):
        (sh.cwd / "kec" / name).unlink(missing_ok=True)
    missing = sh.run("--site", "kec", "put", "residents", NIK.format(3), "name=X", code=1)
    assert "is missing" in missing.stderr and "offsync restore" in missing.stderr
    # ... but started on purpose, and then it waits for any peer like a restore.
    empty = sh.json("--site", "kec", "restore", "--from-peers")
    assert empty["seq"] == 0 and empty["backup"] is None and empty["waiting_for"] == []
    sh.run("--site", "kec", "put", "residents", NIK.format(3), "name=X", code=2)
    ended = sh.run("--site", "kec", "restore", "--resume")
    assert "over" in ended.stdout and "fork" in ended.stderr
    assert sh.json("--site", "kec", "status")["restore"] is None
    assert sh.json("--site", "kec", "id")["public_key"] == kec


ADD_STEP_8 = """
import sys
from offsync.stores import sqlite

def notes(db, path):
    db.execute("CREATE TABLE clerk_notes (key TEXT, note TEXT)")

sqlite.MIGRATIONS = (*sqlite.MIGRATIONS, sqlite.Migration(8, "clerk_notes", notes))
from offsync.cli import main
main(sys.argv[1:])
"""


def test_an_upgrade_of_the_store_by_the_command_keeps_a_copy_of_it_as_it_was(
    tmp_path: Path,
) -> None:
    sh = Shell(tmp_path)
    sh.init("kec")
    sh.run("--site", "kec", "put", "residents", NIK.format(1), "name=Dewi")
    digest = sh.json("--site", "kec", "status")["state_digest"]
    (tmp_path / "later_offsync.py").write_text(ADD_STEP_8)
    later = subprocess.run(
        [sys.executable, "later_offsync.py", "--site", "kec", "put", "residents", "x", "n=1"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert later.returncode == 0, later.stderr
    assert "upgrading the store from schema 7 to 8" in later.stderr
    [copy] = (tmp_path / "kec" / "backups").iterdir()
    assert copy.name.startswith("replica.sqlite.schema-7.")
    db = sqlite3.connect(copy)
    assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == (b"7",)
    db.close()
    db = sqlite3.connect(tmp_path / "kec" / "replica.sqlite")
    assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == (b"8",)
    db.close()
    # This (older) offsync refuses the upgraded store, and the copy restores it.
    newer = sh.run("--site", "kec", "status", code=1)
    assert "newer offsync" in newer.stderr and "next:" in newer.stderr
    (tmp_path / "kec" / "replica.sqlite").rename(tmp_path / "upgraded.sqlite")
    for name in ("replica.sqlite-wal", "replica.sqlite-shm"):
        (tmp_path / "kec" / name).unlink(missing_ok=True)
    (tmp_path / "kec" / "replica.sqlite").write_bytes(copy.read_bytes())
    assert sh.json("--site", "kec", "status")["state_digest"] == digest


@pytest.mark.slow
def test_a_site_restored_from_before_it_sealed_waits_for_what_it_sealed_since(
    sh: Shell,
) -> None:
    """The backup holds seqs 1-2 unsealed; after it, the site sealed them and the
    district took them. Restored, the site is at seq 2 like the district's claim, but
    has sealed nothing: it must get 1-2 back as the district holds them before it
    writes, or its later changes would wait unsealed for ever."""
    _pair(sh)
    for i in (1, 2):
        sh.run("--site", "kec", "put", "residents", NIK.format(i), f"name=R{i}")
    sh.run("--site", "kec", "backup", "last-night")
    _deliver(sh, "kec", "kab", "out1")  # seals 1-2: the district holds them

    for name in os.listdir(sh.cwd / "kec"):
        (sh.cwd / "kec" / name).unlink()
    assert sh.json("--site", "kec", "restore", "last-night")["seq"] == 2
    _deliver(sh, "kab", "kec", "mail", "--for", "kec-wungu")  # the district answers
    refused = sh.run("--site", "kec", "put", "residents", NIK.format(4), "name=Sri", code=2)
    assert "up to seq 2" in refused.stderr and "not sealed" in refused.stderr
    status = sh.json("--site", "kec", "status")
    assert (status["seq"], status["sealed"]) == (2, 0)
    [blocking] = status["seq_claims"]
    assert blocking["label"] == "kab-madiun" and blocking["blocks_writing"]
    # This site's receipt tells the district what it lacks; its answer brings it back.
    _deliver(sh, "kec", "kab", "reply")
    _deliver(sh, "kab", "kec", "mail2", "--for", "kec-wungu")
    sh.run("--site", "kec", "put", "residents", NIK.format(4), "name=Sri")
    _deliver(sh, "kec", "kab", "out2", "--for", "kab-madiun")

    site, district = sh.json("--site", "kec", "status"), sh.json("--site", "kab", "status")
    assert (site["seq"], site["sealed"], site["seq_claims"]) == (3, 3, [])
    assert district["quarantined"] == [] and site["quarantined"] == []
    assert site["state_digest"] == district["state_digest"]
    assert sh.json("--site", "kab", "get", "residents", NIK.format(4)) == {"name": "Sri"}
