"""SQLite blob storage: rows in the database (offsync's choice) against files beside it.

Writes N blobs of SIZE random bytes (default 2000 x 250 KB, an ID recording's photo,
prints and irises), then reads them all back, three ways:

* ``rows``: ``SQLiteStore.blobs()`` as offsync ships it — chunks of ``blob_chunk_bytes``
  in ``blob_chunks``, one transaction per chunk and one to finish (WAL,
  ``synchronous=NORMAL``), verified against the hash when finished and when read;
* ``files+fsync``: one file per blob in a directory beside the database, written to a
  temporary name, fsynced, renamed, directory fsynced (what crash safety costs for files),
  plus its row in a table (hash, size) committed after the rename, hash checked on read;
* ``files``: the same without the two fsyncs (not crash safe: after a power cut a
  renamed file may be empty or short while its row says it is complete).

Prints, per way: write MB/s and read MB/s by wall time and by CPU time, and the bytes
on disk (database + WAL, plus the files). Wall time is noisy on a shared machine; CPU
time is the steadier figure. Nothing is asserted.

    .venv/bin/python benchmarks/blob_storage.py --n 2000 --size 250000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from offsync.blobs import BlobRef, blob_hash
from offsync.stores.sqlite import SQLiteStore


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def rows(root: Path, blobs: list[tuple[BlobRef, bytes]]) -> tuple[float, float, float, float, int]:
    path = root / "rows.sqlite"
    store = SQLiteStore(str(path))
    b = store.blobs()

    def write() -> None:
        for ref, data in blobs:
            b.put(ref, io.BytesIO(data), now=1)

    def read() -> None:
        for ref, _ in blobs:
            check = hashlib.blake2b(digest_size=32)
            with b.open(ref) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    check.update(chunk)
            assert check.digest() == ref.hash

    w = _timed(write)
    r = _timed(read)
    store.close()
    size = sum(_du(p) for p in root.glob("rows.sqlite*"))
    return (*w, *r, size)


def files(
    root: Path, blobs: list[tuple[BlobRef, bytes]], *, sync: bool
) -> tuple[float, float, float, float, int]:
    name = "files-sync" if sync else "files"
    folder = root / name
    folder.mkdir()
    db = sqlite3.connect(root / f"{name}.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE blobs (hash BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID")
    dirfd = os.open(folder, os.O_RDONLY)

    def write() -> None:
        for ref, data in blobs:
            tmp = folder / (ref.hex + ".part")
            with tmp.open("wb") as f:
                f.write(data)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, folder / ref.hex)
            if sync:
                os.fsync(dirfd)
            db.execute("INSERT INTO blobs VALUES (?, ?)", (ref.hash, ref.size))

    def read() -> None:
        for ref, _ in blobs:
            assert db.execute("SELECT size FROM blobs WHERE hash = ?", (ref.hash,)).fetchone()
            check = hashlib.blake2b(digest_size=32)
            with (folder / ref.hex).open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    check.update(chunk)
            assert check.digest() == ref.hash

    w = _timed(write)
    r = _timed(read)
    os.close(dirfd)
    db.close()
    size = _du(folder) + sum(_du(p) for p in root.glob(f"{name}.sqlite*"))
    return (*w, *r, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=250_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to write (default: a temp dir)"
    )
    args = parser.parse_args()
    blobs = []
    for _ in range(args.n):
        data = os.urandom(args.size)
        blobs.append((BlobRef(blob_hash(data), len(data), "image/jpeg"), data))
    mb = args.n * args.size / 1e6
    print(f"{args.n} blobs x {args.size} bytes = {mb:.0f} MB")
    print(
        f"{'way':<13}{'write MB/s':>11}{'(cpu)':>9}{'read MB/s':>11}{'(cpu)':>9}{'on disk MB':>12}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        ways: list[tuple[str, Callable[[], tuple[float, float, float, float, int]]]] = [
            ("rows", lambda: rows(root, blobs)),
            ("files+fsync", lambda: files(root, blobs, sync=True)),
            ("files", lambda: files(root, blobs, sync=False)),
        ]
        for label, run in ways:
            ww, wc, rw, rc, size = run()
            print(
                f"{label:<13}{mb / ww:>11.0f}{mb / wc:>9.0f}{mb / rw:>11.0f}{mb / rc:>9.0f}"
                f"{size / 1e6:>12.0f}"
            )


if __name__ == "__main__":
    main()
