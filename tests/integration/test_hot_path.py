"""The apply hot path: records written by one bulk insert, sole changes kept in their row.

SQLite keeps a record's only (parentless) change in the record's row instead of in the
``changes`` table, and moves it there before the row is replaced or the change taken
back. These tests hold that against the in-memory store, which stores plainly.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

import offsync.plan.seal as seal_plan
import offsync.replica.applying as applying
from offsync import Identity, Knowledge, Replica, policies
from offsync.bundle import build_bundle
from offsync.change import PUT, Change, ChangeId
from offsync.encoding import canonical_fields, packb
from offsync.errors import SignatureError, StorageError
from offsync.scope import Partition, Stream
from offsync.segment import Segment
from offsync.stores.base import RecordRow, first_record
from offsync.stores.memory import MemoryStore
from offsync.stores.sqlite import SCHEMA_VERSION, SQLiteStore

POLICIES = {"residents": policies.LastWriterWins(), "doses": policies.FirstWriterWins()}
O1 = bytes(range(32))


def _change(seq: int, key: str, value: int) -> Change:
    return Change(O1, seq, 1000 + seq, "residents", key, PUT, canonical_fields({"v": value}))


def _row(c: Change) -> RecordRow:
    """The record a change makes alone, built plainly (not with the store's shortcut)."""
    return RecordRow(c.collection, c.key, c.fields, packb([[c.origin, c.seq]]), False)


def test_sole_change_is_read_moved_and_taken_back(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "s.sqlite"))
    a, b = _change(1, "a", 1), _change(2, "b", 2)
    with s.transaction():
        assert s.add_first_changes([a, b]) == []
    assert s.changes_for("residents", "a") == [a]
    assert s.get_record("residents", "a") == _row(a) == first_record(a)
    assert list(s.iter_records()) == [_row(a), _row(b)]
    # Replacing the row keeps the change (it moves to the changes table).
    with s.transaction():
        s.put_records([_row(a)._replace(fields=canonical_fields({"v": 9}))])
    assert s.changes_for("residents", "a") == [a]
    # Taking a sole change back removes it; the replica then rewrites the record.
    with s.transaction():
        s.remove_changes([b])
    assert s.changes_for("residents", "b") == []
    # A sole change also added the ordinary way is still reported once.
    with s.transaction():
        s.add_changes([a])
    assert s.changes_for("residents", "a") == [a]


def test_add_first_changes_reports_records_that_exist() -> None:
    s = SQLiteStore(":memory:")
    held, again, new = _change(1, "a", 1), _change(2, "a", 2), _change(3, "c", 3)
    with s.transaction():
        s.add_first_changes([held])
        got = s.add_first_changes([again, new])
        assert s.add_first_changes([held]) == []  # exactly what is there
    assert got == [("residents", "a")]
    assert s.get_record("residents", "a") == _row(held)  # untouched
    assert sorted(c.seq for c in s.changes_for("residents", "a")) == [1, 2]
    assert s.changes_for("residents", "c") == [new]


def test_first_changes_of_several_origins_match_a_plain_store() -> None:
    other = bytes(range(1, 33))
    a, c = _change(1, "a", 1), _change(2, "c", 3)
    b = _change(1, "b", 2)._replace(origin=other)
    clash = _change(2, "a", 4)._replace(origin=other)  # a record ``a`` already made
    for s in (SQLiteStore(":memory:"), MemoryStore()):
        with s.transaction():
            assert s.add_first_changes([a, b, c]) == []
            assert s.add_first_changes([clash]) == [("residents", "a")]
        assert list(s.iter_records()) == [_row(a), _row(b), _row(c)]
        assert sorted(s.changes_for("residents", "a")) == sorted([a, clash])
        assert s.changes_for("residents", "b") == [b]


def test_a_failed_transaction_leaves_no_sole_change() -> None:
    s = SQLiteStore(":memory:")
    a = _change(1, "a", 1)
    try:
        with s.transaction():
            s.add_first_changes([a])
            raise RuntimeError("abort")
    except RuntimeError:
        pass
    assert s.changes_for("residents", "a") == [] and s.get_record("residents", "a") is None


def _old_store_file(path: Path, version: int) -> None:
    """A store file as an offsync of that schema left it (format-1 segments in it)."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE records (collection TEXT NOT NULL, key TEXT NOT NULL, fields BLOB,"
        " heads BLOB NOT NULL, conflict INTEGER NOT NULL, PRIMARY KEY (collection, key))"
        " WITHOUT ROWID;"
    )
    db.execute("INSERT INTO meta VALUES ('schema_version', CAST(? AS BLOB))", (str(version),))
    db.execute("INSERT INTO records VALUES ('residents', 'a', NULL, X'90', 0)")
    db.commit()
    db.close()


@pytest.mark.parametrize("version", [1, 2])
def test_format_1_store_files_are_refused(tmp_path: Path, version: int) -> None:
    assert (
        SCHEMA_VERSION == 7
    )  # 3: format 2; 4: blobs; 5: blob reference index; 6: streams; 7: outbox by partition id
    path = tmp_path / "old.sqlite"
    _old_store_file(path, version)
    with pytest.raises(StorageError, match="format 1") as info:
        SQLiteStore(str(path))
    assert f"schema {version}" in str(info.value)
    with pytest.raises(StorageError, match="format 1"):
        Replica.open(str(path), identity=Identity(bytes([3]) * 32))
    # Refused, not altered: the file is as the old offsync left it.
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchall() == [(str(version).encode(),)]
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'origins'").fetchall() == []
    assert db.execute("SELECT * FROM records").fetchall() == [("residents", "a", None, b"\x90", 0)]
    db.close()


def test_store_files_of_this_schema_open_and_of_a_later_one_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    s = SQLiteStore(str(path))
    assert s.get_meta("schema_version") == str(SCHEMA_VERSION).encode()
    a = _change(1, "b", 1)
    with s.transaction():
        s.add_first_changes([a])
    s.close()
    s = SQLiteStore(str(path))  # reopened as is
    assert s.changes_for("residents", "b") == [a]
    s.close()
    later = tmp_path / "later.sqlite"
    _old_store_file(later, SCHEMA_VERSION + 1)
    with pytest.raises(StorageError, match=f"schema {SCHEMA_VERSION + 1}") as info:
        SQLiteStore(str(later))
    assert "format 1" not in str(info.value)


def _replicas(tmp_path: Path, ident: Identity) -> tuple[Replica, Replica]:
    on_disk = Replica.open(str(tmp_path / "b.sqlite"), identity=ident, policies=POLICIES)
    plain = Replica(MemoryStore(), ident, POLICIES)
    return on_disk, plain


def test_backlog_then_edits_and_concurrent_creation_match_a_plain_store(tmp_path: Path) -> None:
    a, c = (Replica.open(":memory:", identity=Identity.generate(), policies=POLICIES) for _ in "ac")
    b, reference = _replicas(tmp_path, Identity.generate())
    with a.batch():
        for i in range(300):
            a.put("residents", f"35190101019{i:05d}", {"name": f"n{i}", "n": i})
            a.put("doses", f"35190101019{i:05d}/1", {"vaccine": "CoronaVac"})
    c.put("doses", "3519010101900007/1", {"vaccine": "Pfizer"})  # concurrent first write
    c.put("residents", "3519010101900008", {"phone": "0812"})
    first = a.pack()
    for rep in (b, reference):
        for bundle in first:
            rep.apply(bundle)
    # Edits that descend from the backlog, a delete, and the concurrent writes.
    a.put("residents", "3519010101900003", {"name": "changed"})
    a.delete("residents", "3519010101900004")
    later = a.pack(b.knowledge()) + c.pack()
    reports = [[rep.apply(bundle).conflicts for bundle in later] for rep in (b, reference)]
    assert reports[0] == reports[1]
    assert b.state_digest() == reference.state_digest()
    assert [(x.collection, x.key) for x in b.conflicts()] == [("doses", "3519010101900007/1")]
    assert b.get("residents", "3519010101900008") == {"name": "n8", "n": 8, "phone": "0812"}
    assert b.get("residents", "3519010101900004") is None
    for key in ("3519010101900003", "3519010101900004", "3519010101900005"):
        held = {x.id for x in b.store.changes_for("residents", key)}
        assert held == {x.id for x in reference.store.changes_for("residents", key)}
        assert ChangeId(a.id, 1) in held or key != "3519010101900000"
    # Resolving the conflict writes through the moved changes as well.
    b.resolve("doses", "3519010101900007/1", {"vaccine": "CoronaVac", "checked": True})
    assert b.conflicts() == []


def test_chunked_apply_matches_and_rolls_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seal_plan, "SEGMENT_MAX_CHANGES", 4)
    a = Replica.open(":memory:", identity=Identity.generate(), policies=POLICIES)
    with a.batch():
        for i in range(30):
            a.put("residents", f"k{i % 12}", {"n": i})  # later writes descend from earlier
            a.put("doses", f"k{i}/1", {"v": i})
    bundles = a.pack()
    assert len(bundles) == 1 and len(a.quarantined()) == 0
    reference = Replica(MemoryStore(), Identity.generate(), POLICIES)
    want = reference.apply(bundles[0])
    monkeypatch.setattr(applying, "APPLY_CHUNK", 3)  # a flush every segment or so
    b = Replica.open(str(tmp_path / "b.sqlite"), identity=Identity.generate(), policies=POLICIES)
    # A bundle whose last segment is forged: the segments flushed before it are undone.
    own = Stream(a.id, Partition("residents"))  # the stream with several segments
    good = [s.first for s in a._state.segments[own]]
    data = a.store.segment_data([(own, f) for f in good])
    last = Segment.decode(data[-1])
    forged = dataclasses.replace(last, signature=bytes(64)).encode()
    ranges = Knowledge({own: [(good[0], last.last_seq)]})
    bad = build_bundle(
        a.identity,
        [*data[:-1], forged],
        ranges=ranges,
        receipts=[a.receipt()],
        created=a.clock.now(),
    )
    before = b.state_digest()
    with pytest.raises(SignatureError):
        b.apply(bad)
    assert b.state_digest() == before and b.knowledge() == Knowledge()
    got = b.apply(bundles[0])
    assert (got.applied, got.conflicts) == (want.applied, want.conflicts)
    assert b.state_digest() == reference.state_digest() == a.state_digest()
    assert b.knowledge() == a.knowledge()


def test_sole_head_matches_msgpack_for_every_width() -> None:
    from offsync.stores.base import pack_ids, sole_head

    origin = bytes(range(32))
    for seq in (1, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 63) - 1):
        assert sole_head(origin, seq) == pack_ids([ChangeId(origin, seq)]), seq
        assert sole_head(origin, seq) == packb([[origin, seq]]), seq
        c = _change(1, "k", 1)._replace(seq=seq)
        assert first_record(c) == _row(c), seq
