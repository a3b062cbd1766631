"""Applying a bundle holds a chunk of its changes, not all of them (issue 14: the courier
backlog's record round, a 16 MiB bundle of ID-card recordings with 14 blob references
each). Driven with a small ``APPLY_CHUNK_BYTES`` on a SQLite store whose connection
records the most rows any one write was handed at once: an apply that decodes the whole
bundle before writing, or a reference index written from one list per chunk, fails
here, without measuring memory or time."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sized
from pathlib import Path
from typing import Any, cast

import pytest

import offsync.plan.seal as seal_plan
import offsync.replica.applying as applying
from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.encoding import canonical_fields
from offsync.stores.sqlite import SQLiteStore

A = Identity(bytes([1]) * 32, "district")
B = Identity(bytes([2]) * 32, "centre")
RECORDINGS = 120
REFS = 14
BUDGET = 20_000  # bytes: a dozen or so recordings of ~1 KB of fields
PER_SEGMENT = 10


class Watched:
    """An SQLite connection that remembers the most rows one ``executemany`` was handed
    as a list (rows passed as an iterator are taken one at a time: they count 0)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self.most = 0
        self.writes = 0

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        self.writes += 1
        if isinstance(rows, Sized):
            self.most = max(self.most, len(rows))
        return self._db.executemany(sql, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def recording(i: int) -> dict[str, Any]:
    fields: dict[str, Any] = {"nik": f"3519{i:012d}"}
    for j in range(REFS):
        fields[f"f{j}"] = BlobRef(bytes([i % 256, j]) * 16, 15_000, "image/x-wsq").field()
    return fields


@pytest.mark.parametrize("grouped", [False, True])
def test_a_bundle_of_reference_heavy_records_is_written_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grouped: bool
) -> None:
    monkeypatch.setattr(seal_plan, "SEGMENT_MAX_CHANGES", PER_SEGMENT)
    sender = Replica(SQLiteStore(str(tmp_path / "a.sqlite")), A)
    with sender.batch():
        for i in range(RECORDINGS):
            sender.put("recordings", f"k{i:03}", recording(i))
    bundles = sender.pack()
    assert len(bundles) == 1

    monkeypatch.setattr(applying, "APPLY_CHUNK_BYTES", BUDGET)
    store = SQLiteStore(str(tmp_path / "b.sqlite"))
    watched = Watched(store.db)
    store.db = cast(sqlite3.Connection, watched)
    receiver = Replica(store, B)
    before = watched.writes
    if grouped:
        with receiver.group_commit() as group:
            report = group.apply(bundles)
    else:
        report = receiver.apply(bundles[0])

    assert report.applied == RECORDINGS
    assert receiver.get("recordings", "k007") == recording(7)
    assert len(store.blob_refs()) == RECORDINGS * REFS
    # A chunk is the budget's worth of changes and at most one segment more; the
    # references are handed to SQLite as they are found, none held in a list.
    size = len(canonical_fields(recording(0)))
    assert watched.most <= BUDGET // size + PER_SEGMENT < RECORDINGS
    assert watched.writes - before > 2 * (RECORDINGS * size // BUDGET)  # several chunks
