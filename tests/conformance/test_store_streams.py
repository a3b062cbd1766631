"""SQLite schema 6 keys segments by stream and keeps an outbox per own stream (format
3's step 2): a store written by the previous offsync (schema 5: segments by (origin,
first_seq)) is upgraded in place, its rows becoming the WHOLE partition (whose outbox
is the table it was), and holds the same. Schema 7 then keys the outbox of format-3
partitions by (partition id, seq), moving schema 6's rows in place.

The schema-5 file is built here as that offsync built it (``SCHEMA`` and the steps up to
5), and filled with the rows of a real site, so that the upgrade meets real segments,
an outbox and meta values. The PostgreSQL migration is tested in
tests/postgres/test_postgres.py; the Store contract for streams in ``check_store``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.errors import FormatTwoStoreError
from offsync.scope import WHOLE, Partition, Stream, whole
from offsync.stores import sqlite as store_module
from offsync.stores.base import SegmentRow
from offsync.stores.sqlite import MIGRATIONS, SQLiteStore, migrate, pending_migrations
from offsync.transports import LoopbackTransport

SITE = Identity(bytes([9]) * 32, "kec-streams")
PEER = Identity(bytes([10]) * 32, "district")


def _site(path: Path) -> None:
    """A site with sealed segments (its own and a peer's) and unsealed changes."""
    with (
        Replica.open(str(path), identity=SITE) as rep,
        Replica.open(":memory:", identity=PEER) as peer,
    ):
        for i in range(40):
            peer.put("people", f"p{i}", {"n": i})
        sync(rep, LoopbackTransport(peer))
        for i in range(30):
            rep.put("residents", f"r{i:03d}", {"name": f"R{i}"})
        rep.pack()  # seals
        for i in range(5):
            rep.put("residents", f"late{i}", {"name": "unsealed"})


def _schema_5_store(dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dest``: a schema-5 store (as the previous offsync created it) of SITE holding
    one sealed format-2 segment and one unsealed format-2 change."""
    with monkeypatch.context() as previous:
        previous.setattr(store_module, "MIGRATIONS", MIGRATIONS[:-2])
        db = sqlite3.connect(dest, isolation_level=None)
        assert migrate(db, str(dest)) == [4, 5]
    columns = {
        n: [c for (_, c, *_) in db.execute(f"PRAGMA table_info({n})")]
        for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert columns["segments"][:2] == ["origin", "first_seq"] and "prefix" not in columns["outbox"]
    value = {
        "origin": SITE.public_key,
        "first_seq": 1,
        "last_seq": 1,
        "hash": b"h" * 32,
        "prev_hash": bytes(32),
        "data": b"a format-2 segment",
        "status": "applied",
        "seq": 2,
    }
    db.execute("BEGIN")
    for table in ("segments", "outbox"):
        names = columns[table]
        marks = ", ".join("?" for _ in names)
        db.execute(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", [value[n] for n in names]
        )
    db.execute("INSERT INTO meta (name, value) VALUES ('identity', ?)", (SITE.public_key,))
    db.execute("COMMIT")
    db.close()


def test_a_schema_5_store_of_format_2_is_upgraded_and_then_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old.sqlite"
    _schema_5_store(old, monkeypatch)
    assert [m.version for m in pending_migrations(old)] == [6, 7]
    with pytest.raises(FormatTwoStoreError, match="previous release"):
        Replica.open(str(old), identity=SITE)
    store = SQLiteStore(str(old), read_only=True)
    try:  # held as it was: the rows became format 2's WHOLE stream, and nothing else
        assert [row[0] for row in store.segment_index()] == [whole(SITE.public_key)]
        assert store.outbox(WHOLE) == [(2, b"a format-2 segment")]
        assert store.outbox_partitions() == [WHOLE]
    finally:
        store.close()


def test_the_upgraded_schema_keeps_streams_of_one_origin_apart(tmp_path: Path) -> None:
    """Rows of one origin's partitions stay apart, through a reopen."""
    path = tmp_path / "s.sqlite"
    _site(path)
    part = Partition("residents", "r0")
    stream = Stream(SITE.public_key, part)
    store = SQLiteStore(str(path))
    before = store.segment_index()
    residents = Partition("residents")
    mine = [row for row in before if row[0] == Stream(SITE.public_key, residents)]
    with store.transaction():
        store.add_segments([SegmentRow(stream, 1, 2, b"h" * 32, b"\0" * 32, b"data", "applied")])
        store.add_outbox(part, [(1, b"a"), (2, b"b")])
        store.clear_outbox(part, 1)
    store.close()
    store = SQLiteStore(str(path))
    after = store.segment_index()
    assert [row for row in after if row[0] == stream] == [
        (stream, 1, 2, b"h" * 32, b"\0" * 32, "applied", 4)
    ]
    assert [row for row in after if row[0] != stream] == before
    assert store.segment_data([(stream, 1), (mine[0][0], 1)])[0] == b"data"
    assert store.outbox(part) == [(2, b"b")] and len(store.outbox(residents)) == 5
    with store.transaction():
        store.clear_outbox(residents, 99)  # all of residents', none of the other partition's
    assert store.outbox(part) == [(2, b"b")] and store.outbox(residents) == []
    store.close()


def _schema_6_store(dest: Path) -> None:
    """``dest``: a schema-6 store holding a real site's data, the outbox of format-3
    partitions keyed by (collection, prefix, seq) as schema 6 keeps it (the site is
    written by this offsync and its outbox moved back to that table), with the rows of
    two partitions."""
    _site(dest)
    db = sqlite3.connect(dest, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "CREATE TABLE partition_outbox (collection TEXT NOT NULL, prefix TEXT NOT NULL,"
        " seq INTEGER NOT NULL, data BLOB NOT NULL,"
        " PRIMARY KEY (collection, prefix, seq)) WITHOUT ROWID"
    )
    db.execute(
        "INSERT INTO partition_outbox SELECT collection, prefix, seq, data"
        " FROM part_outbox JOIN partitions ON part = id"
    )
    db.execute(
        "INSERT INTO partition_outbox (collection, prefix, seq, data)"
        " VALUES ('residents', 'r0', 1, x'61'), ('residents', 'r0', 2, x'62')"
    )
    db.execute("DROP TABLE part_outbox")
    db.execute("DROP TABLE partitions")
    db.execute("UPDATE meta SET value = CAST('6' AS BLOB) WHERE name = 'schema_version'")
    db.execute("COMMIT")
    db.close()


def test_a_schema_6_outbox_moves_to_partition_ids_in_place(tmp_path: Path) -> None:
    """Schema 7 keys the format-3 outbox by (partition id, seq): every row keeps its
    partition and seq, and the site goes on writing and sealing where it was."""
    path = tmp_path / "six.sqlite"
    _schema_6_store(path)
    assert [m.version for m in pending_migrations(path)] == [7]
    residents, part = Partition("residents"), Partition("residents", "r0")
    with Replica.open(str(path), identity=SITE) as rep:
        assert isinstance(rep.store, SQLiteStore) and rep.store.migrated == [7]
        assert rep.store.outbox(part) == [(1, b"a"), (2, b"b")]
        assert [seq for seq, _ in rep.store.outbox(residents)] == [31, 32, 33, 34, 35]
        assert rep.store.outbox_partitions() == [residents, part]
        rep.put("residents", "late5", {"name": "after the upgrade"})
        assert [seq for seq, _ in rep.store.outbox(residents)][-1] == 36
        with rep.store.transaction():
            rep.store.clear_outbox(part, 2)
        rep.pack()  # seals residents' six
        assert rep.store.outbox_partitions() == []
        assert rep.get("residents", "late5") == {"name": "after the upgrade"}
    db = sqlite3.connect(path)
    names = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert {"partitions", "part_outbox"} <= names and "partition_outbox" not in names


def test_outbox_partition_ids_are_forgotten_with_a_rolled_back_transaction(
    tmp_path: Path,
) -> None:
    """An id made in a transaction that rolls back goes with it: the next write of that
    partition makes it again (a remembered id of a rolled-back row would point nowhere)."""
    store = SQLiteStore(str(tmp_path / "ids.sqlite"))
    part = Partition("residents", "35")
    with pytest.raises(RuntimeError), store.transaction():
        store.add_outbox(part, [(1, b"a")])
        raise RuntimeError("abandon")
    assert store.outbox(part) == [] and store.outbox_partitions() == []
    with store.transaction():
        store.add_outbox(Partition("doses", "35"), [(1, b"d")])
        store.add_outbox(part, [(1, b"a")])
    assert store.outbox(part) == [(1, b"a")]
    assert store.outbox_partitions() == [Partition("doses", "35"), part]
    store.close()
