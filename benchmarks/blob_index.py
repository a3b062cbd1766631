"""Missing blobs at a centre of N records: a scan of every record against the index of
blob references (SQLite schema 5, docs/design.md "Blobs").

Writes N records of one collection with ``put_many`` (a share of them, ``--with-refs``,
holding a photo reference), holds the blobs of all but ``--missing`` of them (tiny
blobs, written straight into the blob store: their bytes do not matter here), then
times, by wall and by CPU time:

* ``scan``: what ``missing_blobs`` did before the index (``Store.missing_blob_refs``'s
  default: read every record, decode those whose bytes hold ``$blob``, ask the blob
  store per hash);
* ``index``: ``Replica.missing_blobs()`` now (the partial index of references not held);
* ``one record``: ``missing_blobs(collection, key)``;
* ``collect``: ``collect_blobs`` (asks the index which old blobs are referenced);
* and the write of the records with and without references (the index's cost).

Nothing is asserted; both ways must find the same references.

    .venv/bin/python benchmarks/blob_index.py --n 100000
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from offsync import Identity, Replica
from offsync.blobs import BlobRef, blob_hash
from offsync.stores.base import Store
from offsync.stores.sqlite import SQLiteStore

T = TypeVar("T")
#: Records per ``put_many`` call (its docstring: about 100,000 at most).
CHUNK = 50_000


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def show(label: str, wall: float, cpu: float, extra: str = "") -> None:
    print(f"{label:<34} {wall * 1000:10.1f} ms wall {cpu * 1000:10.1f} ms cpu  {extra}")


def fields(i: int, ref: BlobRef | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f"Resident {i}", "nik": f"{3519010101900000 + i}"}
    if ref is not None:
        out["photo"] = ref.field()
    return out


def write(rep: Replica, n: int, refs: list[BlobRef | None]) -> None:
    for start in range(0, n, CHUNK):
        rep.put_many(
            "people", {f"p{i:08d}": fields(i, refs[i]) for i in range(start, min(n, start + CHUNK))}
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--with-refs", type=float, default=1.0, help="share of records")
    parser.add_argument("--missing", type=int, default=1000, help="blobs not held")
    args = parser.parse_args()
    n = args.n
    every = max(1, round(1 / args.with_refs)) if args.with_refs > 0 else 0
    data = [f"photo {i}".encode() for i in range(n)]
    refs: list[BlobRef | None] = [
        BlobRef(blob_hash(d), len(d), "image/jpeg") if every and i % every == 0 else None
        for i, d in enumerate(data)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain = Replica(SQLiteStore(str(root / "plain.sqlite")), Identity.generate(label="p"))
        _, w, c = timed(lambda: write(plain, n, [None] * n))
        show(f"write {n} records, no references", w, c)
        plain.close()
        rep = Replica(SQLiteStore(str(root / "centre.sqlite")), Identity.generate(label="c"))
        _, w, c = timed(lambda: write(rep, n, refs))
        with_refs = sum(r is not None for r in refs)
        show(f"write {n} records, {with_refs} with a photo", w, c)
        held = [(r, d) for r, d in zip(refs, data, strict=True) if r is not None]
        held = held[args.missing :]
        blobs = rep.blob_store
        with rep.store.transaction():
            for ref, d in held:
                blobs.put(ref, io.BytesIO(d), 0)
        print(f"== {n} records, {with_refs} references, {len(held)} blobs held")

        scan, w, c = timed(lambda: Store.missing_blob_refs(rep.store))
        show("missing, scan of every record", w, c, f"{len(scan)} references")
        index, w, c = timed(lambda: rep.store.missing_blob_refs())
        show("missing, index", w, c, f"{len(index)} references")
        assert index == scan, "the index and the scan disagree"
        missing, w, c = timed(rep.missing_blobs)
        show("Replica.missing_blobs()", w, c, f"{missing.count} blobs")
        key = f"p{0:08d}"
        one, w, c = timed(lambda: rep.missing_blobs("people", key))
        show("missing_blobs of one record", w, c, f"{one.count} blobs")
        all_refs, w, c = timed(lambda: Store.blob_refs(rep.store))
        show("every reference, scan", w, c, f"{len(all_refs)}")
        indexed, w, c = timed(lambda: rep.store.blob_refs())
        show("every reference, index", w, c, f"{len(indexed)}")
        gone, w, c = timed(lambda: rep.collect_blobs(grace_ms=0))
        show("collect_blobs (all referenced)", w, c, f"{len(gone)} collected")
        rep.close()


if __name__ == "__main__":
    main()
