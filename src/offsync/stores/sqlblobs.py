"""Blobs in tables of the store's own database: SQLite and PostgreSQL alike.

Two tables (SQLite schema 4, PostgreSQL ``migrations/0004_blobs.sql``): ``blobs`` (hash, size, complete,
created) and ``blob_chunks`` (hash, pos, data), one row per chunk of at most
``blob_chunk_bytes``. Each call runs in the store's transaction, so a crash keeps a
chunk whole or not at all, and a blob is visible only once ``complete`` is set in the
transaction after its bytes were checked. Why rows and not files beside the database:
docs/design.md, "Blobs".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..limits import Limits
from .base import Store
from .blobs import BlobInfo, BlobStore

__all__ = ["SQLITE_BLOBS", "SQLITE_BLOB_REFS", "SQLBlobStore"]

#: SQLite schema 4. A rowid table for the chunks: rows of a few hundred KB belong in
#: overflow pages, not in the b-tree of a WITHOUT ROWID table.
SQLITE_BLOBS = """
CREATE TABLE IF NOT EXISTS blobs (
    hash BLOB PRIMARY KEY, size INTEGER NOT NULL, complete INTEGER NOT NULL,
    created INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_chunks (
    hash BLOB NOT NULL, pos INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (hash, pos));
"""


#: SQLite schema 5: the reference index (docs/design.md, "Blobs"). One row per distinct
#: reference of a visible record, written with the record; ``held`` says whether the
#: blob is here whole, kept by ``SQLBlobStore`` as blobs complete and go, so that the
#: missing references are read from a partial index, however many records there are.
SQLITE_BLOB_REFS = """
CREATE TABLE IF NOT EXISTS blob_refs (
    collection TEXT NOT NULL, key TEXT NOT NULL, hash BLOB NOT NULL, size INTEGER NOT NULL,
    media_type TEXT NOT NULL, held INTEGER NOT NULL,
    PRIMARY KEY (collection, key, hash, size, media_type)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blob_refs_hash ON blob_refs (hash);
CREATE INDEX IF NOT EXISTS blob_refs_missing ON blob_refs (collection, key) WHERE NOT held;
"""


class SQLBlobStore(BlobStore):
    """``BlobStore`` on a ``Store``'s connection: ``query(sql, args) -> rows`` with
    ``?`` placeholders (rewritten to ``%s`` when ``style`` is ``"format"``)."""

    def __init__(
        self,
        store: Store,
        query: Callable[[str, Sequence[Any]], list[Any]],
        limits: Limits,
        *,
        style: str = "qmark",
    ) -> None:
        super().__init__(limits)
        self._store = store
        self._query = query
        self._format = style == "format"

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._query(sql.replace("?", "%s") if self._format else sql, args)

    def _tx(self) -> AbstractContextManager[None]:
        return self._store.transaction()

    def _info(self, digest: bytes) -> BlobInfo | None:
        rows = self._q("SELECT size, complete, created FROM blobs WHERE hash = ?", (digest,))
        if not rows:
            return None
        size, complete, created = rows[0]
        return BlobInfo(bytes(digest), int(size), bool(complete), int(created))

    def _add(self, info: BlobInfo) -> None:
        self._q(
            "INSERT INTO blobs (hash, size, complete, created) VALUES (?, ?, ?, ?)",
            (info.hash, info.size, info.complete, info.created),
        )

    def _put_chunk(self, digest: bytes, pos: int, data: bytes) -> None:
        self._q("DELETE FROM blob_chunks WHERE hash = ? AND pos = ?", (digest, pos))
        self._q("INSERT INTO blob_chunks (hash, pos, data) VALUES (?, ?, ?)", (digest, pos, data))

    def _spans(self, digest: bytes) -> list[tuple[int, int]]:
        rows = self._q(
            "SELECT pos, length(data) FROM blob_chunks WHERE hash = ? ORDER BY pos", (digest,)
        )
        return [(int(p), int(n)) for p, n in rows]

    def _chunk(self, digest: bytes, pos: int) -> bytes:
        rows = self._q("SELECT data FROM blob_chunks WHERE hash = ? AND pos = ?", (digest, pos))
        return bytes(rows[0][0]) if rows else b""

    def _complete(self, digest: bytes) -> None:
        self._q("UPDATE blobs SET complete = ? WHERE hash = ?", (True, digest))
        self._q("UPDATE blob_refs SET held = ? WHERE hash = ?", (True, digest))

    def _drop(self, digests: list[bytes]) -> None:
        for d in digests:
            self._q("DELETE FROM blob_chunks WHERE hash = ?", (d,))
            self._q("DELETE FROM blobs WHERE hash = ?", (d,))
            self._q("UPDATE blob_refs SET held = ? WHERE hash = ? AND held", (False, d))

    def _all(self) -> list[BlobInfo]:
        rows = self._q("SELECT hash, size, complete, created FROM blobs")
        return [BlobInfo(bytes(h), int(s), bool(c), int(t)) for h, s, c, t in rows]
