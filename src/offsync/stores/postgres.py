"""The central store: PostgreSQL, shared by several server processes.

Same contract as the SQLite store (``offsync.testing.check_store`` holds both to it),
plus what a centre with several workers on one database needs:

* ``shared = True``: a replica on it locks per origin (advisory transaction locks) and
  per record (row locks) before deciding, and follows the segments other processes add
  (``segments_changed``), so concurrent appliers neither lose nor repeat a change.
* Bulk statements: every write of many rows is one ``INSERT ... SELECT FROM unnest(...)``
  (one round trip and one set-based plan per batch, never one per change), its arrays
  sent as binary parameters (``%b``): dumped as text, every bytea element was hex-encoded,
  regex-tested and quoted, 45-62 % of a centre worker's CPU (benchmarks/ANALYSIS.md).
* Versioned migrations (``offsync.stores.migrations``) recorded in ``schema_migrations``,
  applied once under an advisory lock so that workers starting together do not race.
* One schema per store (``schema=``), so that tests and tenants share a database.

psycopg 3 is imported when a store is opened: ``pip install offsync[postgres]``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from ..blobs import BLOB_MARK, BlobRef, field_references
from ..change import Change
from ..errors import StorageConflictError, StorageError, StorageFullError, UsageError
from ..limits import DEFAULT_LIMITS, Limits
from ..scope import WHOLE, Partition, Stream, new_partition
from .base import (
    BlobRefRow,
    IndexRow,
    RecordRow,
    SegmentRow,
    Store,
    pack_ids,
    prefix_end,
    sole_head,
    stream_of,
    unpack_ids,
)
from .blobs import BlobStore
from .migrations import migrations
from .pgarrays import bool_array, bytea_array, int2_array, int8_array, register, text_array
from .sqlblobs import SQLBlobStore

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore", "apply_migrations"]

#: Rows per bulk statement (bounds statement size and memory on both sides).
BATCH_ROWS = 5000
#: Records fetched per page by ``iter_records`` (keyset pagination).
PAGE_ROWS = 5000
#: How often (ms) one store sweeps expired nonces out of ``http_nonces``.
NONCE_SWEEP_MS = 60_000

T = TypeVar("T")


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError(
            "the PostgreSQL store needs psycopg: pip install offsync[postgres]"
        ) from exc
    return psycopg


def lock_key(*parts: bytes) -> int:
    """A signed 64-bit advisory lock key for these parts."""
    digest = hashlib.blake2b(b"\x00".join(parts), digest_size=8, person=b"offsync-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


def _chunks(rows: Sequence[T], n: int = BATCH_ROWS) -> Iterator[Sequence[T]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


#: Insert record rows given as column arrays (``_record_columns``), replacing existing ones.
_UPSERT_RECORDS = (
    "INSERT INTO records (collection, key, fields, heads, conflict)"
    " SELECT * FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::bytea[], %b::boolean[])"
    " ON CONFLICT (collection, key) DO UPDATE SET fields = EXCLUDED.fields,"
    " heads = EXCLUDED.heads, conflict = EXCLUDED.conflict"
)


#: ``add_first_changes`` in one statement: the changes, and the record each makes alone
#: (inserted, or filling a placeholder ``lock_records`` left); the keys written come back.
_FIRST_CHANGES = (
    "WITH c AS (INSERT INTO changes (collection, key, origin, seq, hlc, op, fields, parents)"
    " SELECT * FROM unnest(%(c)b::bytea[], %(k)b::bytea[], %(o)b::bytea[], %(s)b::bigint[],"
    " %(h)b::bigint[], %(op)b::smallint[], %(f)b::bytea[], %(p)b::bytea[])"
    " ON CONFLICT DO NOTHING)"
    " INSERT INTO records (collection, key, fields, heads, conflict)"
    " SELECT c, k, f, h, false FROM unnest(%(c)b::bytea[], %(k)b::bytea[], %(f)b::bytea[],"
    " %(heads)b::bytea[]) AS n(c, k, f, h)"
    " ON CONFLICT (collection, key) DO UPDATE SET fields = EXCLUDED.fields,"
    " heads = EXCLUDED.heads, conflict = EXCLUDED.conflict WHERE records.heads = ''"
    " RETURNING collection, key"
)


#: References of records just written into the index (``blob_refs``), each held if its
#: blob is whole. ``FOR SHARE``: a blob being completed or dropped by another worker at
#: this moment is waited for, so that ``held`` is read after it, never before.
_INSERT_REFS = (
    "INSERT INTO blob_refs (collection, key, hash, size, media_type, held)"
    " SELECT c, k, h, n, m, EXISTS (SELECT 1 FROM blobs b WHERE b.hash = u.h AND b.complete"
    " FOR SHARE) FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::bigint[], %b::text[])"
    " AS u(c, k, h, n, m) ON CONFLICT DO NOTHING"
)
_REF_COLUMNS = "collection, key, hash, size, media_type"
_REF_ORDER = 'collection, key, hash, size, media_type COLLATE "C"'


def _index_rows(rows: Sequence[Any]) -> list[IndexRow]:
    """Segment index rows as read (origin, collection, prefix, first, ...) as the store
    gives them (stream, first, ...)."""
    return [
        (
            stream_of(bytes(o), bytes(c).decode(), bytes(p).decode()),
            f,
            last,
            bytes(h),
            bytes(v),
            st,
            n,
        )
        for o, c, p, f, last, h, v, st, n in rows
    ]


def _stream_arrays(streams: Sequence[Stream]) -> tuple[Any, Any, Any]:
    """The origins, collections and prefixes of ``streams`` as three bytea arrays."""
    return (
        bytea_array([bytes(s[0]) for s in streams]),
        bytea_array([s[1][0].encode() for s in streams]),
        bytea_array([s[1][1].encode() for s in streams]),
    )


def _ref_rows(rows: list[Any]) -> list[BlobRefRow]:
    return [
        (bytes(c).decode(), bytes(k).decode(), BlobRef(bytes(h), int(n), m))
        for c, k, h, n, m in rows
    ]


def _record_chunks(rows: Sequence[RecordRow]) -> Iterator[Sequence[RecordRow]]:
    """Rows in key byte order (the index's order), the last of several for one record."""
    latest = {(r.collection, r.key): r for r in rows}
    yield from _chunks(
        sorted(latest.values(), key=lambda r: (r.collection.encode(), r.key.encode()))
    )


def _record_columns(chunk: Sequence[RecordRow]) -> tuple[bytes, ...]:
    return (
        bytea_array([r.collection.encode() for r in chunk]),
        bytea_array([r.key.encode() for r in chunk]),
        bytea_array([r.fields for r in chunk]),
        bytea_array([bytes(r.heads) for r in chunk]),
        bool_array([bool(r.conflict) for r in chunk]),
    )


#: SQLSTATEs after which retrying will not help until someone acts: class 53
#: (insufficient resources: disk full, out of memory, ...), an I/O error, and a
#: read-only transaction (a standby, or a database set read-only).
_FULL_STATES = ("53", "58030", "25006")


def _translate(exc: Exception) -> StorageError:
    """The offsync error for a psycopg error: the one place they are mapped."""
    errors = _psycopg().errors
    if isinstance(exc, errors.SerializationFailure | errors.DeadlockDetected):
        return StorageConflictError(f"lost a race with another writer, nothing was changed: {exc}")
    if (getattr(exc, "sqlstate", None) or "").startswith(_FULL_STATES):
        return StorageFullError(
            f"the database cannot store more or refuses writes ({exc}); nothing was"
            " changed: an operator must free space or fix the database, then try again"
        )
    return StorageError(f"store failed, nothing was changed: {exc}")


def apply_migrations(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    """Bring ``schema`` up to date; returns the versions applied now (none if current).

    Runs in one transaction under an advisory lock per schema, so that any number of
    processes may call it at once and exactly one applies each migration.
    """
    from psycopg import sql

    known = migrations()
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(b"migrate", schema.encode()),))
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        if done and max(done) > len(known):
            raise StorageError(
                f"schema {schema!r} is at version {max(done)}, newer than this offsync "
                f"({len(known)}): upgrade offsync"
            )
        for m in known:
            if m.version in done:
                continue
            conn.execute(m.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (m.version, m.name),
            )
            applied.append(m.version)
    return applied


class PostgresStore(Store):
    """A store in one schema of a PostgreSQL database; one connection per store.

    Open one per process (or per replica); several may share the database.
    """

    shared = True
    _nonces_purged = 0  # ms (the caller's clock) of this store's last sweep of nonces

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "offsync",
        migrate: bool = True,
        connect_timeout: float = 10,
    ) -> None:
        pg = _psycopg()
        from psycopg import sql

        self.schema = schema
        self._dsn = dsn
        self._connect_timeout = max(1, int(connect_timeout))
        self._closed = False
        try:
            self.conn: psycopg.Connection[Any] = pg.connect(
                dsn, autocommit=True, connect_timeout=max(1, int(connect_timeout))
            )
            register(self.conn)
        except pg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            if migrate:
                self.migrated = apply_migrations(self.conn, schema)
            else:
                self.migrated = []
            self.conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            row = self.conn.execute(
                "SELECT coalesce(max(version), 0) FROM schema_migrations"
            ).fetchone()
        except pg.Error as exc:
            self.conn.close()
            raise StorageError(f"schema {schema!r} is not a usable offsync store: {exc}") from exc
        except BaseException:
            self.conn.close()
            raise
        if row is None or row[0] != len(migrations()):
            self.conn.close()
            raise StorageError(
                f"schema {schema!r} is at version {row[0] if row else 0}, "
                f"this offsync uses {len(migrations())}: open it with migrate=True"
            )
        self._lock_prefix = schema.encode()
        self._backfill_blob_refs()

    def _backfill_blob_refs(self) -> None:
        """Index the references of records held before migration 5 (which left a note in
        ``meta`` when there were any): once, by the first store opened after it."""
        if not self.get_meta("blob_refs_backfill"):
            return
        with self.transaction():
            self._x("SELECT pg_advisory_xact_lock(%s)", (lock_key(self._lock_prefix, b"refs"),))
            if not self._q("SELECT 1 FROM meta WHERE name = 'blob_refs_backfill'"):
                return  # another worker did it meanwhile
            rows = self._q(
                "SELECT collection, key, fields FROM records WHERE heads <> ''"
                " AND position(%b::bytea IN fields) > 0",
                (BLOB_MARK,),
            )
            self._index_refs([(bytes(c).decode(), bytes(k).decode(), bytes(f)) for c, k, f in rows])
            self._x("DELETE FROM meta WHERE name = 'blob_refs_backfill'")

    def _index_refs(self, items: Sequence[tuple[str, str, bytes | None]]) -> None:
        """Add the references of records just written to the index."""
        params = [
            (c, k, r)
            for c, k, f in items
            if f is not None and BLOB_MARK in f
            for r in field_references(f)
        ]
        for chunk in _chunks(params):
            self._x(
                _INSERT_REFS,
                (
                    bytea_array([c.encode() for c, _, _ in chunk]),
                    bytea_array([k.encode() for _, k, _ in chunk]),
                    bytea_array([r.hash for _, _, r in chunk]),
                    int8_array([r.size for _, _, r in chunk]),
                    text_array([r.media_type for _, _, r in chunk]),
                ),
            )

    def __repr__(self) -> str:
        return f"<PostgresStore schema={self.schema!r}>"

    # -- plumbing ------------------------------------------------------------------------

    def _reconnect_if_lost(self) -> None:
        """Between transactions, replace a connection the server dropped (a restart, a
        failover): the call that met the loss failed with StorageError; the next works."""
        if self._depth or self._closed or not (self.conn.broken or self.conn.closed):
            return
        pg = _psycopg()
        from psycopg import sql

        try:
            conn = pg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout)
            register(conn)
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        except pg.Error as exc:
            raise StorageError(f"cannot reconnect to PostgreSQL: {exc}") from exc
        self.conn.close()
        self.conn = conn

    def _run(self, fn: Callable[[], T]) -> T:
        psycopg = _psycopg()
        self._reconnect_if_lost()
        try:
            return fn()
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    def _q(self, query: Any, args: Sequence[Any] | Mapping[str, Any] | None = None) -> list[Any]:
        def go() -> list[Any]:
            return self.conn.execute(query, args).fetchall()

        return self._run(go)

    def _x(self, query: Any, args: Sequence[Any] | Mapping[str, Any] | None = None) -> None:
        """Run a statement whose result is not needed. Inside a transaction it is only
        queued (pipeline mode): the writes of one apply travel together, and their errors
        surface at the next read or at commit, still inside the transaction."""
        self._run(lambda: self.conn.execute(query, args))

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        psycopg = _psycopg()
        self._reconnect_if_lost()
        try:
            with self.conn.pipeline(), self.conn.transaction():
                yield
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    def probe(self) -> None:
        """On a connection of its own, opened and closed here: a server that stopped
        accepting connections is found even while this store's own one still works."""
        pg = _psycopg()
        from psycopg import sql

        query = sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(
            sql.Identifier(self.schema, "schema_migrations")
        )
        try:
            with pg.connect(
                self._dsn, autocommit=True, connect_timeout=self._connect_timeout
            ) as conn:
                row = conn.execute(query).fetchone()
        except pg.Error as exc:
            raise StorageError(f"cannot reach the store in PostgreSQL: {exc}") from exc
        found = row[0] if row is not None else 0
        if found != len(migrations()):
            raise StorageError(
                f"schema {self.schema!r} is at version {found}, this offsync uses "
                f"{len(migrations())}"
            )

    def blobs(self, limits: Limits = DEFAULT_LIMITS) -> BlobStore:
        def query(sql: str, args: Sequence[Any]) -> list[Any]:
            if sql.startswith("SELECT"):
                return self._q(sql, args)
            self._x(sql, args)
            return []

        return SQLBlobStore(self, query, limits, style="format")

    def close(self) -> None:
        self._closed = True
        self.conn.close()

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, name: str) -> bytes | None:
        rows = self._q("SELECT value FROM meta WHERE name = %s", (name,))
        return bytes(rows[0][0]) if rows else None

    def set_meta(self, name: str, value: bytes) -> None:
        self._x(
            "INSERT INTO meta (name, value) VALUES (%s, %b)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            (name, bytes(value)),
        )

    # -- segments ------------------------------------------------------------------------

    _INDEX_COLUMNS = (
        "origin, collection, prefix, first_seq, last_seq, hash, prev_hash, status, length(data)"
    )
    _STREAM_ORDER = "origin, collection, prefix, first_seq"

    def segment_index(self) -> list[IndexRow]:
        return _index_rows(
            self._q(f"SELECT {self._INDEX_COLUMNS} FROM segments ORDER BY {self._STREAM_ORDER}")
        )

    def segment_index_of(self, origins: Sequence[bytes]) -> list[IndexRow]:
        if not origins:
            return []
        return _index_rows(
            self._q(
                f"SELECT {self._INDEX_COLUMNS} FROM segments WHERE origin = ANY(%b::bytea[])"
                f" ORDER BY {self._STREAM_ORDER}",
                (bytea_array([bytes(o) for o in origins]),),
            )
        )

    def segment_index_near(self, spans: Sequence[tuple[Stream, int, int]]) -> list[IndexRow]:
        # Two primary-key range scans per span, however long the stream's chain is.
        if not spans:
            return []
        cols = ", ".join(f"s.{c}" for c in self._INDEX_COLUMNS.split(", ")[:-1])
        cols += ", length(s.data)"
        same = "s.origin = q.o AND s.collection = q.c AND s.prefix = q.p"
        return _index_rows(
            self._q(
                "SELECT n.* FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::bigint[],"
                " %b::bigint[]) AS q(o, c, p, lo, hi)"
                f" CROSS JOIN LATERAL ((SELECT {cols} FROM segments s WHERE {same}"
                f" AND s.first_seq BETWEEN q.lo AND q.hi + 1)"
                f" UNION ALL (SELECT {cols} FROM segments s WHERE {same}"
                f" AND s.first_seq < q.lo ORDER BY s.first_seq DESC LIMIT 1)) AS n",
                (
                    bytea_array([bytes(s[0]) for s, _, _ in spans]),
                    bytea_array([s[1][0].encode() for s, _, _ in spans]),
                    bytea_array([s[1][1].encode() for s, _, _ in spans]),
                    int8_array([f for _, f, _ in spans]),
                    int8_array([last for _, _, last in spans]),
                ),
            )
        )

    def segments_changed(self, cursor: int) -> tuple[list[IndexRow], int]:
        # Rows touched by transactions at or after the oldest one still running when this
        # statement's snapshot was taken may be new to the caller; older ones it has seen.
        rows = self._q(
            f"SELECT pg_snapshot_xmin(pg_current_snapshot())::text, t.* FROM (SELECT 1) one"
            f" LEFT JOIN LATERAL (SELECT {self._INDEX_COLUMNS} FROM segments"
            f" WHERE touched >= %s::text::xid8 ORDER BY {self._STREAM_ORDER}) t ON true",
            (str(cursor),),
        )
        found = _index_rows([r[1:] for r in rows if r[1] is not None])
        return found, int(rows[0][0])

    def add_segments(self, rows: Sequence[SegmentRow]) -> None:
        for chunk in _chunks(rows):
            if not chunk:
                continue
            s, f, last, h, p, d, st = zip(*chunk, strict=True)
            self._x(
                "INSERT INTO segments (origin, collection, prefix, first_seq, last_seq, hash,"
                " prev_hash, data, status) SELECT * FROM unnest(%b::bytea[], %b::bytea[],"
                " %b::bytea[], %b::bigint[], %b::bigint[], %b::bytea[], %b::bytea[], %b::bytea[],"
                " %b::text[])",
                (
                    *_stream_arrays(s),
                    int8_array(f),
                    int8_array(last),
                    bytea_array([bytes(x) for x in h]),
                    bytea_array([bytes(x) for x in p]),
                    bytea_array([bytes(x) for x in d]),
                    text_array(st),
                ),
            )

    def segment_data(self, keys: Sequence[tuple[Stream, int]]) -> list[bytes]:
        found: dict[tuple[bytes, bytes, bytes, int], bytes] = {}
        for chunk in _chunks(keys, 500):
            for o, c, p, f, d in self._q(
                "SELECT s.origin, s.collection, s.prefix, s.first_seq, s.data FROM segments s"
                " JOIN unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::bigint[])"
                " AS k(origin, collection, prefix, first_seq)"
                " USING (origin, collection, prefix, first_seq)",
                (*_stream_arrays([k[0] for k in chunk]), int8_array([k[1] for k in chunk])),
            ):
                found[(bytes(o), bytes(c), bytes(p), f)] = bytes(d)
        try:
            return [found[(bytes(s[0]), s[1][0].encode(), s[1][1].encode(), f)] for s, f in keys]
        except KeyError:
            raise StorageError("segment vanished from the store") from None

    def set_segment_status(self, stream: Stream, first_seq: int, status: str) -> None:
        origin, (collection, prefix) = stream
        self._x(
            "UPDATE segments SET status = %s, touched = pg_current_xact_id()"
            " WHERE origin = %s AND collection = %s AND prefix = %s AND first_seq = %s",
            (status, bytes(origin), collection.encode(), prefix.encode(), first_seq),
        )

    def replace_segment_data(self, stream: Stream, first_seq: int, data: bytes) -> None:
        origin, (collection, prefix) = stream
        self._x(
            "UPDATE segments SET data = %s, touched = pg_current_xact_id()"
            " WHERE origin = %s AND collection = %s AND prefix = %s AND first_seq = %s",
            (data, bytes(origin), collection.encode(), prefix.encode(), first_seq),
        )

    def remove_segments(self, keys: Sequence[tuple[Stream, int]]) -> None:
        for chunk in _chunks(keys):
            self._x(
                "DELETE FROM segments USING unnest(%b::bytea[], %b::bytea[], %b::bytea[],"
                " %b::bigint[]) AS k (o, c, p, f) WHERE origin = k.o AND collection = k.c"
                " AND prefix = k.p AND first_seq = k.f",
                (*_stream_arrays([s for s, _ in chunk]), int8_array([f for _, f in chunk])),
            )

    def drop_partition(self, partition: Partition, length: int) -> None:
        collection, prefix = (x.encode() for x in partition)
        self._x("DELETE FROM segments WHERE collection = %s AND prefix = %s", (collection, prefix))
        self._x("DELETE FROM outbox WHERE collection = %s AND prefix = %s", (collection, prefix))
        # Keys are UTF-8 bytes: a key whose first L code points are the prefix (L of
        # them) is one whose bytes start with the prefix's bytes, within the range of
        # keys from the prefix (byte order is code point order), which the indexes find.
        args: tuple[bytes | int, ...]
        if len(partition.prefix) < length:  # a key shorter than L: that key's partition
            where, args = "collection = %s AND key = %s", (collection, prefix)
        else:
            where = "collection = %s AND key >= %s AND substring(key from 1 for %s) = %s"
            args = (collection, prefix, len(prefix), prefix)
            upper = prefix_end(partition.prefix)
            if upper is not None:
                where, args = where + " AND key < %s", (*args, upper.encode())
        for table in ("changes", "records", "blob_refs"):
            self._x(f"DELETE FROM {table} WHERE {where}", args)

    # -- outbox --------------------------------------------------------------------------

    def add_outbox(self, partition: Partition, rows: Sequence[tuple[int, bytes]]) -> None:
        collection, prefix = (x.encode() for x in partition)
        for chunk in _chunks(rows):
            self._x(
                "INSERT INTO outbox (collection, prefix, seq, data)"
                " SELECT %s, %s, * FROM unnest(%b::bigint[], %b::bytea[])",
                (
                    collection,
                    prefix,
                    int8_array([s for s, _ in chunk]),
                    bytea_array([bytes(d) for _, d in chunk]),
                ),
            )

    def outbox(self, partition: Partition = WHOLE) -> list[tuple[int, bytes]]:
        return [
            (s, bytes(d))
            for s, d in self._q(
                "SELECT seq, data FROM outbox WHERE collection = %s AND prefix = %s ORDER BY seq",
                tuple(x.encode() for x in partition),
            )
        ]

    def outbox_page(
        self, partition: Partition, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        return [
            (s, bytes(d))
            for s, d in self._q(
                "SELECT seq, data FROM outbox WHERE collection = %s AND prefix = %s AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (*(x.encode() for x in partition), after_seq, limit),
            )
        ]

    def outbox_partitions(self) -> list[Partition]:
        return [
            new_partition(bytes(c).decode(), bytes(p).decode())
            for c, p in self._q(
                "SELECT DISTINCT collection, prefix FROM outbox ORDER BY collection, prefix"
            )
        ]

    def clear_outbox(self, partition: Partition, upto_seq: int) -> None:
        self._x(
            "DELETE FROM outbox WHERE collection = %s AND prefix = %s AND seq <= %s",
            (*(x.encode() for x in partition), upto_seq),
        )

    # -- changes and records -------------------------------------------------------------

    def add_changes(self, changes: Sequence[Change]) -> None:
        for chunk in _chunks(changes):
            self._x(
                "INSERT INTO changes (collection, key, origin, seq, hlc, op, fields, parents)"
                " SELECT * FROM unnest(%b::bytea[], %b::bytea[], %b::bytea[], %b::bigint[],"
                " %b::bigint[], %b::smallint[], %b::bytea[], %b::bytea[])"
                " ON CONFLICT DO NOTHING",
                (
                    bytea_array([c.collection.encode() for c in chunk]),
                    bytea_array([c.key.encode() for c in chunk]),
                    bytea_array([c.origin for c in chunk]),
                    int8_array([c.seq for c in chunk]),
                    int8_array([c.hlc for c in chunk]),
                    int2_array([c.op for c in chunk]),
                    bytea_array([c.fields for c in chunk]),
                    bytea_array([pack_ids(c.parents) if c.parents else None for c in chunk]),
                ),
            )

    def add_first_changes(self, changes: Sequence[Change]) -> list[tuple[str, str]]:
        # One statement per chunk instead of two, each key encoded once; in key byte
        # order, as ``add_new_records`` writes (two writers lock common rows in one order).
        rows = sorted(
            ((c.collection.encode(), c.key.encode(), c) for c in changes),
            key=lambda r: (r[0], r[1]),
        )
        written: set[tuple[bytes, bytes]] = set()
        for chunk in _chunks(rows):
            cs = [c for _, _, c in chunk]
            args = {
                "c": bytea_array([r[0] for r in chunk]),
                "k": bytea_array([r[1] for r in chunk]),
                "o": bytea_array([c.origin for c in cs]),
                "s": int8_array([c.seq for c in cs]),
                "h": int8_array([c.hlc for c in cs]),
                "op": int2_array([c.op for c in cs]),
                "f": bytea_array([c.fields for c in cs]),
                "p": bytea_array([pack_ids(c.parents) if c.parents else None for c in cs]),
                "heads": bytea_array([sole_head(c.origin, c.seq) for c in cs]),
            }
            done = {(bytes(c), bytes(k)) for c, k in self._q(_FIRST_CHANGES, args)}
            written |= done
            self._index_refs(
                [(c.collection, c.key, c.fields) for ck, kk, c in chunk if (ck, kk) in done]
            )
        return [
            (c.collection, c.key)
            for c in changes
            if (c.collection.encode(), c.key.encode()) not in written
        ]

    def remove_changes(self, changes: Sequence[Change]) -> None:
        for chunk in _chunks(changes):
            self._x(
                "DELETE FROM changes c USING unnest(%b::bytea[], %b::bytea[], %b::bytea[],"
                " %b::bigint[]) AS d(collection, key, origin, seq) WHERE c.collection ="
                " d.collection AND c.key = d.key AND c.origin = d.origin AND c.seq = d.seq",
                (
                    bytea_array([c.collection.encode() for c in chunk]),
                    bytea_array([c.key.encode() for c in chunk]),
                    bytea_array([c.origin for c in chunk]),
                    int8_array([c.seq for c in chunk]),
                ),
            )

    def changes_for(self, collection: str, key: str) -> list[Change]:
        return self.changes_for_many([(collection, key)])[(collection, key)]

    def changes_for_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Change]]:
        """The changes of many records in one round trip per ``BATCH_ROWS`` keys."""
        out: dict[tuple[str, str], list[Change]] = {k: [] for k in keys}
        for chunk in _chunks(list(out)):
            rows = self._q(
                "SELECT c.collection, c.key, c.origin, c.seq, c.hlc, c.op, c.fields, c.parents"
                " FROM changes c JOIN unnest(%b::bytea[], %b::bytea[]) AS k(collection, key)"
                " USING (collection, key) ORDER BY c.collection, c.key, c.origin, c.seq",
                (
                    bytea_array([c.encode() for c, _ in chunk]),
                    bytea_array([k.encode() for _, k in chunk]),
                ),
            )
            for c, k, o, s, h, op, f, p in rows:
                ck = (bytes(c).decode(), bytes(k).decode())
                out[ck].append(
                    Change(
                        bytes(o),
                        s,
                        h,
                        ck[0],
                        ck[1],
                        op,
                        None if f is None else bytes(f),
                        unpack_ids(p),
                    )
                )
        return out

    def existing(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for chunk in _chunks(keys):
            rows = self._q(
                "SELECT r.collection, r.key FROM records r"
                " JOIN unnest(%b::bytea[], %b::bytea[]) AS k(collection, key)"
                " USING (collection, key) WHERE r.heads <> ''",
                (
                    bytea_array([c.encode() for c, _ in chunk]),
                    bytea_array([k.encode() for _, k in chunk]),
                ),
            )
            found.update((bytes(c).decode(), bytes(k).decode()) for c, k in rows)
        return found

    def lock_records(self, keys: Sequence[tuple[str, str]]) -> None:
        # Row locks, not advisory locks: they live in the rows, so a bundle touching a
        # hundred thousand records does not fill the server's shared lock table. A record
        # that does not exist yet is locked by inserting a placeholder (heads = '').
        # Sorted, so two transactions lock their common records in the same order.
        ordered = sorted({(c.encode(), k.encode()) for c, k in keys})
        for chunk in _chunks(ordered):
            self._x(
                "INSERT INTO records (collection, key, fields, heads, conflict)"
                " SELECT collection, key, NULL, '', false FROM"
                " unnest(%b::bytea[], %b::bytea[]) WITH ORDINALITY AS k(collection, key, n)"
                " ORDER BY n"
                " ON CONFLICT (collection, key) DO UPDATE SET heads = EXCLUDED.heads WHERE false",
                (bytea_array([c for c, _ in chunk]), bytea_array([k for _, k in chunk])),
            )

    def put_records(self, rows: Sequence[RecordRow]) -> None:
        for chunk in _record_chunks(rows):
            columns = _record_columns(chunk)
            self._x(_UPSERT_RECORDS, columns)
            # The index follows: the references these records held go, theirs come.
            self._x(
                "DELETE FROM blob_refs r USING unnest(%b::bytea[], %b::bytea[]) AS k(c, k)"
                " WHERE r.collection = k.c AND r.key = k.k",
                columns[:2],
            )
            self._index_refs([(r.collection, r.key, r.fields) for r in chunk])

    def add_new_records(self, rows: Sequence[RecordRow]) -> list[tuple[str, str]]:
        # One statement: insert, or fill the placeholder lock_records left; a record that
        # really exists is left alone and reported back for merging.
        written: set[tuple[bytes, bytes]] = set()
        for chunk in _record_chunks(rows):
            done = {
                (bytes(c), bytes(k))
                for c, k in self._q(
                    _UPSERT_RECORDS + " WHERE records.heads = '' RETURNING collection, key",
                    _record_columns(chunk),
                )
            }
            written |= done
            self._index_refs(
                [
                    (r.collection, r.key, r.fields)
                    for r in chunk
                    if (r.collection.encode(), r.key.encode()) in done
                ]
            )
        return [
            (r.collection, r.key)
            for r in rows
            if (r.collection.encode(), r.key.encode()) not in written
        ]

    def get_record(self, collection: str, key: str) -> RecordRow | None:
        rows = self._q(
            "SELECT fields, heads, conflict FROM records"
            " WHERE collection = %s AND key = %s AND heads <> ''",
            (collection.encode(), key.encode()),
        )
        if not rows:
            return None
        f, h, c = rows[0]
        return RecordRow(collection, key, None if f is None else bytes(f), bytes(h), bool(c))

    def iter_records(self, collection: str | None = None) -> Iterator[RecordRow]:
        # Keyset pagination: bounded memory, and no server-side cursor to keep open.
        where = "heads <> ''"
        base: list[Any] = []
        if collection is not None:
            where += " AND collection = %s"
            base = [collection.encode()]
        after: tuple[bytes, bytes] | None = None
        while True:
            cond, args = where, list(base)
            if after is not None:
                cond += " AND (collection, key) > (%s, %s)"
                args += list(after)
            rows = self._q(
                "SELECT collection, key, fields, heads, conflict FROM records"
                f" WHERE {cond} ORDER BY collection, key LIMIT {PAGE_ROWS}",
                args,
            )
            for c, k, f, h, x in rows:
                yield RecordRow(
                    bytes(c).decode(),
                    bytes(k).decode(),
                    None if f is None else bytes(f),
                    bytes(h),
                    x,
                )
            if len(rows) < PAGE_ROWS:
                return
            after = (bytes(rows[-1][0]), bytes(rows[-1][1]))

    def conflicted(self) -> list[tuple[str, str]]:
        return [
            (bytes(c).decode(), bytes(k).decode())
            for c, k in self._q(
                "SELECT collection, key FROM records WHERE conflict ORDER BY collection, key"
            )
        ]

    # -- the index of blob references ----------------------------------------------------

    def blob_refs(self, collection: str | None = None, key: str | None = None) -> list[BlobRefRow]:
        if key is not None and collection is None:
            return super().blob_refs(collection, key)  # refuses it
        where, args = "", [c.encode() for c in (collection, key) if c is not None]
        if args:
            where = " WHERE collection = %s" + (" AND key = %s" if key is not None else "")
        return _ref_rows(
            self._q(f"SELECT {_REF_COLUMNS} FROM blob_refs{where} ORDER BY {_REF_ORDER}", args)
        )

    def missing_blob_refs(self) -> list[BlobRefRow]:
        # The partial index holds the references not held; a blob completed by another
        # worker while its reference was being written may leave one flagged that is
        # held, so the blobs are asked too (for these rows only).
        return _ref_rows(
            self._q(
                f"SELECT {_REF_COLUMNS} FROM blob_refs r WHERE NOT held AND NOT EXISTS"
                " (SELECT 1 FROM blobs b WHERE b.hash = r.hash AND b.complete)"
                f" ORDER BY {_REF_ORDER}"
            )
        )

    def blob_ref_page(
        self, after: bytes | None, limit: int, *, missing: bool = False
    ) -> list[BlobRef]:
        held = (
            " AND NOT held AND NOT EXISTS"
            " (SELECT 1 FROM blobs b WHERE b.hash = r.hash AND b.complete)"
            if missing
            else ""
        )
        rows = self._q(
            f"SELECT hash, size, media_type FROM blob_refs r WHERE hash > %b{held}"
            ' ORDER BY hash, collection, key, size, media_type COLLATE "C" LIMIT %s',
            (after or b"", limit),
        )
        return [BlobRef(bytes(h), int(n), m) for h, n, m in rows]

    def blob_ref_rows(self, after: BlobRefRow | None, limit: int) -> list[BlobRefRow]:
        where: str = ""
        args: list[Any] = []
        if after is not None:  # keyset, in the order of _REF_ORDER
            key = "(collection, key, hash, size)"
            where = (
                f" WHERE {key} > (%b, %b, %b, %s)"
                f' OR ({key} = (%b, %b, %b, %s) AND media_type COLLATE "C" > %s)'
            )
            first = [after[0].encode(), after[1].encode(), after[2].hash, after[2].size]
            args = [*first, *first, after[2].media_type]
        return _ref_rows(
            self._q(
                f"SELECT {_REF_COLUMNS} FROM blob_refs{where} ORDER BY {_REF_ORDER} LIMIT %s",
                [*args, limit],
            )
        )

    def blob_ref_records(self, hashes: Sequence[bytes]) -> list[tuple[str, str, BlobRef, bytes]]:
        out: list[tuple[str, str, BlobRef, bytes]] = []
        for chunk in _chunks(sorted(set(hashes))):
            rows = self._q(
                "SELECT b.collection, b.key, b.hash, b.size, b.media_type, r.heads"
                " FROM blob_refs b JOIN records r ON r.collection = b.collection"
                " AND r.key = b.key WHERE b.hash = ANY(%b::bytea[]) AND r.heads <> ''",
                (bytea_array(list(chunk)),),
            )
            out += [
                (bytes(c).decode(), bytes(k).decode(), BlobRef(bytes(h), int(n), m), bytes(hd))
                for c, k, h, n, m, hd in rows
            ]
        return out

    def first_blob_ref(self, digest: bytes) -> BlobRef | None:
        rows = self._q(
            "SELECT hash, size, media_type FROM blob_refs WHERE hash = %b"
            ' ORDER BY collection, key, size, media_type COLLATE "C" LIMIT 1',
            (bytes(digest),),
        )
        return next((BlobRef(bytes(h), int(n), m) for h, n, m in rows), None)

    def referenced_blobs(self, hashes: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for chunk in _chunks(sorted(set(hashes))):
            found.update(
                bytes(h)
                for (h,) in self._q(
                    "SELECT DISTINCT hash FROM blob_refs WHERE hash = ANY(%b::bytea[])",
                    (bytea_array(list(chunk)),),
                )
            )
        return found

    # -- peers ---------------------------------------------------------------------------

    def set_peer(self, peer: bytes, created: int, knowledge: bytes, receipt: bytes) -> None:
        self._x(
            "INSERT INTO peers (peer, created, knowledge, receipt) VALUES (%b, %s, %b, %b)"
            " ON CONFLICT (peer) DO UPDATE SET created = EXCLUDED.created,"
            " knowledge = EXCLUDED.knowledge, receipt = EXCLUDED.receipt"
            " WHERE EXCLUDED.created > peers.created",
            (bytes(peer), created, bytes(knowledge), bytes(receipt)),
        )

    def peers(self) -> list[tuple[bytes, int, bytes, bytes]]:
        return [
            (bytes(p), int(c), bytes(k), bytes(r))
            for p, c, k, r in self._q(
                "SELECT peer, created, knowledge, receipt FROM peers ORDER BY peer"
            )
        ]

    def peer(self, peer: bytes) -> tuple[bytes, int, bytes, bytes] | None:
        rows = self._q(
            "SELECT peer, created, knowledge, receipt FROM peers WHERE peer = %b", (bytes(peer),)
        )
        return next(((bytes(p), int(c), bytes(k), bytes(r)) for p, c, k, r in rows), None)

    # -- single-use values ---------------------------------------------------------------

    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        with self.transaction():
            if now - self._nonces_purged >= NONCE_SWEEP_MS:  # not on every call
                self._x("DELETE FROM http_nonces WHERE expires < %s", (now,))
                self._nonces_purged = now
            # One statement, atomic against every other worker: inserted, or an expired
            # record taken over; a row comes back either way, none for a live record.
            rows = self._q(
                "INSERT INTO http_nonces (nonce, expires) VALUES (%s, %s) ON CONFLICT (nonce)"
                " DO UPDATE SET expires = EXCLUDED.expires WHERE http_nonces.expires < %s"
                " RETURNING 1",
                (bytes(nonce), expires, now),
            )
        return len(rows) == 1

    # -- locks for concurrent appliers ---------------------------------------------------

    def lock_origins(self, origins: Sequence[bytes]) -> None:
        keys = sorted({lock_key(self._lock_prefix, b"origin", bytes(o)) for o in origins})
        if keys:
            self._x(
                "SELECT pg_advisory_xact_lock(k) FROM"
                " (SELECT k FROM unnest(%b::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n) s",
                (int8_array(keys),),
            )

    def lock_peers(self, peers: Sequence[bytes]) -> None:
        # A row lock (SELECT ... FOR UPDATE) would not hold a signer not heard from yet:
        # two first receipts would both insert. Sorted keys: no deadlock between two
        # bundles passing on the same receipts in another order.
        keys = sorted({lock_key(self._lock_prefix, b"peer", bytes(p)) for p in peers})
        if keys:
            self._x(
                "SELECT pg_advisory_xact_lock(k) FROM"
                " (SELECT k FROM unnest(%b::bigint[]) WITH ORDINALITY AS u(k, n) ORDER BY n) s",
                (int8_array(keys),),
            )

    # -- administration ------------------------------------------------------------------

    def drop(self) -> None:
        """Drop this store's schema and everything in it, and close (tests, tenants)."""
        from psycopg import sql

        self._x(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
        self.close()
