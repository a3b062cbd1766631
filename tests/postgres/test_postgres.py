"""The PostgreSQL store: the Store contract, migrations, and replicas equal to SQLite's.

Needs a server: OFFSYNC_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test).
Every store lives in its own uniquely named schema, dropped afterwards, so that runs
(and CI jobs) sharing the database never see each other's rows.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import pytest

from offsync import Identity, Replica, policies
from offsync.errors import FormatTwoStoreError, StorageError, StorageFullError
from offsync.scope import WHOLE, Partition, Stream, whole
from offsync.stores import postgres as pg_module
from offsync.stores.base import SegmentRow
from offsync.stores.memory import MemoryStore
from offsync.stores.migrations import migrations
from offsync.stores.postgres import PostgresStore
from offsync.testing import check_store
from tests.helpers.postgres import DSN, drop_schemas, psycopg

pytestmark = pytest.mark.postgres


@pytest.fixture
def schemas() -> Iterator[Callable[[], str]]:
    """Fresh schema names for this test; every one of them is dropped afterwards."""
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    counter = itertools.count()
    yield lambda: f"{prefix}{next(counter)}"
    drop_schemas(prefix)


@pytest.fixture
def make_store(schemas: Callable[[], str]) -> Callable[[], PostgresStore]:
    return lambda: PostgresStore(DSN, schema=schemas())


def test_postgres_store_keeps_the_contract(make_store: Callable[[], PostgresStore]) -> None:
    check_store(make_store)


def test_migrations_apply_once(schemas: Callable[[], str]) -> None:
    name = schemas()
    first = PostgresStore(DSN, schema=name)
    assert first.migrated == [m.version for m in migrations()]
    second = PostgresStore(DSN, schema=name)
    assert second.migrated == [], "a second open must apply nothing"
    rows = second._q("SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == [(m.version, m.name) for m in migrations()]
    with first.transaction():
        first.set_meta("kept", b"yes")
    third = PostgresStore(DSN, schema=name)
    assert third.get_meta("kept") == b"yes"
    third.close()
    first.close()
    second.close()


def test_migrations_from_many_connections_at_once_apply_once(
    schemas: Callable[[], str],
) -> None:
    import concurrent.futures

    name = schemas()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        applied = list(pool.map(_open_and_report, [name] * 4))
    assert sorted(applied, key=len) == [[], [], [], [m.version for m in migrations()]]


def _open_and_report(schema: str) -> list[int]:
    store = PostgresStore(DSN, schema=schema)
    store.close()
    return store.migrated


def test_newer_schema_is_refused(schemas: Callable[[], str]) -> None:
    name = schemas()
    store = PostgresStore(DSN, schema=name)
    store._x("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    store.close()
    with pytest.raises(StorageError, match="newer than this offsync"):
        PostgresStore(DSN, schema=name)


def test_unmigrated_schema_is_refused_without_migrate(schemas: Callable[[], str]) -> None:
    with pytest.raises(StorageError, match="not a usable offsync store"):
        PostgresStore(DSN, schema=schemas(), migrate=False)


def test_unreachable_server_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)


def test_text_is_ordered_as_utf8_bytes_whatever_the_collation(
    make_store: Callable[[], PostgresStore],
) -> None:
    store = make_store()
    keys = ["é", "f", "E", "e", "\U0001f600", "\ufb00", "a\x00", "a"]
    from offsync.stores.base import RecordRow

    with store.transaction():
        store.put_records([RecordRow("c", k, b"\x80", b"\x90", False) for k in keys])
    assert [r.key for r in store.iter_records()] == sorted(keys, key=str.encode)
    store.close()


def test_iter_records_pages_through_many_rows(make_store: Callable[[], PostgresStore]) -> None:
    import offsync.stores.postgres as pg
    from offsync.stores.base import RecordRow

    store = make_store()
    keys = [f"{i:05d}" for i in range(23)]
    with store.transaction():
        store.put_records([RecordRow("c", k, b"\x80", b"\x90", False) for k in keys])
    old = pg.PAGE_ROWS
    pg.PAGE_ROWS = 5
    try:
        assert [r.key for r in store.iter_records()] == keys
        assert [r.key for r in store.iter_records("c")] == keys
    finally:
        pg.PAGE_ROWS = old
    store.close()


POLICIES = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
    "addresses": policies.MultiValue(),
}


def test_replicas_on_memory_sqlite_and_postgres_agree(
    make_store: Callable[[], PostgresStore],
) -> None:
    """A heavier workload than check_store's: many sites, concurrent edits, deletes."""
    import random

    rng = random.Random(11)
    sites = [
        Replica.open(":memory:", identity=Identity.generate(label=f"s{i}"), policies=POLICIES)
        for i in range(5)
    ]
    bundles: list[bytes] = []
    for round_ in range(4):
        for site in sites:
            with site.batch():
                for _ in range(40):
                    key = f"3519{rng.randrange(60):04d}"
                    collection = rng.choice(list(POLICIES))
                    if rng.random() < 0.1 and collection != "doses":
                        site.delete(collection, key)
                    elif collection != "doses" or site.get(collection, key) is None:
                        site.put(collection, key, {"v": rng.randrange(1000), "r": round_})
            bundles += site.pack(max_bytes=16384)
        for site in sites:  # partial gossip between rounds
            for bundle in rng.sample(bundles, len(bundles) // 3):
                site.apply(bundle)
    centre = Identity.generate(label="centre")
    replicas = [
        Replica(MemoryStore(), centre, POLICIES),
        Replica.open(":memory:", identity=centre, policies=POLICIES),
        Replica(make_store(), centre, POLICIES),
    ]
    for bundle in bundles + rng.sample(bundles, len(bundles) // 2):
        for r in replicas:
            r.apply(bundle)
    digests = {r.state_digest() for r in replicas}
    assert len(digests) == 1
    assert len({str(r.knowledge()) for r in replicas}) == 1
    assert len({repr([(c.collection, c.key) for c in r.conflicts()]) for r in replicas}) == 1
    reopened = Replica(PostgresStore(DSN, schema=replicas[2].store.schema), centre, POLICIES)  # type: ignore[attr-defined]
    assert reopened.state_digest() == replicas[1].state_digest()
    assert reopened.knowledge() == replicas[1].knowledge()
    for r in [*replicas, *sites, reopened]:
        r.close()


def test_a_dropped_connection_fails_one_call_then_reconnects(
    make_store: Callable[[], PostgresStore],
) -> None:
    store = make_store()
    with store.transaction():
        store.set_meta("kept", b"1")
    pid = store._q("SELECT pg_backend_pid()")[0][0]
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StorageError), store.transaction():
        store.set_meta("lost", b"1")
        store.get_meta("kept")  # a read: the loss shows here at the latest
    assert store.get_meta("kept") == b"1", "the next call reconnects"
    assert store.get_meta("lost") is None
    with store.transaction():
        store.set_meta("after", b"1")
    assert store._q("SELECT pg_backend_pid()")[0][0] != pid
    store.close()
    with pytest.raises(StorageError):
        store.get_meta("kept")


def test_a_database_out_of_room_is_storage_full_and_changes_nothing(
    make_store: Callable[[], PostgresStore],
) -> None:
    # SQLSTATE class 53 (insufficient resources: disk full, ...) for real, without
    # filling the server's disk: a temporary file over this session's temp_file_limit.
    store = make_store()
    try:
        store.conn.execute("SET work_mem = '64kB'")
        store.conn.execute("SET temp_file_limit = '64kB'")
    except psycopg.errors.InsufficientPrivilege:
        store.close()
        pytest.skip("setting temp_file_limit needs a superuser")
    with pytest.raises(StorageFullError, match="an operator must"), store.transaction():
        store.set_meta("written", b"before the disk filled")
        store._q(
            "SELECT count(*) FROM (SELECT g FROM generate_series(1, 300000) g"
            " ORDER BY md5(g::text)) s"
        )
    assert store.get_meta("written") is None
    store.conn.execute("RESET temp_file_limit")
    with store.transaction():
        store.set_meta("written", b"after")
    assert store.get_meta("written") == b"after"
    store.close()


def test_migration_7_keys_the_rows_a_centre_held_by_stream(
    schemas: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A schema at migration 6 (segments by (origin, first_seq), the outbox by seq), with
    rows of a real site written in that layout, is upgraded in place: its rows become
    the WHOLE partition (format 2's one stream) and read back the same; a replica then
    refuses the store, as format 3 cannot use format 2's segments."""
    site = Identity(bytes([5]) * 32, "site")
    src = Replica.open(":memory:", identity=site)
    for i in range(30):
        src.put("residents", f"r{i}", {"n": i})
    src.pack()
    src.put("residents", "late", {"n": -1})
    held = src.store.segment_index()
    data = src.store.segment_data([(row[0], row[1]) for row in held])
    outbox = src.store.outbox(Partition("residents"))
    index = [(whole(site.public_key), *row[1:]) for row in held]  # as format 2 held them
    name = schemas()
    with monkeypatch.context() as previous:
        previous.setattr(pg_module, "migrations", lambda: migrations()[:6])
        old = PostgresStore(DSN, schema=name)
    assert old.migrated == [1, 2, 3, 4, 5, 6]
    for (stream, first, last, h, prev, status, _), d in zip(index, data, strict=True):
        old._x(
            "INSERT INTO segments (origin, first_seq, last_seq, hash, prev_hash, data, status)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (stream.origin, first, last, h, prev, d, status),
        )
    for seq, row in outbox:
        old._x("INSERT INTO outbox (seq, data) VALUES (%s, %s)", (seq, row))
    old.close()
    store = PostgresStore(DSN, schema=name)
    assert store.migrated == [7]
    assert store.segment_index() == index and index[0][0] == whole(site.public_key)
    assert store.segment_data([(row[0], row[1]) for row in index]) == data
    assert store.outbox() == outbox == store.outbox(WHOLE) and len(outbox) == 1
    assert store.segment_index_near([(index[0][0], 1, 1)])[0] == index[0]
    part = Partition("residents", "r")  # a stream of the same origin, kept apart
    with store.transaction():
        store.add_segments(
            [SegmentRow(Stream(site.public_key, part), 1, 1, b"h", b"p", b"d", "applied")]
        )
        store.add_outbox(part, [(1, b"x")])
    assert [row[0] for row in store.segment_index()] == [index[0][0]] * len(index) + [
        Stream(site.public_key, part)
    ]
    assert store.outbox() == outbox and store.outbox(part) == [(1, b"x")]
    with pytest.raises(FormatTwoStoreError, match="previous release"):
        Replica(store, site)
    store.close()
    src.close()
