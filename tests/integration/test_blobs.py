"""Blobs (issue 14, first part): a replica that puts, opens, lists missing and collects
blobs; hostile blobs and references refused with the right error and nothing changed.
References, hashing and chunking alone: tests/unit/test_blob_refs.py."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.blobs import (
    BlobRef,
    blob_hash,
)
from offsync.errors import (
    BlobError,
    LimitExceededError,
    MissingBlobError,
    UsageError,
)
from offsync.limits import Limits
from offsync.scope import Partition, Stream
from offsync.stores.memory import MemoryStore
from offsync.stores.sqlite import SQLiteStore

A = Identity(bytes([1]) * 32, "site-a")
B = Identity(bytes([2]) * 32, "site-b")
SMALL = Limits(blob_chunk_bytes=1000, max_blob_bytes=50_000)


def photo(n: int = 5000, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


# -- the replica ---------------------------------------------------------------------


def replica(tmp_path: Path, name: str, identity: Identity = A, **kw: object) -> Replica:
    return Replica(SQLiteStore(str(tmp_path / f"{name}.sqlite")), identity, **kw)  # type: ignore[arg-type]


def sync(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def test_put_and_open_a_blob_deduplicated(tmp_path: Path) -> None:
    rep = replica(tmp_path, "a", limits=SMALL)
    data = photo(12_345)
    ref = rep.put_blob(data, "image/jpeg")
    assert ref == BlobRef(blob_hash(data), len(data), "image/jpeg")
    again = rep.put_blob(io.BytesIO(data), "image/jpeg")  # from a stream
    assert again == ref and len(rep.blob_store.blobs()) == 1
    rep.put("people", "p1", {"name": "Dewi", "photo": ref.field()})
    field = rep.get("people", "p1")["photo"]  # type: ignore[index]
    with rep.open_blob(field) as stream:
        assert stream.read() == data
    assert rep.has_blob(ref) and rep.missing_blobs().count == 0
    rep.close()


def test_open_blob_refuses_a_missing_or_altered_blob(tmp_path: Path) -> None:
    rep = replica(tmp_path, "a")
    absent = BlobRef(blob_hash(b"nope"), 4, "image/jpeg")
    with pytest.raises(MissingBlobError, match=absent.hex):
        rep.open_blob(absent)
    ref = rep.put_blob(photo(3000), "image/jpeg")
    store = rep.store
    assert isinstance(store, SQLiteStore)
    with store.transaction():
        store.db.execute("UPDATE blob_chunks SET data = ?", (b"x" * 3000,))
    with pytest.raises(BlobError, match="hash"):
        rep.open_blob(ref)
    rep.close()


def test_records_arrive_before_their_blobs_and_are_listed_until_put(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b", B)
    face, thumb = photo(4000, 1), photo(900, 2)
    ref, small = a.put_blob(face, "image/jpeg"), a.put_blob(thumb, "image/png")
    a.put("people", "p1", {"name": "Dewi", "photo": ref.field(), "thumbs": [small.field()]})
    a.put("people", "p2", {"name": "Sari", "photo": ref.field()})
    a.put("people", "p3", {"name": "Budi"})
    sync(a, b)
    assert b.get("people", "p1")["name"] == "Dewi"  # type: ignore[index]
    missing = b.missing_blobs()
    assert missing.by_record == {("people", "p1"): (ref, small), ("people", "p2"): (ref,)}
    assert missing.count == 2 and missing.bytes == 4900
    b.put_blob(face, "image/jpeg")
    assert b.missing_blobs().by_record == {("people", "p1"): (small,)}
    b.put_blob(io.BytesIO(thumb), "image/png")
    assert b.missing_blobs().count == 0
    assert b.open_blob(small).read() == thumb
    a.close()
    b.close()


def test_collect_keeps_referenced_and_recent_blobs(tmp_path: Path) -> None:
    now = [1_000_000_000]
    rep = replica(tmp_path, "a", wall=lambda: now[0])
    kept = rep.put_blob(photo(100, 1))
    dropped = rep.put_blob(photo(100, 2))
    rep.put("people", "p1", {"photo": kept.field(), "old": dropped.field()})
    rep.put("people", "p1", {"photo": kept.field(), "old": None})  # no longer referenced
    now[0] += 100_000
    pending = rep.put_blob(photo(100, 3))  # put, its record not written yet
    now[0] += 10_000
    assert rep.collect_blobs(grace_ms=50_000) == [dropped.hash]
    assert rep.has_blob(kept) and rep.has_blob(pending) and not rep.has_blob(dropped)
    rep.delete("people", "p1")  # a deleted record references nothing
    now[0] += 10**9
    assert sorted(rep.collect_blobs()) == sorted([kept.hash, pending.hash])
    assert rep.blob_store.blobs() == []
    with pytest.raises(UsageError):
        rep.collect_blobs(grace_ms=-1)
    rep.close()


# -- hostile input -------------------------------------------------------------------


def test_a_local_write_of_a_malformed_reference_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    rep = replica(tmp_path, "a")
    before = rep.state_digest(), rep.seq
    for value in (
        {"$blob": [b"x" * 31, 1, "image/jpeg"]},
        {"$blob": None},
        [{"$blob": [b"x" * 32, 1, "no-slash"]}],
    ):
        with pytest.raises(UsageError, match="blob reference"):
            rep.put("people", "p1", {"photo": value})
    assert (rep.state_digest(), rep.seq) == before
    rep.put("people", "p1", {"data": {"$blob": "ordinary", "x": 1}})  # escaped: two keys
    assert rep.missing_blobs().count == 0
    rep.close()


def test_a_peer_record_with_a_malformed_reference_is_applied_as_data(tmp_path: Path) -> None:
    """Receivers do not refuse changes for malformed references (spec §4.4)."""
    from offsync.change import PUT, Change
    from offsync.encoding import canonical_fields

    a, b = Replica(MemoryStore(), A), Replica(MemoryStore(), B)
    a.put("people", "p0", {"name": "x"})
    sync(a, b)
    # Craft one change with a malformed reference, written below the API's check.
    fields = canonical_fields({"photo": {"$blob": [b"x" * 31, 1, "image/jpeg"]}})
    change = Change(A.public_key, 2, a._st.hlc + 1, "people", "p1", PUT, fields, ())
    own = Stream(A.public_key, Partition("people"))
    with a._transaction():
        a.store.add_outbox(own.partition, [(2, change.to_row())])
        a._merge([change])
        a.store.set_meta("seq", b"2")
        a._put(a._st.wrote(own, 2, change.hlc))
    sync(a, b)
    assert b.get("people", "p1") is not None and b.missing_blobs().count == 0


def test_hostile_blobs_leave_the_store_unchanged(tmp_path: Path) -> None:
    rep = replica(tmp_path, "a", limits=SMALL)
    good = rep.put_blob(photo(2000), "image/jpeg")
    before = rep.blob_store.blobs()
    with pytest.raises(LimitExceededError):
        rep.put_blob(bytes(50_001))
    with pytest.raises(LimitExceededError):
        rep.put_blob(io.BytesIO(bytes(50_001)))
    store = rep.blob_store
    data = photo(3000, 9)
    with pytest.raises(BlobError, match="hash"):
        store.put(BlobRef(blob_hash(b"other"), 3000, "image/png"), io.BytesIO(data), now=1)
    with pytest.raises(BlobError, match="larger"):
        store.put(BlobRef(blob_hash(data), 2999, "image/png"), io.BytesIO(data), now=1)
    with pytest.raises(LimitExceededError):
        store.begin(BlobRef(blob_hash(data), 50_001, "image/png"), now=1)
    assert rep.blob_store.blobs() == before
    assert rep.open_blob(good).read() == photo(2000)
    with pytest.raises(UsageError):
        rep.put_blob(io.StringIO("text"))  # type: ignore[arg-type]
    rep.close()


def test_blobs_are_in_the_backup_of_a_store(tmp_path: Path) -> None:
    from offsync.stores.sqlite import backup

    rep = replica(tmp_path, "a")
    data = os.urandom(70_000)
    ref = rep.put_blob(data, "image/jpeg")
    rep.close()
    backup(tmp_path / "a.sqlite", tmp_path / "copy.sqlite")
    copy = SQLiteStore(str(tmp_path / "copy.sqlite"))
    assert copy.blobs().open(ref).read() == data
    copy.close()
