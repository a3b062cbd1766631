"""The embedded default store: one SQLite file in WAL mode, owned by one process.

A store opened for writing holds an exclusive OS lock on ``<file>.lock`` until it is
closed, so that a second process (or a second open in this one) is refused with
``StoreLockedError`` instead of racing the owner: each replica keeps an in-memory index
of its segments and numbers its own changes, which only one owner can do. Opened
``read_only=True`` a store takes no lock and never writes, for inspection while the
owner runs (docs/operations.md, "One process per site").

Also here: the schema's versions (``MIGRATIONS``, applied in place when a store is
opened for writing, each step in a transaction of its own) and consistent, checked
copies of a store in use (``backup``, ``check_backup``; docs/operations.md, "Backups").
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import hashlib
import operator
import os
import socket
import sqlite3
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..blobs import BLOB_MARK, BlobRef, field_references
from ..change import Change
from ..encoding import packb
from ..errors import (
    StorageConflictError,
    StorageError,
    StorageFullError,
    StoreLockedError,
    UsageError,
)
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
from .sqlblobs import SQLITE_BLOB_REFS, SQLITE_BLOBS, SQLBlobStore

__all__ = [
    "BackupReport",
    "Migration",
    "SQLiteStore",
    "backup",
    "check_backup",
    "format_barrier",
    "migrate",
    "pending_migrations",
    "schema_version",
]

#: The schema ``SCHEMA`` creates. Never edit ``SCHEMA``: a later schema is a step in
#: ``MIGRATIONS``, which new stores run too, so that new and upgraded stores are alike.
BASELINE_SCHEMA = 3
#: How often (ms) ``record_nonce`` sweeps expired nonces out of the table.
NONCE_SWEEP_MS = 60_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    origin BLOB NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    hash BLOB NOT NULL, prev_hash BLOB NOT NULL, data BLOB NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (origin, first_seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    collection TEXT NOT NULL, key TEXT NOT NULL, origin BLOB NOT NULL, seq INTEGER NOT NULL,
    hlc INTEGER NOT NULL, op INTEGER NOT NULL, fields BLOB, parents BLOB,
    PRIMARY KEY (collection, key, origin, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL, key TEXT NOT NULL, fields BLOB, heads BLOB NOT NULL,
    conflict INTEGER NOT NULL, sole_origin INTEGER, sole_seq INTEGER, sole_hlc INTEGER,
    PRIMARY KEY (collection, key));
CREATE TABLE IF NOT EXISTS origins (id INTEGER PRIMARY KEY, origin BLOB NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS records_conflict ON records (conflict) WHERE conflict;
CREATE TABLE IF NOT EXISTS peers (
    peer BLOB PRIMARY KEY, created INTEGER NOT NULL, knowledge BLOB NOT NULL,
    receipt BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS http_nonces (
    nonce BLOB PRIMARY KEY, expires INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS http_nonces_expires ON http_nonces (expires);
"""

#: Moves the sole change kept in a record row into ``changes``, before the row is replaced.
_MATERIALIZE = (
    "INSERT OR IGNORE INTO changes (collection, key, origin, seq, hlc, op, fields, parents)"
    " SELECT collection, key, origins.origin, sole_seq, sole_hlc, fields IS NULL, fields, NULL"
    " FROM records JOIN origins ON origins.id = sole_origin"
    " WHERE collection = ? AND key = ?"
)


#: Rows are written sorted by record key: a large batch then walks the B-tree in order
#: instead of touching a random page per row (several times faster once the table
#: outgrows the page cache). The key alone sorts much faster than whole tuples, and
#: the sort is stable, so rows for one record keep their order.
_key_of = operator.itemgetter(1)
#: (collection, key, fields, seq, hlc) of a Change: a first change's row (and its origin).
_FIRST_PARAMS = operator.itemgetter(3, 4, 6, 1, 2)
_ORIGIN = operator.itemgetter(0)
#: A first change kept in its record's row (``add_first_changes``), for one change.
_INSERT_FIRST = (
    "INSERT INTO records"
    " (collection, key, fields, heads, conflict, sole_origin, sole_seq, sole_hlc)"
    " VALUES (?, ?, ?, x'', 0, ?, ?, ?) ON CONFLICT DO NOTHING"
)
#: One reference of a record into the index (``blob_refs``), held if its blob is whole.
_INSERT_REF = (
    "INSERT OR IGNORE INTO blob_refs (collection, key, hash, size, media_type, held)"
    " VALUES (?1, ?2, ?3, ?4, ?5, EXISTS (SELECT 1 FROM blobs WHERE hash = ?3 AND complete))"
)
_REF_COLUMNS = "collection, key, hash, size, media_type"


def _ref_params(
    items: Iterator[tuple[str, str, bytes | None]],
) -> Iterator[tuple[str, str, bytes, int, str]]:
    """Index rows of the references in records given as (collection, key, fields), one
    at a time: ``executemany`` takes them as they come, so a chunk of records heavy with
    references (14 per ID-card recording) never holds all its rows at once."""
    return (
        (c, k, r.hash, r.size, r.media_type)
        for c, k, f in items
        if f is not None and BLOB_MARK in f
        for r in field_references(f)
    )


def _ref_rows(rows: list[Any]) -> list[BlobRefRow]:
    return [(c, k, BlobRef(bytes(h), int(n), m)) for c, k, h, n, m in rows]


#: A record's heads as stored: empty when the record is its sole change's alone.
_HEADS = "heads, (SELECT origin FROM origins WHERE id = sole_origin), sole_seq"


def _heads_of(heads: bytes, sole_origin: bytes | None, sole_seq: int | None) -> bytes:
    if heads or sole_origin is None or sole_seq is None:
        return bytes(heads)
    return sole_head(bytes(sole_origin), sole_seq)


#: SQLite result codes (primary: the low byte of an extended code) that mean the disk or
#: file system under the store is full, failing or read-only. Retrying will not help
#: until someone acts, so they are not answered like a busy store.
_DISK_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY})
#: Another connection holds the file past ``busy_timeout`` (a backup tool, say).
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def storage_error(exc: sqlite3.Error, what: str = "store failed") -> StorageError:
    """The offsync error for an SQLite error: the one place they are mapped.

    A full or failing disk is ``StorageFullError`` (an operator must act), a file held
    by another connection ``StorageConflictError``, anything else ``StorageError``; the
    caller chains ``exc`` as the cause.
    """
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in _DISK_CODES:
        return StorageFullError(
            f"{what}: the disk under the store is full, failing or read-only ({exc});"
            " nothing was changed: free space or repair the disk, then try again"
        )
    if code in _BUSY_CODES:
        return StorageConflictError(f"{what}, nothing was changed: {exc}")
    return StorageError(f"{what}, nothing was changed: {exc}")


@contextmanager
def _mapped(what: str = "store failed") -> Iterator[None]:
    """Raise SQLite's errors from the block as offsync errors (``storage_error``)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise storage_error(exc, what) from exc


#: OS errors that mean the disk is full, failing or read-only.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT})
#: Where the lock sits in the lock file: past the text that names the owner, which
#: Windows (whose locks are mandatory) must let other processes read.
_LOCK_OFFSET = 1 << 20
#: The lock file holds one line naming its owner, no longer than this.
_OWNER_BYTES = 512


def _in_memory(path: str) -> bool:
    return path in ("", ":memory:") or path.startswith("file::memory:")


class OwnerLock:
    """An exclusive lock on ``<store>.lock``, held while one process has the store open
    for writing; the file names that process (pid, program, host, since when).

    ``fcntl.flock`` on Unix, ``msvcrt.locking`` on Windows. Both are released by the
    operating system when the process dies, so a crash never leaves a site locked. The
    file stays in place: removing it would let two processes lock two different files.
    """

    def __init__(self, store_path: str) -> None:
        # The real path: one file reached through a symlink or another directory name
        # must not get a second lock.
        self.path = os.path.realpath(store_path) + ".lock"
        self.fd: int | None = None
        self.pid = os.getpid()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as exc:
            raise _os_error(exc, f"cannot create the lock file {self.path}") from exc
        try:
            os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
            _try_lock(fd)
        except OSError as exc:
            owner = _read_owner(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                raise StorageError(
                    f"cannot lock {self.path} ({exc.strerror}): keep the replica on a local"
                    " disk whose file system supports locks"
                ) from exc
            raise StoreLockedError(_locked_message(store_path, owner)) from None
        self.fd = fd
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        program = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        line = f"pid {os.getpid()} ({program}) on {socket.gethostname()} since {started}\n"
        with contextlib.suppress(OSError):  # naming the owner is a courtesy: a full disk
            os.lseek(fd, 0, os.SEEK_SET)  # must not stop the store from opening
            os.ftruncate(fd, 0)
            os.write(fd, line.encode()[:_OWNER_BYTES])

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if os.getpid() == self.pid:  # a forked child shares the lock: it must not end it
            with contextlib.suppress(OSError):
                os.lseek(fd, _LOCK_OFFSET, os.SEEK_SET)
                _unlock(fd)
        os.close(fd)

    def __del__(self) -> None:
        # A store dropped without close() (garbage collected) frees its file too.
        self.release()


if sys.platform == "win32":  # pragma: no cover - field PCs; exercised on Windows
    import msvcrt

    def _try_lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _read_owner(fd: int) -> str:
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, _OWNER_BYTES).decode("utf-8", "replace").strip()
    return ""


def _locked_message(store_path: str, owner: str) -> str:
    mine = owner.startswith(f"pid {os.getpid()} ") and f" on {socket.gethostname()} " in owner
    if mine:
        return (
            f"{store_path} is already open in this process: use that Replica (it is"
            " thread-safe) or close it first"
        )
    return (
        f"{store_path} is open in another process ({owner or 'which one is not known'});"
        " a replica file has one owning process: reach the replica through that process"
        " (over HTTP, e.g. `offsync serve`, or in the application that has it open), or"
        " stop it first; Replica.open(..., read_only=True) may read it meanwhile"
    )


def _os_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in _DISK_ERRNOS:
        return StorageFullError(f"{what}: {exc.strerror}; free space or repair the disk")
    return StorageError(f"{what}: {exc.strerror}")


class SQLiteStore(Store):
    """``path``: the database file (``":memory:"`` for a store that lives and dies with
    this object). ``read_only``: read an existing store without locking or writing it,
    also while another process owns it; every ``transaction()`` raises ``UsageError``.
    """

    _nonces_purged = 0  # ms (the caller's clock) of the last sweep of expired nonces

    def __init__(self, path: str, *, synchronous: str = "NORMAL", read_only: bool = False) -> None:
        self._pid = os.getpid()
        self._path = path
        self._origin_ids: dict[bytes, int] = {}  # ``_origin_id``
        self._part_ids: dict[Partition, int] = {}  # ``_part_id``
        self._owner: OwnerLock | None = None
        self.read_only = read_only
        #: Schema versions this open upgraded the store to (``migrate``).
        self.migrated: list[int] = []
        if read_only:
            self._open_read_only(path)
            return
        if not _in_memory(path):
            self._owner = OwnerLock(path)
        try:
            self._open(path, synchronous)
        except BaseException:
            if self._owner is not None:
                self._owner.release()
            raise

    def _open_read_only(self, path: str) -> None:
        try:
            self.db = _connect_read_only(path)
            self.db.execute("PRAGMA query_only=1")
            version = self.get_meta("schema_version")
        except (sqlite3.Error, StorageError) as exc:
            raise StorageError(f"{path}: cannot read it as an offsync store ({exc})") from exc
        latest = schema_version()
        if version is None or int(version) != latest:
            self.db.close()
            if version is not None and int(version) < latest:
                raise StorageError(
                    f"{path}: store schema {int(version)}, this offsync uses {latest}: open it"
                    " for writing once to upgrade it in place (any offsync command that writes,"
                    " while no other process has it open), then read it"
                )
            raise StorageError(f"{path}: not an offsync store of schema {latest}")

    def _open(self, path: str, synchronous: str) -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise storage_error(exc, f"{path}: not a usable SQLite store") from exc
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.migrated = migrate(self.db, path)
        except BaseException as exc:
            self.db.close()
            if isinstance(exc, sqlite3.Error):
                raise storage_error(exc, f"{path}: not a usable SQLite store") from exc
            raise

    @contextmanager
    def _outermost(self) -> Iterator[None]:
        if os.getpid() != self._pid:
            raise StoreLockedError(
                f"this store was opened by process {self._pid}, and this process was"
                " forked from it: open the replica in the process that uses it"
            )
        with _mapped("cannot start a transaction"):
            self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            if not self.db.in_transaction:  # an error in the block was caught and ignored
                raise StorageError("SQLite rolled the transaction back; nothing was changed")
            self.db.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            mapped = self._storage_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc

    def _storage_error(self, exc: BaseException) -> BaseException:
        return storage_error(exc) if isinstance(exc, sqlite3.Error) else exc

    def _abandon(self) -> None:
        self._origin_ids, self._part_ids = {}, {}
        # On a full disk SQLite may have rolled back already; without a transaction
        # every later statement of the doomed block would commit on its own.
        if not self.db.in_transaction:
            with _mapped("cannot start a transaction"):
                self.db.execute("BEGIN IMMEDIATE")

    def _rollback(self) -> None:
        """Roll back what is left of a failed transaction.

        On a full disk or an I/O error SQLite has often rolled it back itself already,
        and a failing ROLLBACK must not replace the error that caused it.
        """
        self._origin_ids, self._part_ids = {}, {}
        if self.db.in_transaction:
            # If even that fails, the connection reports it at its next statement.
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")

    def probe(self) -> None:
        """On a read-only connection of its own (WAL lets it read beside a writer)."""
        if _in_memory(self._path):
            return
        try:
            db = _connect_read_only(self._path)
            try:
                row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise storage_error(exc, f"{self._path}: cannot read the store") from exc
        found = int(row[0]) if row is not None else None
        if found != schema_version():
            raise StorageError(
                f"{self._path}: store schema {found}, this offsync uses {schema_version()}"
            )

    def blobs(self, limits: Limits = DEFAULT_LIMITS) -> BlobStore:
        return SQLBlobStore(self, self._q, limits)

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            if self._owner is not None:
                self._owner.release()

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with _mapped():
            return self.db.execute(sql, args).fetchall()

    def get_meta(self, name: str) -> bytes | None:
        rows = self._q("SELECT value FROM meta WHERE name = ?", (name,))
        return bytes(rows[0][0]) if rows else None

    def set_meta(self, name: str, value: bytes) -> None:
        self._q("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def segment_index(self) -> list[IndexRow]:
        return [
            (stream_of(o, c, p), *rest)
            for o, c, p, *rest in self._q(
                "SELECT origin, collection, prefix, first_seq, last_seq, hash, prev_hash, status,"
                " length(data) FROM segments ORDER BY origin, collection, prefix, first_seq"
            )
        ]

    def add_segments(self, rows: Sequence[SegmentRow]) -> None:
        self.db.executemany(
            "INSERT INTO segments (origin, collection, prefix, first_seq, last_seq, hash,"
            " prev_hash, data, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(s[0], *s[1], *rest) for s, *rest in rows],
        )

    def segment_data(self, keys: Sequence[tuple[Stream, int]]) -> list[bytes]:
        # One query per stream (a bundle frames runs of a stream's segments), not one
        # per segment: a statement costs about as much as framing a segment.
        by_stream: dict[Stream, list[int]] = {}
        for stream, first in keys:
            by_stream.setdefault(stream, []).append(first)
        found: dict[tuple[Stream, int], bytes] = {}
        for stream, firsts in by_stream.items():
            origin, (collection, prefix) = stream
            for i in range(0, len(firsts), 500):
                chunk = firsts[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                for first, data in self._q(
                    "SELECT first_seq, data FROM segments WHERE origin = ? AND collection = ?"
                    f" AND prefix = ? AND first_seq IN ({marks})",
                    (origin, collection, prefix, *chunk),
                ):
                    found[stream, first] = bytes(data)
        try:
            return [found[key[0], key[1]] for key in keys]
        except KeyError:
            raise StorageError("segment vanished from the store") from None

    def set_segment_status(self, stream: Stream, first_seq: int, status: str) -> None:
        origin, (collection, prefix) = stream
        self._q(
            "UPDATE segments SET status = ?"
            " WHERE origin = ? AND collection = ? AND prefix = ? AND first_seq = ?",
            (status, origin, collection, prefix, first_seq),
        )

    def replace_segment_data(self, stream: Stream, first_seq: int, data: bytes) -> None:
        origin, (collection, prefix) = stream
        self._q(
            "UPDATE segments SET data = ?"
            " WHERE origin = ? AND collection = ? AND prefix = ? AND first_seq = ?",
            (data, origin, collection, prefix, first_seq),
        )

    def remove_segments(self, keys: Sequence[tuple[Stream, int]]) -> None:
        self.db.executemany(
            "DELETE FROM segments"
            " WHERE origin = ? AND collection = ? AND prefix = ? AND first_seq = ?",
            [(s[0], *s[1], first) for s, first in keys],
        )

    def drop_partition(self, partition: Partition, length: int) -> None:
        collection, prefix = partition
        part = (collection, prefix)
        self._q("DELETE FROM segments WHERE collection = ? AND prefix = ?", part)
        self._q(
            "DELETE FROM part_outbox WHERE part ="
            " (SELECT id FROM partitions WHERE collection = ? AND prefix = ?)",
            part,
        )
        # key[:L] == prefix, as the rule cuts (substr counts code points in TEXT, and
        # gives a key shorter than L whole: the partition of that key alone), within
        # the range of keys that start with the prefix, which the indexes find.
        where = "collection = ? AND key >= ? AND substr(key, 1, ?) = ?"
        args: tuple[str | int, ...] = (collection, prefix, length, prefix)
        upper = prefix_end(prefix)
        if upper is not None:
            where, args = where + " AND key < ?", (*args, upper)
        for table in ("changes", "records", "blob_refs"):
            self._q(f"DELETE FROM {table} WHERE {where}", args)

    # Format 2's one stream (WHOLE) keeps the outbox table it always had, keyed by seq
    # alone: a rowid append per write. Other partitions (format 3) share ``part_outbox``,
    # keyed by (partition id, seq): integers, the partition's names once in ``partitions``
    # (``PARTITION_IDS_SCHEMA``).

    def _part_id(self, partition: Partition, *, make: bool) -> int | None:
        """The integer ``partition`` is stored as in the outbox (made if ``make``, else
        None when it has none). Remembered once known, forgotten with a rollback like
        origin ids (``_origin_id``)."""
        known = self._part_ids.get(partition)
        if known is not None:
            return known
        collection, prefix = partition
        if make:
            self.db.execute(
                "INSERT OR IGNORE INTO partitions (collection, prefix) VALUES (?, ?)",
                (collection, prefix),
            )
        row = self.db.execute(
            "SELECT id FROM partitions WHERE collection = ? AND prefix = ?", (collection, prefix)
        ).fetchone()
        if row is None:
            return None
        self._part_ids[partition] = found = int(row[0])
        return found

    def add_outbox(self, partition: Partition, rows: Sequence[tuple[int, bytes]]) -> None:
        if partition == WHOLE:
            self.db.executemany("INSERT INTO outbox (seq, data) VALUES (?, ?)", rows)
            return
        part = self._part_id(partition, make=True)
        self.db.executemany(
            f"INSERT INTO part_outbox (part, seq, data) VALUES ({part}, ?, ?)", rows
        )

    def outbox(self, partition: Partition = WHOLE) -> list[tuple[int, bytes]]:
        if partition == WHOLE:
            return self._q("SELECT seq, data FROM outbox ORDER BY seq")
        part = self._part_id(partition, make=False)
        if part is None:
            return []
        return self._q("SELECT seq, data FROM part_outbox WHERE part = ? ORDER BY seq", (part,))

    def outbox_page(
        self, partition: Partition, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        if partition == WHOLE:
            return self._q(
                "SELECT seq, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        part = self._part_id(partition, make=False)
        if part is None:
            return []
        return self._q(
            "SELECT seq, data FROM part_outbox WHERE part = ? AND seq > ? ORDER BY seq LIMIT ?",
            (part, after_seq, limit),
        )

    def outbox_partitions(self) -> list[Partition]:
        parts = [
            new_partition(c, p)
            for c, p in self._q(
                "SELECT collection, prefix FROM partitions"
                " WHERE EXISTS (SELECT 1 FROM part_outbox WHERE part = partitions.id)"
                " ORDER BY 1, 2"
            )
        ]
        if self._q("SELECT 1 FROM outbox LIMIT 1"):
            parts.insert(0, WHOLE)
        return parts

    def clear_outbox(self, partition: Partition, upto_seq: int) -> None:
        if partition != WHOLE:
            part = self._part_id(partition, make=False)
            if part is not None:
                self._q("DELETE FROM part_outbox WHERE part = ? AND seq <= ?", (part, upto_seq))
        elif self._q("SELECT 1 FROM outbox WHERE seq > ? LIMIT 1", (upto_seq,)):
            self._q("DELETE FROM outbox WHERE seq <= ?", (upto_seq,))
        else:  # all of it: without a WHERE clause SQLite drops the pages, not row by row
            self._q("DELETE FROM outbox")

    def add_changes(self, changes: Sequence[Change]) -> None:
        rows = [
            (
                c.collection,
                c.key,
                c.origin,
                c.seq,
                c.hlc,
                c.op,
                c.fields,
                pack_ids(c.parents) if c.parents else None,
            )
            for c in changes
        ]
        rows.sort(key=_key_of)  # stable: of two rows for one change, the first stays
        self.db.executemany(
            "INSERT OR IGNORE INTO changes (collection, key, origin, seq, hlc, op, fields, parents)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    def remove_changes(self, changes: Sequence[Change]) -> None:
        ids = [(c.collection, c.key, c.origin, c.seq) for c in changes]
        self.db.executemany(
            "DELETE FROM changes WHERE collection = ? AND key = ? AND origin = ? AND seq = ?", ids
        )
        self.db.executemany(
            "UPDATE records SET sole_origin = NULL, sole_seq = NULL, sole_hlc = NULL"
            " WHERE collection = ? AND key = ? AND sole_seq = ?"
            " AND sole_origin = (SELECT id FROM origins WHERE origin = ?)",
            [(c, k, s, o) for c, k, o, s in ids],
        )

    def changes_for(self, collection: str, key: str) -> list[Change]:
        rows = self._q(
            "SELECT origin, seq, hlc, op, fields, parents FROM changes"
            " WHERE collection = ? AND key = ?"
            " UNION ALL SELECT origins.origin, sole_seq, sole_hlc, fields IS NULL, fields, NULL"
            " FROM records JOIN origins ON origins.id = sole_origin"
            " WHERE collection = ? AND key = ?",
            (collection, key, collection, key),
        )
        out: dict[tuple[bytes, int], Change] = {}
        for o, s, h, op, f, p in rows:
            o = bytes(o)
            if (o, s) not in out:  # a sole change also added with add_changes: once
                out[o, s] = Change(
                    o,
                    s,
                    h,
                    collection,
                    key,
                    op,
                    None if f is None else bytes(f),
                    unpack_ids(p),
                )
        return list(out.values())

    def existing(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            where = " OR ".join(["(collection = ? AND key = ?)"] * len(chunk))
            args = [x for k in chunk for x in k]
            found.update(
                (c, k)
                for c, k in self._q(f"SELECT collection, key FROM records WHERE {where}", args)
            )
        return found

    def put_records(self, rows: Sequence[RecordRow]) -> None:
        ordered = sorted(rows, key=_key_of)  # stable: of two rows for one record, the last wins
        self.db.executemany(_MATERIALIZE, [(r.collection, r.key) for r in ordered])
        self.db.executemany(
            "INSERT OR REPLACE INTO records (collection, key, fields, heads, conflict) VALUES (?, ?, ?, ?, ?)",
            ordered,
        )
        # The index follows: the references these records held go, theirs now come.
        if self._q("SELECT 1 FROM blob_refs LIMIT 1"):
            self.db.executemany(
                "DELETE FROM blob_refs WHERE collection = ? AND key = ?",
                [(r.collection, r.key) for r in ordered],
            )
        latest = {(r.collection, r.key): r.fields for r in ordered}
        self._index_refs((c, k, f) for (c, k), f in latest.items())

    def _index_refs(self, items: Iterator[tuple[str, str, bytes | None]]) -> None:
        """Add the references of records just written to the index (``blob_refs``)."""
        self.db.executemany(_INSERT_REF, _ref_params(items))

    def add_new_records(self, rows: Sequence[RecordRow]) -> list[tuple[str, str]]:
        # One statement in the common case: insert all, skipping records that exist. Only
        # if some were skipped, read back which: a row whose heads differ from ours was
        # there before (one that holds exactly our row, head and all, counts as written).
        ordered = sorted(rows, key=_key_of)
        inserted = self.db.executemany(
            "INSERT INTO records (collection, key, fields, heads, conflict)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ordered,
        ).rowcount
        if inserted == len(rows):
            self._index_refs((r.collection, r.key, r.fields) for r in ordered)
            return []
        held = self._heads([(r.collection, r.key) for r in ordered])
        left = [(r.collection, r.key) for r in ordered if held[r.collection, r.key] != r.heads]
        skip = set(left)
        self._index_refs(
            (r.collection, r.key, r.fields) for r in ordered if (r.collection, r.key) not in skip
        )
        return left

    def add_first_changes(self, changes: Sequence[Change]) -> list[tuple[str, str]]:
        # The change is kept in its record's row (sole_*), not in ``changes``: one row
        # written per change instead of two; its origin as a small integer (``origins``),
        # and its heads left empty (they are [sole], derived when read). ``changes_for``
        # reads the change from there, and ``put_records`` moves it to ``changes`` before
        # the row is ever replaced.
        if not changes:
            return []
        inserted = 0
        if len(changes) == 1:  # a local put, one at a time: no sorting or grouping
            c = changes[0]
            inserted = self.db.execute(
                _INSERT_FIRST,
                (c.collection, c.key, c.fields, self._origin_id(c.origin), c.seq, c.hlc),
            ).rowcount
            origins: set[bytes] = set()
        else:
            origins = set(map(_ORIGIN, changes))
        for origin in sorted(origins):
            part = changes if len(origins) == 1 else [c for c in changes if c.origin == origin]
            inserted += self.db.executemany(
                "INSERT INTO records"
                " (collection, key, fields, heads, conflict, sole_origin, sole_seq, sole_hlc)"
                f" VALUES (?, ?, ?, x'', 0, {self._origin_id(origin)}, ?, ?)"
                " ON CONFLICT DO NOTHING",
                sorted(map(_FIRST_PARAMS, part), key=_key_of),
            ).rowcount
        marked = [c for c in changes if c.fields is not None and BLOB_MARK in c.fields]
        if inserted == len(changes):
            self._index_refs((c.collection, c.key, c.fields) for c in marked)
            return []
        held = self._heads([(c.collection, c.key) for c in changes])
        existed = {
            (c.collection, c.key)
            for c in changes
            if held[c.collection, c.key] != sole_head(c.origin, c.seq)
        }
        self._index_refs(
            (c.collection, c.key, c.fields) for c in marked if (c.collection, c.key) not in existed
        )
        self.add_changes([c for c in changes if (c.collection, c.key) in existed])
        return [(c.collection, c.key) for c in changes if (c.collection, c.key) in existed]

    def try_first_change(self, change: Change) -> bool:
        c = change
        params = (c.collection, c.key, c.fields, self._origin_id(c.origin), c.seq, c.hlc)
        if int(self.db.execute(_INSERT_FIRST, params).rowcount) != 1:
            return False
        if c.fields is not None and BLOB_MARK in c.fields:  # (an executemany costs 10 µs)
            self._index_refs(iter([(c.collection, c.key, c.fields)]))
        return True

    def _origin_id(self, origin: bytes) -> int:
        """The small integer ``origin`` is stored as. Remembered once known: an id never
        changes, but one made in a transaction that rolls back is forgotten with it
        (``_rollback``), as the row is."""
        known = self._origin_ids.get(origin)
        if known is not None:
            return known
        self.db.execute("INSERT OR IGNORE INTO origins (origin) VALUES (?)", (origin,))
        found = int(
            self.db.execute("SELECT id FROM origins WHERE origin = ?", (origin,)).fetchone()[0]
        )
        self._origin_ids[origin] = found
        return found

    def _heads(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        found: dict[tuple[str, str], bytes] = {}
        for i in range(0, len(keys), 400):
            chunk = keys[i : i + 400]
            where = " OR ".join(["(collection = ? AND key = ?)"] * len(chunk))
            args = [x for k in chunk for x in k]
            for c, k, h, o, q in self._q(
                f"SELECT collection, key, {_HEADS} FROM records WHERE {where}", args
            ):
                found[c, k] = _heads_of(h, o, q)
        return found

    def get_record(self, collection: str, key: str) -> RecordRow | None:
        rows = self._q(
            f"SELECT fields, {_HEADS}, conflict FROM records WHERE collection = ? AND key = ?",
            (collection, key),
        )
        if not rows:
            return None
        f, h, o, q, c = rows[0]
        return RecordRow(
            collection, key, None if f is None else bytes(f), _heads_of(h, o, q), bool(c)
        )

    def iter_records(self, collection: str | None = None) -> Iterator[RecordRow]:
        sql = f"SELECT collection, key, fields, {_HEADS}, conflict FROM records"
        args: tuple[str, ...] = ()
        if collection is not None:
            sql += " WHERE collection = ?"
            args = (collection,)
        # TEXT compares with memcmp over UTF-8 under the default BINARY collation.
        with _mapped():
            cur = self.db.execute(sql + " ORDER BY collection, key", args)
            for c, k, f, h, o, q, x in cur:
                yield RecordRow(c, k, None if f is None else bytes(f), _heads_of(h, o, q), bool(x))

    def conflicted(self) -> list[tuple[str, str]]:
        return self._q(
            "SELECT collection, key FROM records WHERE conflict ORDER BY collection, key"
        )

    def blob_refs(self, collection: str | None = None, key: str | None = None) -> list[BlobRefRow]:
        if key is not None and collection is None:
            return super().blob_refs(collection, key)  # refuses it
        where, args = "", [c for c in (collection, key) if c is not None]
        if args:
            where = " WHERE collection = ?" + (" AND key = ?" if key is not None else "")
        return _ref_rows(
            self._q(f"SELECT {_REF_COLUMNS} FROM blob_refs{where} ORDER BY {_REF_COLUMNS}", args)
        )

    def missing_blob_refs(self) -> list[BlobRefRow]:
        # The partial index holds only references whose blob is not here: this reads
        # what is missing, not every reference (nor every record).
        return _ref_rows(
            self._q(f"SELECT {_REF_COLUMNS} FROM blob_refs WHERE NOT held ORDER BY {_REF_COLUMNS}")
        )

    def blob_ref_page(
        self, after: bytes | None, limit: int, *, missing: bool = False
    ) -> list[BlobRef]:
        # The hash index (its entries end with the key's other columns) gives the order.
        held = " AND NOT held" if missing else ""
        rows = self._q(
            f"SELECT hash, size, media_type FROM blob_refs WHERE hash > ?{held}"
            " ORDER BY hash, collection, key, size, media_type LIMIT ?",
            (after or b"", limit),
        )
        return [BlobRef(bytes(h), int(n), m) for h, n, m in rows]

    def blob_ref_rows(self, after: BlobRefRow | None, limit: int) -> list[BlobRefRow]:
        where, args = "", []
        if after is not None:  # keyset: the primary key's order is the rows' order
            where = f" WHERE ({_REF_COLUMNS}) > (?, ?, ?, ?, ?)"
            args = [after[0], after[1], after[2].hash, after[2].size, after[2].media_type]
        return _ref_rows(
            self._q(
                f"SELECT {_REF_COLUMNS} FROM blob_refs{where} ORDER BY {_REF_COLUMNS} LIMIT ?",
                [*args, limit],
            )
        )

    def blob_ref_records(self, hashes: Sequence[bytes]) -> list[tuple[str, str, BlobRef, bytes]]:
        out: list[tuple[str, str, BlobRef, bytes]] = []
        wanted = sorted(set(hashes))
        for i in range(0, len(wanted), 400):
            chunk = wanted[i : i + 400]
            marks = ", ".join("?" * len(chunk))
            rows = self._q(
                "SELECT b.collection, b.key, b.hash, b.size, b.media_type, r.heads,"
                " (SELECT origin FROM origins WHERE id = r.sole_origin), r.sole_seq"
                " FROM blob_refs b JOIN records r ON r.collection = b.collection"
                f" AND r.key = b.key WHERE b.hash IN ({marks})",
                chunk,
            )
            out += [
                (c, k, BlobRef(bytes(h), int(n), m), _heads_of(hd, o, q))
                for c, k, h, n, m, hd, o, q in rows
            ]
        return out

    def first_blob_ref(self, digest: bytes) -> BlobRef | None:
        rows = self._q(
            "SELECT hash, size, media_type FROM blob_refs WHERE hash = ?"
            " ORDER BY collection, key, size, media_type LIMIT 1",
            (bytes(digest),),
        )
        return next((BlobRef(bytes(h), int(n), m) for h, n, m in rows), None)

    def referenced_blobs(self, hashes: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        wanted = sorted(set(hashes))
        for i in range(0, len(wanted), 400):
            chunk = wanted[i : i + 400]
            marks = ", ".join("?" * len(chunk))
            found.update(
                bytes(h)
                for (h,) in self._q(
                    f"SELECT DISTINCT hash FROM blob_refs WHERE hash IN ({marks})", chunk
                )
            )
        return found

    def set_peer(self, peer: bytes, created: int, knowledge: bytes, receipt: bytes) -> None:
        self._q(
            "INSERT INTO peers (peer, created, knowledge, receipt) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (peer) DO UPDATE SET created = excluded.created,"
            " knowledge = excluded.knowledge, receipt = excluded.receipt"
            " WHERE excluded.created > peers.created",
            (peer, created, knowledge, receipt),
        )

    def peers(self) -> list[tuple[bytes, int, bytes, bytes]]:
        return [(bytes(p), c, bytes(k), bytes(r)) for p, c, k, r in self._q("SELECT * FROM peers")]

    def peer(self, peer: bytes) -> tuple[bytes, int, bytes, bytes] | None:
        rows = self._q(
            "SELECT peer, created, knowledge, receipt FROM peers WHERE peer = ?", (bytes(peer),)
        )
        return next(((bytes(p), c, bytes(k), bytes(r)) for p, c, k, r in rows), None)

    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        with self.transaction():
            if now - self._nonces_purged >= NONCE_SWEEP_MS:  # not on every call
                self._q("DELETE FROM http_nonces WHERE expires < ?", (now,))
                self._nonces_purged = now
            # Inserted, or an expired record of it taken over: one changed row either way.
            changed = self.db.execute(
                "INSERT INTO http_nonces (nonce, expires) VALUES (?, ?) ON CONFLICT (nonce)"
                " DO UPDATE SET expires = excluded.expires WHERE http_nonces.expires < ?",
                (bytes(nonce), expires, now),
            ).rowcount
        return changed == 1


# -- schema versions and migrations --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the store's schema, from ``version - 1`` to ``version``.

    ``run(db, path)`` changes the store through ``db`` inside the transaction the runner
    opened for this step alone (which also records ``version``), or raises
    ``StorageError`` to refuse, saying what to do: then nothing of the step is kept and
    the store stays at the version before it. Never edit a released step: add the next.
    """

    version: int
    name: str
    run: Callable[[sqlite3.Connection, str], None]


def _refuse_format_1(db: sqlite3.Connection, path: str) -> None:
    raise StorageError(
        f"{path}: store schema {_stored_version(db)} holds changes in wire format 1, which"
        " this offsync (format 2) cannot read; sync it to a peer with the offsync that wrote"
        " it, then start a new store and sync it back"
    )


def _create(db: sqlite3.Connection, script: str) -> None:
    """Run ``script``'s statements inside the step's transaction (``executescript``
    would commit it first)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _index_blob_refs(db: sqlite3.Connection) -> None:
    """Schema 5: create the reference index and fill it from the records held (only
    those whose field bytes hold ``BLOB_MARK`` are decoded)."""
    _create(db, SQLITE_BLOB_REFS)
    rows = db.execute(
        "SELECT collection, key, fields FROM records"
        " WHERE fields IS NOT NULL AND instr(fields, ?) > 0",
        (BLOB_MARK,),
    ).fetchall()
    params = _ref_params(iter((c, k, bytes(f)) for c, k, f in rows))
    db.executemany(_INSERT_REF, params)


#: Tables that hold changes, sealed or not: what a change of wire format cannot convert.
_CHANGE_TABLES = ("segments", "outbox", "part_outbox", "changes", "records")


def format_barrier(version: int, name: str, *, old: int, new: int) -> Migration:
    """The step to a schema of a new wire format, which cannot convert segments in place.

    Segments are signed by their origins over their encoded bytes, so no release can
    rewrite them in a new format: a store that holds changes is refused with the way
    out (deliver everything with the old offsync, then start an empty store that takes
    it all back from a peer, as after a restore); an empty store just moves on.
    """

    def run(db: sqlite3.Connection, path: str) -> None:
        for table in _CHANGE_TABLES:
            if db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                raise StorageError(
                    f"{path}: this store holds changes in wire format {old}, which this"
                    f" offsync (format {new}) cannot convert in place; nothing was changed."
                    " With the offsync that wrote it, sync until a peer (the district or the"
                    " centre) holds everything this site wrote (`offsync status`: nothing"
                    " pending of ours); then move the store aside and start an empty one"
                    " with this offsync (`offsync restore --from-peers`): it takes everything"
                    " back from that peer before it writes (docs/operations.md, 'Upgrading')"
                )

    return Migration(version, name, run)


#: Schema 6: segments keyed by stream, (origin, collection, prefix, first_seq), and an
#: outbox for own streams other than format 2's: format 3's streams. A format-2 stream
#: is the WHOLE partition, ('', ''), which no format-3 partition is (a collection name
#: is never empty), so the segments held move there unchanged (SQLite cannot change a
#: primary key in place: the table is copied, once; segments are most of a store).
#: WHOLE's own changes stay in ``outbox`` (seq INTEGER PRIMARY KEY): one key of three
#: columns there cost local writes about 8% CPU (docs/design.md, step 2a).
STREAMS_SCHEMA = """
CREATE TABLE segments_streams (
    origin BLOB NOT NULL, collection TEXT NOT NULL, prefix TEXT NOT NULL,
    first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, hash BLOB NOT NULL,
    prev_hash BLOB NOT NULL, data BLOB NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (origin, collection, prefix, first_seq)) WITHOUT ROWID;
INSERT INTO segments_streams
    SELECT origin, '', '', first_seq, last_seq, hash, prev_hash, data, status FROM segments;
DROP TABLE segments;
ALTER TABLE segments_streams RENAME TO segments;
CREATE TABLE partition_outbox (
    collection TEXT NOT NULL, prefix TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (collection, prefix, seq)) WITHOUT ROWID;
"""

#: Schema 7: the outbox of format-3 partitions keyed by integers, (partition id, seq),
#: the partitions' names once each in ``partitions``: a key of two text columns and a
#: seq cost local writes about 8% CPU (docs/design.md, step 2a). Rows move over in
#: place; ids are given in the order of the names.
PARTITION_IDS_SCHEMA = """
CREATE TABLE partitions (
    id INTEGER PRIMARY KEY, collection TEXT NOT NULL, prefix TEXT NOT NULL,
    UNIQUE (collection, prefix));
INSERT INTO partitions (collection, prefix)
    SELECT DISTINCT collection, prefix FROM partition_outbox ORDER BY 1, 2;
CREATE TABLE part_outbox (
    part INTEGER NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (part, seq)) WITHOUT ROWID;
INSERT INTO part_outbox (part, seq, data)
    SELECT p.id, o.seq, o.data FROM partition_outbox o
    JOIN partitions p ON p.collection = o.collection AND p.prefix = o.prefix;
DROP TABLE partition_outbox
"""

#: Every step, in order. Schemas 1 and 2 were wire format 1 (never released); schema 3
#: is ``SCHEMA``; schema 4 adds the blob tables, schema 5 the index of the blob
#: references records hold, schema 6 keys segments by stream and adds the outbox of
#: format-3 partitions (``STREAMS_SCHEMA``), schema 7 keys that outbox by partition id
#: (``PARTITION_IDS_SCHEMA``). The next change of the schema is ``Migration(8, ...)`` here,
#: and the next wire format a ``format_barrier``.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "format_1_schema_2", _refuse_format_1),
    Migration(3, "format_2", _refuse_format_1),
    Migration(4, "blobs", lambda db, path: _create(db, SQLITE_BLOBS)),
    Migration(5, "blob_refs", lambda db, path: _index_blob_refs(db)),
    Migration(6, "streams", lambda db, path: _create(db, STREAMS_SCHEMA)),
    Migration(7, "partition_ids", lambda db, path: _create(db, PARTITION_IDS_SCHEMA)),
)
#: The schema this offsync writes (the last step; ``schema_version()`` reads it anew).
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version() -> int:
    """The schema this offsync writes: the version of the last step of ``MIGRATIONS``."""
    return MIGRATIONS[-1].version


def _stored_version(db: sqlite3.Connection) -> int | None:
    """The store's schema, or None for a database that holds no offsync store yet."""
    if not db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone():
        return None
    row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return None if row is None else int(bytes(row[0]))


@contextmanager
def _step(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def _set_version(db: sqlite3.Connection, version: int) -> None:
    db.execute(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)",
        (str(version).encode(),),
    )


def migrate(db: sqlite3.Connection, path: str = "") -> list[int]:
    """Create the store behind ``db``, or bring it up to ``schema_version()``.

    Returns the versions applied now (none when it was current). A new store gets
    ``SCHEMA`` and then every later step, like an old one. Each step runs in a
    transaction of its own: a step that fails or refuses leaves the store at the
    version before it, with the steps before it kept. A store of a newer schema than
    this offsync knows is refused, unchanged. ``path`` names the store in messages.
    """
    latest = schema_version()
    steps = {m.version: m for m in MIGRATIONS}
    with _step(db):
        version = _stored_version(db)
        if version is None:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            _set_version(db, BASELINE_SCHEMA)
            version = BASELINE_SCHEMA
    if version > latest:
        raise StorageError(
            f"{path}: store schema {version} was written by a newer offsync (this one"
            f" knows schemas up to {latest}); nothing was changed: run that offsync or a"
            " newer one, or restore a backup taken before the upgrade"
        )
    applied: list[int] = []
    for target in range(version + 1, latest + 1):
        step = steps.get(target)
        if step is None:
            raise StorageError(f"{path}: this offsync has no step from schema {target - 1}")
        with _step(db):
            step.run(db, path)
            _set_version(db, target)
        applied.append(target)
    return applied


def pending_migrations(path: str | os.PathLike[str]) -> list[Migration]:
    """The steps that opening the store at ``path`` for writing would run (none for a
    current, newer or missing store), read without locking or changing it: so that a
    caller can back the store up first (the ``offsync`` command does)."""
    if not os.path.exists(path):
        return []
    try:
        db = _connect_read_only(os.fspath(path))
        try:
            version = _stored_version(db)
        finally:
            db.close()
    except (sqlite3.Error, ValueError) as exc:
        raise StorageError(
            f"{os.fspath(path)}: cannot read it as an offsync store ({exc})"
        ) from exc
    if version is None:
        return []
    return [m for m in MIGRATIONS if m.version > version]


def _connect_read_only(path: str) -> sqlite3.Connection:
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=30000")
    return db


# -- backups -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupReport:
    """A store copy that was checked: what ``backup`` wrote, or ``check_backup`` found."""

    path: str
    #: Size of the copy in bytes.
    size: int
    schema_version: int
    #: ``Replica.state_digest()`` of the copy (the source's at the moment of the copy);
    #: None for a store of another schema than this offsync's.
    state_digest: bytes | None
    #: Rows per table.
    rows: Mapping[str, int]
    #: The public key of the replica the store belongs to (None: no replica in it yet).
    identity: bytes | None
    #: How many changes of its own the replica had issued (``Replica.seq``: the sum
    #: over its own streams).
    seq: int


def _state_digest(db: sqlite3.Connection) -> bytes:
    """``Replica.state_digest`` computed from the rows, without a replica or its key."""
    h = hashlib.blake2b(b"offsync/state/v1\x00", digest_size=32)
    cur = db.execute(
        "SELECT collection, key, fields FROM records WHERE fields IS NOT NULL"
        " ORDER BY collection, key"
    )
    for collection, key, fields in cur:
        h.update(packb([collection, key, bytes(fields)]))
    return h.digest()


def _describe(db: sqlite3.Connection, path: str) -> BackupReport:
    """What the store behind ``db`` holds, in the read transaction it is in."""
    version = _stored_version(db)
    if version is None:
        raise StorageError(f"{path}: not an offsync store (no schema version)")
    tables = [
        name
        for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    rows = {t: int(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    meta = dict(db.execute("SELECT name, value FROM meta WHERE name = 'identity'"))
    return BackupReport(
        path,
        os.path.getsize(path) if os.path.exists(path) else 0,
        version,
        _state_digest(db) if version == schema_version() else None,
        rows,
        bytes(meta["identity"]) if "identity" in meta else None,
        issued_seq(db),
    )


def issued_seq(db: sqlite3.Connection) -> int:
    """How many changes the replica of the store behind ``db`` has issued: the sum of
    its own streams' seq counters (``segindex.own_meta``: "seq" is format 2's one
    stream, "seq:<collection>:<prefix>" a format-3 stream's), as ``Replica.seq``."""
    rows = db.execute("SELECT value FROM meta WHERE name = 'seq' OR substr(name, 1, 4) = 'seq:'")
    return sum(int(bytes(value) or b"0") for (value,) in rows)


def check_backup(
    path: str | os.PathLike[str], expected: BackupReport | None = None
) -> BackupReport:
    """Open a store copy read-only and check it: SQLite's ``integrity_check``, an offsync
    schema, and (given ``expected``) the same schema, rows per table, replica and state
    digest. Raises ``StorageError`` saying what is wrong."""
    where = os.fspath(path)
    if not os.path.isfile(where):
        raise StorageError(f"{where}: no such store copy")
    try:
        db = _connect_read_only(where)
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
            if problems != ["ok"]:
                raise StorageError(
                    f"{where}: the copy is damaged ({'; '.join(problems[:3])}); nothing was"
                    " restored from it: use another backup"
                )
            db.execute("BEGIN")
            found = _describe(db, where)
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{where}: cannot read it as an offsync store ({exc})") from exc
    if expected is not None:
        wanted = (
            expected.schema_version,
            dict(expected.rows),
            expected.identity,
            expected.state_digest,
        )
        got = (found.schema_version, dict(found.rows), found.identity, found.state_digest)
        if wanted != got:
            raise StorageError(
                f"{where}: the copy differs from its source (schema, rows, replica or state"
                " digest); it was not kept"
            )
    return found


def _fsync(path: str, *, directory: bool = False) -> None:
    if directory and sys.platform == "win32":  # pragma: no cover - no directory fsync there
        return
    fd = os.open(path, (os.O_RDONLY if directory else os.O_RDWR) | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> BackupReport:
    """Copy the store at ``src`` to the new file ``dest``, consistently, and check the copy.

    Uses SQLite's online backup API over a read-only connection, so it takes no lock and
    works while another process owns and writes the store (``offsync serve``): the copy
    is the store at one moment, in one read transaction. It is written under a temporary
    name beside ``dest``, made a single file (no ``-wal``), flushed to disk, opened
    read-only and checked against the source as it was at that moment
    (``check_backup``: integrity, schema, rows, state digest), and only then renamed to
    ``dest``. ``dest`` must not exist; a failure leaves nothing at ``dest``.
    """
    source, target = os.fspath(src), os.fspath(dest)
    if not os.path.isfile(source):
        raise StorageError(f"{source}: no such store")
    if os.path.lexists(target):
        raise UsageError(f"{target} exists already: a backup never overwrites, choose a new name")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: no such directory")
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}.part")
    try:
        db = _connect_read_only(source)
        try:
            db.execute("BEGIN")  # one snapshot for the description and the copy
            before = _describe(db, source)
            copy = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                copy.close()
            db.execute("COMMIT")
        finally:
            db.close()
        _fsync(tmp)
        done = check_backup(tmp, before)
        os.replace(tmp, target)
        _fsync(folder, directory=True)
    except sqlite3.Error as exc:
        _remove(tmp)
        raise storage_error(exc, f"backing up {source} failed") from exc
    except OSError as exc:
        _remove(tmp)
        raise _os_error(exc, f"backing up {source} to {target} failed") from exc
    except BaseException:
        _remove(tmp)
        raise
    return dataclasses.replace(done, path=target)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
