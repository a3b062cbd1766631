"""The blob lane over a shared folder and a courier disk (real files): chunks travel
sealed to the recipient beside the bundles, once per hash, resumable at chunk
granularity, and a backlog larger than a disk goes on the next disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.blobfile import KIND_CHUNK, recipient_of
from offsync.blobs import BlobRef
from offsync.errors import MissingBlobError
from offsync.limits import Limits
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import exchange, exchange_folder, sync
from offsync.transports import DiskTransport

A = Identity(bytes([1]) * 32, "sub-a")
B = Identity(bytes([2]) * 32, "district")
C = Identity(bytes([3]) * 32, "centre")
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)


def photo(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def replica(tmp_path: Path, name: str, identity: Identity) -> Replica:
    return Replica(SQLiteStore(str(tmp_path / f"{name}.sqlite")), identity, limits=SMALL)


def record(rep: Replica, key: str, *blobs: bytes) -> list[BlobRef]:
    refs = [rep.put_blob(b, "image/jpeg") for b in blobs]
    rep.put("people", key, {"name": key, "photos": [r.field() for r in refs]})
    return refs


def chunk_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ofc"))


def test_blobs_cross_a_disk_sealed_and_once_per_hash(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    usb = tmp_path / "usb"
    usb.mkdir()
    shared = photo(10_000, 7)  # in two records: travels once
    refs = record(a, "p1", photo(9000), shared) + record(a, "p2", shared, b"")
    report = sync(a, DiskTransport(usb, a, b), pull=False)
    assert report.blobs is not None and report.blobs.sent == 3
    files = chunk_files(usb)
    assert len(files) == 3 + 3 + 1  # 9000 and 10000 bytes in 4 KiB chunks, the empty blob
    for f in files:  # sealed to the district: nobody else opens them
        data = f.read_bytes()
        assert recipient_of(data, KIND_CHUNK) == B.public_key
        assert shared[:64] not in data and photo(9000)[:64] not in data
    # Records first: before the blob lane ran, the records were already applied.
    got = sync(b, DiskTransport(usb, b), push=False)
    assert got.applied == 2 and got.blobs is not None
    assert got.blobs.received == 3 and got.blobs.ok
    for ref in refs:
        assert b.open_blob(ref).read() == (
            shared if ref.hash == refs[1].hash else photo(9000) if ref.size == 9000 else b""
        )
    assert chunk_files(usb) == []  # taken
    assert b.missing_blobs().count == 0
    # Exported again: nothing new written (in transit, then held per the receipt).
    again = sync(a, DiskTransport(usb, a, b), pull=False)
    assert again.blobs is not None and again.blobs.sent == 0 and chunk_files(usb) == []


def test_a_folder_round_trip_and_a_want_list_brings_a_lost_chunk_back(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    folder = tmp_path / "share"
    folder.mkdir()
    (ref,) = record(a, "p1", photo(20_000))
    exchange_folder(a, folder, [B.public_key])
    lost = chunk_files(folder)[2]
    lost.unlink()  # a chunk lost on the way (a sync client that dropped it)
    stop = exchange_folder(b, folder, [A.public_key])
    assert b.get("people", "p1") is not None  # the record never waited
    assert not b.has_blob(ref) and b.missing_blobs().count == 1
    assert b.held_blobs([ref.hash]) == {ref.hash: 8192}  # two chunks before the gap
    assert stop.imported.blobs is not None and stop.imported.blobs.received == 0
    # a reads b's receipt (covers the record) and its want list (asks from 8192 on)
    back = exchange_folder(a, folder, [B.public_key])
    assert back.replies[0].blobs is not None and back.replies[0].blobs.sent == 1
    exchange_folder(b, folder, [A.public_key])
    assert b.open_blob(ref).read() == photo(20_000)


def test_a_backlog_larger_than_a_disk_goes_on_the_next_disk(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    refs = [r for i in range(12) for r in record(a, f"p{i}", photo(3000 + i, i))]
    disk1, disk2 = tmp_path / "disk1", tmp_path / "disk2"
    disk1.mkdir()
    disk2.mkdir()
    # Room for the bundles, then five chunk files (32 KiB clusters each).
    room = iter([10**9, 1_048_576 + 5 * 33_280 + 100])
    first = sync(a, DiskTransport(disk1, a, b, free_space=lambda p: next(room)), pull=False)
    assert first.blobs is not None
    assert first.blobs.sent == 5 and first.blobs.left == 7
    assert first.blobs.left_bytes == sum(r.size for r in refs) - first.blobs.sent_bytes
    second = sync(a, DiskTransport(disk2, a, b), pull=False)
    assert second.blobs is not None and second.blobs.sent == 7  # only what did not fit
    for disk in (disk1, disk2):
        sync(b, DiskTransport(disk, b), push=False)
    assert b.missing_blobs().count == 0
    assert all(b.open_blob(r).read() == photo(3000 + i, i) for i, r in enumerate(refs))


def test_the_courier_stop_carries_blobs_both_ways(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    usb = tmp_path / "usb"
    usb.mkdir()
    (ra,) = record(a, "from-a", photo(5000, 1))
    (rb,) = record(b, "from-b", photo(6000, 2))
    with DiskTransport(usb, a, b) as t:
        sync(a, t, pull=False)
    stop = exchange(b, usb)
    assert b.open_blob(ra).read() == photo(5000, 1)
    assert stop.replies[0].blobs is not None and stop.replies[0].blobs.sent == 1
    exchange(a, usb)
    assert a.open_blob(rb).read() == photo(6000, 2)


def test_a_lazy_or_none_site_takes_from_a_folder_only_what_it_asked_for(tmp_path: Path) -> None:
    """Chunks a site does not fetch are removed unread, its want list names only what it
    asked for, and what it asks for comes on the next trip."""
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    b.set_blob_fetch("lazy")
    folder = tmp_path / "share"
    folder.mkdir()
    (one,) = record(a, "p1", photo(9000, 1))
    (two,) = record(a, "p2", photo(9000, 2))
    exchange_folder(a, folder, [B.public_key])
    assert chunk_files(folder)  # the writer cannot know b's policy on the first trip
    exchange_folder(b, folder, [A.public_key])
    assert b.get("people", "p1") is not None and b.get("people", "p2") is not None
    assert not b.has_blob(one) and not b.has_blob(two)
    assert [
        f for f in chunk_files(folder) if recipient_of(f.read_bytes(), KIND_CHUNK) == B.public_key
    ] == []
    with pytest.raises(MissingBlobError):
        b.open_blob(one)  # asked for: fetched at the next exchange
    exchange_folder(b, folder, [A.public_key])  # its want list names it
    exchange_folder(a, folder, [B.public_key])
    exchange_folder(b, folder, [A.public_key])
    assert b.open_blob(one).read() == photo(9000, 1) and not b.has_blob(two)
    b.set_blob_fetch("none")
    assert b.blobs_to_fetch() == ([], [])


def test_a_site_that_fetches_no_blobs_keeps_none_from_a_disk(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    b.set_blob_fetch("none")
    usb = tmp_path / "usb"
    usb.mkdir()
    refs = record(a, "p1", photo(9000), photo(5000, 3))
    sync(a, DiskTransport(usb, a, b), pull=False)
    got = sync(b, DiskTransport(usb, b), push=False)
    assert got.applied == 1 and got.blobs is not None and got.blobs.received == 0
    assert not any(b.has_blob(r) for r in refs) and chunk_files(usb) == []
    assert b.missing_blobs().count == 2
