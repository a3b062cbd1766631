"""In-place upgrades of SQLite stores: ordered steps, one transaction each.

Schema 4 (blobs), 5 (the index of blob references), 6 (segments and the outbox keyed
by stream) and 7 (that outbox keyed by partition id; both in
tests/conformance/test_store_streams.py) are the real steps past schema 3;
these tests also add steps of their own (as the next release will add
``Migration(8, ...)`` to
``offsync.stores.sqlite.MIGRATIONS``) and check that a store of the older schema is upgraded in place with its data, that a
failing step keeps the steps before it and nothing of itself, that a store newer than
the code is refused unchanged, and that the step to a new wire format refuses a store
that holds changes with a message that says what to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.errors import FormatTwoStoreError, StorageError
from offsync.stores import sqlite as store_module
from offsync.stores.sqlite import (
    BASELINE_SCHEMA,
    MIGRATIONS,
    SCHEMA_VERSION,
    Migration,
    SQLiteStore,
    format_barrier,
    pending_migrations,
    schema_version,
)

SITE = Identity(bytes([7]) * 32, "kec-wungu")


def _notes_table(db: sqlite3.Connection, path: str) -> None:
    """A step as a later release would write one: a new table and an index."""
    db.execute("CREATE TABLE clerk_notes (collection TEXT, key TEXT, note TEXT NOT NULL)")
    db.execute("CREATE INDEX changes_by_origin ON changes (origin, seq)")


STEP_8 = Migration(8, "clerk_notes", _notes_table)


def _stored(path: Path) -> tuple[int, set[str]]:
    db = sqlite3.connect(path)
    try:
        (version,) = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    return int(version), names


def _site(path: Path, n: int = 5) -> bytes:
    with Replica.open(str(path), identity=SITE) as rep:
        for i in range(n):
            rep.put("residents", f"35190101019000{i:02d}", {"name": f"R{i}"})
        rep.pack()  # seals: segments, not only the outbox
        return rep.state_digest()


def test_this_release_is_at_schema_6_and_every_version_has_a_step() -> None:
    assert BASELINE_SCHEMA == 3
    assert SCHEMA_VERSION == schema_version() == 7
    assert [m.version for m in MIGRATIONS] == list(range(2, SCHEMA_VERSION + 1))


def test_a_later_step_upgrades_a_store_in_place_keeping_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.sqlite"
    digest = _site(path)
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, STEP_8))
    assert schema_version() == 8
    assert pending_migrations(path) == [STEP_8]
    assert _stored(path)[0] == 7  # looking changed nothing

    rep = Replica.open(str(path), identity=SITE)
    assert isinstance(rep.store, SQLiteStore) and rep.store.migrated == [8]
    assert rep.state_digest() == digest and rep.seq == 5
    rep.put("residents", "3519010101900099", {"name": "after the upgrade"})
    rep.close()
    version, names = _stored(path)
    assert version == 8 and {"clerk_notes", "changes_by_origin"} <= names
    assert pending_migrations(path) == []
    with Replica.open(str(path), identity=SITE) as again:
        assert isinstance(again.store, SQLiteStore) and again.store.migrated == []
        assert again.seq == 6

    # A new store runs the same steps: new and upgraded stores are alike.
    fresh = tmp_path / "fresh.sqlite"
    SQLiteStore(str(fresh)).close()
    assert _stored(fresh) == (8, _stored(path)[1])


def test_a_store_newer_than_this_offsync_is_refused_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.sqlite"
    _site(path)
    with monkeypatch.context() as later_release:
        later_release.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, STEP_8))
        Replica.open(str(path), identity=SITE).close()
    assert schema_version() == 7  # the older offsync again
    with pytest.raises(StorageError, match="newer offsync") as info:
        Replica.open(str(path), identity=SITE)
    assert "schema 8" in str(info.value) and "backup" in str(info.value)
    with pytest.raises(StorageError, match="schema"):
        Replica.open(str(path), identity=SITE, read_only=True)
    assert _stored(path)[0] == 8


def test_a_failing_step_keeps_the_steps_before_it_and_nothing_of_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.sqlite"
    digest = _site(path)

    def half_done(db: sqlite3.Connection, path: str) -> None:
        db.execute("CREATE TABLE half (x)")
        raise StorageError(f"{path}: step 9 cannot run here")

    monkeypatch.setattr(
        store_module, "MIGRATIONS", (*MIGRATIONS, STEP_8, Migration(9, "x", half_done))
    )
    with pytest.raises(StorageError, match="step 9 cannot run"):
        Replica.open(str(path), identity=SITE)
    version, names = _stored(path)
    assert version == 8 and "clerk_notes" in names and "half" not in names

    def fixed(db: sqlite3.Connection, path: str) -> None:
        db.execute("CREATE TABLE half (x)")

    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, STEP_8, Migration(9, "x", fixed)))
    with Replica.open(str(path), identity=SITE) as rep:  # the lock was released, too
        assert isinstance(rep.store, SQLiteStore) and rep.store.migrated == [9]
        assert rep.state_digest() == digest
    assert _stored(path)[0] == 9


def test_a_new_wire_format_refuses_a_store_with_changes_and_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, empty = tmp_path / "full.sqlite", tmp_path / "empty.sqlite"
    digest = _site(full)
    SQLiteStore(str(empty)).close()
    barrier = format_barrier(8, "format_3", old=2, new=3)
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, barrier))
    with pytest.raises(StorageError, match="wire format 2") as info:
        Replica.open(str(full), identity=SITE)
    message = str(info.value)
    assert "cannot convert in place" in message and "nothing was changed" in message
    assert "offsync restore --from-peers" in message and "docs/operations.md" in message
    assert _stored(full)[0] == 7
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS)
    with Replica.open(str(full), identity=SITE) as rep:  # still whole for the old offsync
        assert rep.state_digest() == digest

    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, barrier))
    SQLiteStore(str(empty)).close()  # nothing in it to convert: it moves on
    assert _stored(empty)[0] == 8


def test_an_older_store_opened_read_only_says_how_to_upgrade_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.sqlite"
    _site(path)
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, STEP_8))
    with pytest.raises(StorageError, match="open it for writing once to upgrade it"):
        Replica.open(str(path), identity=SITE, read_only=True)
    assert _stored(path)[0] == 7


def test_a_schema_3_store_is_upgraded_and_refused_as_format_2(tmp_path: Path) -> None:
    """Schema 3 is wire format 2's: the steps to 7 run (the blob tables, segments keyed
    by stream, format 2's under the WHOLE partition), and then the replica refuses the
    format-2 data with the way out. (Format 2 opened such a store; format 3 cannot use
    its segments: only their origins could sign them again.)"""
    path = tmp_path / "site.sqlite"
    _site(path)
    db = sqlite3.connect(path)
    db.execute("DROP TABLE blob_refs")
    db.execute("DROP TABLE blob_chunks")
    db.execute("DROP TABLE blobs")
    db.execute("DROP TABLE part_outbox")  # (its segments table stays keyed by stream)
    db.execute("DROP TABLE partitions")
    db.execute("UPDATE meta SET value = CAST('3' AS BLOB) WHERE name = 'schema_version'")
    db.commit()
    db.close()
    assert [m.version for m in pending_migrations(path)] == [4, 5, 6, 7]
    with pytest.raises(FormatTwoStoreError, match="wire format 2") as refused:
        Replica.open(str(path), identity=SITE)
    assert "export its records with the previous release" in str(refused.value)
    version, names = _stored(path)
    assert version == 7 and {"blobs", "blob_chunks", "blob_refs"} <= names
    db = sqlite3.connect(path)
    held = db.execute("SELECT DISTINCT collection, prefix FROM segments").fetchall()
    db.close()
    assert held == [("", "")]  # format 2's segments, kept as they were: nothing is lost


def test_a_schema_4_store_is_upgraded_to_6_and_its_blob_references_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "site.sqlite"
    with Replica.open(str(path), identity=SITE) as rep:
        held = rep.put_blob(b"a photo", "image/jpeg")
        gone = BlobRef(b"\x01" * 32, 9, "image/jpeg")  # referenced, never held
        rep.put("residents", "a", {"photo": held.field(), "name": "A"})
        rep.put("residents", "b", {"scans": [gone.field(), held.field()]})
        rep.put("residents", "c", {"name": "no blobs"})
        rep.delete("residents", "c")
        expected = rep.store.blob_refs()
        digest = rep.state_digest()
    records = [(c, k) for c, k, _ in expected]
    assert records == [("residents", "a"), ("residents", "b"), ("residents", "b")]
    db = sqlite3.connect(path)
    db.execute("DROP TABLE blob_refs")
    db.execute("DROP TABLE part_outbox")
    db.execute("DROP TABLE partitions")
    db.execute("UPDATE meta SET value = CAST('4' AS BLOB) WHERE name = 'schema_version'")
    db.commit()
    db.close()
    assert [m.version for m in pending_migrations(path)] == [5, 6, 7]
    with Replica.open(str(path), identity=SITE) as rep:
        assert isinstance(rep.store, SQLiteStore) and rep.store.migrated == [5, 6, 7]
        assert rep.state_digest() == digest
        assert rep.store.blob_refs() == expected
        assert rep.store.missing_blob_refs() == [("residents", "b", gone)]
        assert rep.missing_blobs().by_record == {("residents", "b"): (gone,)}
