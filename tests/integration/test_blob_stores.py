"""Stores keep blobs (issue 14): the BlobStore contract on memory, SQLite and
PostgreSQL, and a kill -9 during a blob write leaves no half blob visible."""

from __future__ import annotations

import io
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync.blobs import BlobRef, blob_hash
from offsync.errors import MissingBlobError
from offsync.stores.base import Store
from offsync.stores.memory import MemoryStore
from offsync.stores.sqlite import SQLiteStore
from offsync.testing import check_blob_store


def test_memory_store_keeps_blobs() -> None:
    check_blob_store(MemoryStore)


def test_sqlite_store_keeps_blobs(tmp_path: Path) -> None:
    counter = itertools.count()
    check_blob_store(lambda: SQLiteStore(str(tmp_path / f"store-{next(counter)}.sqlite")))


def test_sqlite_blobs_survive_reopening(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    ref = BlobRef(blob_hash(data), len(data), "image/jpeg")
    store = SQLiteStore(str(tmp_path / "s.sqlite"))
    store.blobs().put(ref, io.BytesIO(data), now=1)
    store.close()
    store = SQLiteStore(str(tmp_path / "s.sqlite"))
    assert store.blobs().open(ref).read() == data
    store.close()


WRITER = textwrap.dedent(
    """
    import io, os, sys
    from offsync.blobs import BlobRef, blob_hash
    from offsync.stores.sqlite import SQLiteStore

    data = bytes(range(256)) * 40_000  # 10 MB: ten chunks
    ref = BlobRef(blob_hash(data), len(data), "image/jpeg")
    if sys.argv[1] == "postgres":
        from offsync.stores.postgres import PostgresStore
        blobs = PostgresStore(sys.argv[2], schema=sys.argv[3]).blobs()
    else:
        blobs = SQLiteStore(sys.argv[1]).blobs()
    blobs.begin(ref, now=1)
    for pos in range(0, len(data), 1 << 20):
        blobs.write_chunk(ref, pos, data[pos : pos + (1 << 20)])
        if pos >= 3 << 20:
            print("written", flush=True)
            sys.stdin.read()  # killed here, before finish
    """
)


def _kill_during_a_write(*args: str) -> None:
    """Run WRITER with ``args`` and kill -9 it after four chunks, before ``finish``."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


def _no_half_blob_then_resume(store: Store) -> None:
    data = bytes(range(256)) * 40_000
    ref = BlobRef(blob_hash(data), len(data), "image/jpeg")
    blobs = store.blobs()
    assert not blobs.has(ref.hash)
    with pytest.raises(MissingBlobError):
        blobs.open(ref)
    staged = blobs.staged(ref.hash)
    assert staged[:4] == [(i << 20, 1 << 20) for i in range(4)]
    # The transfer resumes where it stopped: only the chunks not staged are written.
    assert blobs.begin(ref, now=2)
    done = {pos for pos, _ in staged}
    for pos in range(0, len(data), 1 << 20):
        if pos not in done:
            blobs.write_chunk(ref, pos, data[pos : pos + (1 << 20)])
    blobs.finish(ref)
    assert blobs.open(ref).read() == data
    store.close()


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_during_a_blob_write_leaves_no_half_blob_visible(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _kill_during_a_write(str(path))
    _no_half_blob_then_resume(SQLiteStore(str(path)))


@pytest.mark.postgres
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_kill_during_a_postgres_blob_write_leaves_no_half_blob_visible(
    pg_schemas: list[str],
) -> None:
    from offsync.stores.postgres import PostgresStore
    from tests.helpers.postgres import DSN

    pg_schemas.append(f"offsync_test_{uuid.uuid4().hex[:10]}_0")
    PostgresStore(DSN, schema=pg_schemas[0]).close()  # migrated before the writer runs
    _kill_during_a_write("postgres", DSN, pg_schemas[0])
    _no_half_blob_then_resume(PostgresStore(DSN, schema=pg_schemas[0]))


@pytest.fixture
def pg_schemas() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    if names:
        from tests.helpers.postgres import drop_schemas

        drop_schemas(names[0].rsplit("_", 1)[0])


@pytest.mark.postgres
def test_postgres_store_keeps_blobs(pg_schemas: list[str]) -> None:
    from offsync.stores.postgres import PostgresStore
    from tests.helpers.postgres import DSN

    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}"
    counter = itertools.count()

    def make() -> PostgresStore:
        pg_schemas.append(f"{prefix}_{next(counter)}")
        return PostgresStore(DSN, schema=pg_schemas[-1])

    check_blob_store(make)
