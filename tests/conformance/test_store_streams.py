"""SQLite schema 6 keys segments by stream and keeps an outbox per own stream (format
3's step 2): a store written by the previous offsync (schema 5: segments by (origin,
first_seq)) is upgraded in place, its rows becoming the WHOLE partition (whose outbox
is the table it was), and holds the same.

The schema-5 file is built here as that offsync built it (``SCHEMA`` and the steps up to
5), and filled with the rows of a real site, so that the upgrade meets real segments,
an outbox and meta values. The PostgreSQL migration is tested in
tests/postgres/test_postgres.py; the Store contract for streams in ``check_store``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from offsync import Identity, Replica, sync
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


def _schema_5_copy(src: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dest``: a schema-5 store (as the previous offsync created it) holding the rows
    of the current store at ``src``."""
    with monkeypatch.context() as previous:
        previous.setattr(store_module, "MIGRATIONS", MIGRATIONS[:-1])
        db = sqlite3.connect(dest, isolation_level=None)
        assert migrate(db, str(dest)) == [4, 5]
    columns = {
        n: [c for (_, c, *_) in db.execute(f"PRAGMA table_info({n})")]
        for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert columns["segments"][:2] == ["origin", "first_seq"] and "prefix" not in columns["outbox"]
    db.execute("ATTACH DATABASE ? AS src", (str(src),))
    db.execute("BEGIN")
    for table, names in columns.items():
        if table.startswith("sqlite_"):
            continue
        wanted = ", ".join(names)
        where = {
            "meta": " WHERE name <> 'schema_version'",
            "segments": " WHERE collection = '' AND prefix = ''",  # format 2: all of them
        }.get(table, "")
        db.execute(f"INSERT INTO {table} ({wanted}) SELECT {wanted} FROM src.{table}{where}")
    db.execute("COMMIT")
    db.execute("DETACH DATABASE src")
    db.close()


def _held(store: SQLiteStore) -> tuple[Any, ...]:
    index = store.segment_index()
    return (
        index,
        store.segment_data([(row[0], row[1]) for row in index]),
        store.outbox(),
        list(store.iter_records()),
        [store.get_meta(n) for n in ("seq", "sealed", "hlc", "identity")],
    )


def test_a_schema_5_store_is_upgraded_in_place_and_holds_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now, old = tmp_path / "now.sqlite", tmp_path / "old.sqlite"
    _site(now)
    _schema_5_copy(now, old, monkeypatch)
    assert [m.version for m in pending_migrations(old)] == [6]
    current = SQLiteStore(str(now), read_only=True)
    expected = _held(current)
    current.close()
    assert len(expected[0]) >= 2 and len(expected[2]) == 5  # segments and an outbox

    with Replica.open(str(old), identity=SITE) as rep:
        assert isinstance(rep.store, SQLiteStore) and rep.store.migrated == [6]
        assert _held(rep.store) == expected, "the upgraded store holds what it held"
        assert {row[0] for row in rep.store.segment_index()} == {
            whole(SITE.public_key),
            whole(PEER.public_key),
        }, "every row held becomes its origin's WHOLE stream"
        assert rep.seq == 35 and rep.knowledge().count(PEER.public_key) == 40
        rep.put("residents", "after", {"name": "after the upgrade"})
        rep.pack()
        assert rep.store.outbox() == [] and rep.store.get_meta("sealed") == b"36"
        with Replica.open(":memory:", identity=PEER) as peer:
            sync(peer, LoopbackTransport(rep))
            assert peer.get("residents", "late4") == {"name": "unsealed"}
            assert peer.knowledge().count(SITE.public_key) == 36
    assert pending_migrations(old) == []


def test_the_upgraded_schema_keeps_streams_of_one_origin_apart(tmp_path: Path) -> None:
    """Rows of partitions next to the WHOLE ones an upgrade made, through a reopen."""
    path = tmp_path / "s.sqlite"
    _site(path)
    part = Partition("residents", "r0")
    stream = Stream(SITE.public_key, part)
    store = SQLiteStore(str(path))
    before = store.segment_index()
    mine = [row for row in before if row[0] == whole(SITE.public_key)]
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
    assert store.outbox(part) == [(2, b"b")] and len(store.outbox(WHOLE)) == 5
    with store.transaction():
        store.clear_outbox(WHOLE, 99)  # all of WHOLE's, none of the partition's
    assert store.outbox(part) == [(2, b"b")] and store.outbox(WHOLE) == []
    store.close()
