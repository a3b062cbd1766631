"""``check_blob_store(make_store)``: does a store keep its blobs as the contract says?

Run it against every store that keeps blobs (offsync runs it against the memory, SQLite
and PostgreSQL stores)::

    from offsync.testing import check_blob_store
    check_blob_store(lambda: MyStore(...))   # each call: a new, empty store

It checks, each on a fresh store: a blob put whole reads back byte for byte and is
deduplicated; chunks written out of order, over two sessions (resume), become visible
only at ``finish``; a wrong hash, a gap, an overlap, a blob larger than declared and a
chunk over ``blob_chunk_bytes`` are refused with offsync errors and leave every other
blob as it was; ``missing``, ``delete`` and ``blobs`` report what is held.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..blobs import BlobRef, blob_hash
from ..errors import BlobError, LimitExceededError, MissingBlobError, OffsyncError
from ..limits import Limits
from ..stores.base import Store
from ..stores.blobs import BlobStore

__all__ = ["check_blob_store"]

MakeStore = Callable[[], Store]
#: Small chunks, so that a few KB make many of them.
LIMITS = Limits(blob_chunk_bytes=1000, max_blob_bytes=100_000)


def _ref(data: bytes, media_type: str = "image/jpeg") -> BlobRef:
    return BlobRef(blob_hash(data), len(data), media_type)


def _data(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed * 13 + (i >> 8)) & 0xFF for i in range(n))


@contextmanager
def _fresh(make_store: MakeStore) -> Iterator[BlobStore]:
    store = make_store()
    try:
        yield store.blobs(LIMITS)
    finally:
        store.close()


def _refused(fn: Callable[[], Any], error: type[OffsyncError], what: str) -> None:
    try:
        fn()
    except error:
        return
    except Exception as exc:
        raise AssertionError(f"{what}: raised {type(exc).__name__}, not {error.__name__}") from exc
    raise AssertionError(f"{what}: was not refused")


def check_blob_store(make_store: MakeStore) -> None:
    """Check that the stores ``make_store()`` returns keep the BlobStore contract."""
    for check in (_check_whole, _check_chunks, _check_refusals, _check_bookkeeping):
        with _fresh(make_store) as blobs:
            check(blobs)


def _check_whole(b: BlobStore) -> None:
    data = _data(4500, 1)
    ref = _ref(data)
    assert not b.has(ref.hash) and b.missing([ref.hash]) == {ref.hash}
    _refused(lambda: b.open(ref), MissingBlobError, "open of a blob not held")
    b.put(ref, io.BytesIO(data), now=1)
    assert b.has(ref.hash) and b.missing([ref.hash]) == set()
    assert b.open(ref).read() == data, "a blob reads back as written"
    stream = b.open(ref)
    assert b"".join(iter(lambda: stream.read(777), b"")) == data, "reads of any size"
    b.put(ref, io.BytesIO(data), now=2)  # the same blob again: nothing to do
    assert [(i.hash, i.size, i.complete) for i in b.blobs()] == [(ref.hash, 4500, True)]
    empty = _ref(b"")
    b.put(empty, io.BytesIO(b""), now=3)
    assert b.has(empty.hash) and b.open(empty).read() == b""


def _check_chunks(b: BlobStore) -> None:
    data = _data(3500, 2)
    ref = _ref(data)
    assert b.begin(ref, now=5)
    b.write_chunk(ref, 2000, data[2000:3000])
    b.write_chunk(ref, 0, data[0:1000])
    assert not b.has(ref.hash), "a staged blob is not visible"
    _refused(lambda: b.open(ref), MissingBlobError, "open of a staged blob")
    assert b.staged(ref.hash) == [(0, 1000), (2000, 1000)]
    assert b.begin(ref, now=6), "beginning again resumes"
    assert b.staged(ref.hash) == [(0, 1000), (2000, 1000)], "a resumed blob keeps its chunks"
    b.write_chunk(ref, 3000, data[3000:])
    b.write_chunk(ref, 1000, b"x" * 1000)
    b.write_chunk(ref, 1000, data[1000:2000])  # a chunk sent again replaces the first
    b.finish(ref)
    assert b.has(ref.hash) and b.open(ref).read() == data
    assert not b.begin(ref, now=7), "a held blob needs nothing"


def _check_refusals(b: BlobStore) -> None:
    good = _data(2500, 3)
    kept = _ref(good)
    b.put(kept, io.BytesIO(good), now=1)
    before = b.blobs()
    bad = _data(2500, 4)
    wrong = BlobRef(blob_hash(bad + b"!"), len(bad), "image/png")
    _refused(lambda: b.put(wrong, io.BytesIO(bad), now=2), BlobError, "a wrong hash")
    larger = BlobRef(blob_hash(bad), 2000, "image/png")
    _refused(lambda: b.put(larger, io.BytesIO(bad), now=2), BlobError, "more bytes than declared")
    shorter = BlobRef(blob_hash(bad), 3000, "image/png")
    _refused(lambda: b.put(shorter, io.BytesIO(bad), now=2), BlobError, "fewer bytes")
    gap = _ref(bad)
    b.begin(gap, now=2)
    b.write_chunk(gap, 0, bad[:1000])
    b.write_chunk(gap, 2000, bad[2000:])
    _refused(lambda: b.finish(gap), BlobError, "chunks with a gap")
    b.begin(gap, now=2)
    b.write_chunk(gap, 0, bad[:1000])
    b.write_chunk(gap, 500, bad[500:1500])
    b.write_chunk(gap, 1500, bad[1500:])
    _refused(lambda: b.finish(gap), BlobError, "overlapping chunks")
    b.begin(gap, now=2)
    _refused(lambda: b.write_chunk(gap, 2000, bad[:1000]), BlobError, "a chunk past the end")
    _refused(lambda: b.write_chunk(gap, -1, bad[:10]), BlobError, "a negative offset")
    _refused(lambda: b.write_chunk(gap, 0, bad[:1001]), LimitExceededError, "an oversize chunk")
    huge = BlobRef(b"\x01" * 32, 100_001, "image/png")
    _refused(lambda: b.begin(huge, now=2), LimitExceededError, "over max_blob_bytes")
    b.delete([gap.hash])
    assert b.blobs() == before, "refusals leave the other blobs as they were"
    assert b.open(kept).read() == good


def _check_bookkeeping(b: BlobStore) -> None:
    refs = []
    for i in range(3):
        data = _data(1200 + i, 10 + i)
        refs.append(_ref(data))
        b.put(refs[-1], io.BytesIO(data), now=100 + i)
    staged = _ref(_data(1500, 20))
    b.begin(staged, now=200)
    infos = {i.hash: i for i in b.blobs()}
    assert infos[refs[1].hash].created == 101 and infos[refs[1].hash].complete
    assert not infos[staged.hash].complete and infos[staged.hash].size == 1500
    assert b.missing([r.hash for r in refs] + [staged.hash]) == {staged.hash}
    b.delete([refs[0].hash, staged.hash, b"\x09" * 32])
    assert {i.hash for i in b.blobs()} == {refs[1].hash, refs[2].hash}
    assert not b.has(refs[0].hash) and b.has(refs[2].hash)
