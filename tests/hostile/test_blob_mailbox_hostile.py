"""Hostile chunk files on a folder or a courier disk: each is refused with a library
error and its reason, set aside, and blocks neither the other chunks nor the records;
nothing of a refused blob becomes readable.

=====================================  =================================================
a corrupt chunk file (bit flipped)     DecryptionError, set aside; the blob stays missing
a chunk sealed for another site        DecryptionError ("sealed for another site")
a well-sealed chunk with wrong bytes   BlobError at the blob's last byte: dropped whole
a blob larger than declared            RemoteDataError (the record says fewer bytes) or
                                       BlobError (bytes beyond the declared size)
a torn chunk file (cut short)          DecryptionError, set aside
a disk full of half-written chunks     temporaries never read, removed by the next export
a chunk no record references           RemoteDataError, set aside
a stranger's key (trust mode)          no chunk written for it at all
=====================================  =================================================
"""

from __future__ import annotations

from pathlib import Path

from offsync import Identity, Replica, sync
from offsync.blobfile import chunk_name, encode_chunk
from offsync.blobs import BlobRef, blob_hash
from offsync.lane import BlobChunk
from offsync.limits import Limits
from offsync.stores.sqlite import SQLiteStore
from offsync.transports import DiskTransport
from offsync.transports.folder import FolderTransport, outbox_name
from offsync.trust import issue_certificate

A = Identity(bytes([1]) * 32, "sub-a")
B = Identity(bytes([2]) * 32, "district")
M = Identity(bytes([9]) * 32, "mallory")
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)


def photo(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def replica(tmp_path: Path, name: str, identity: Identity) -> Replica:
    return Replica(SQLiteStore(str(tmp_path / f"{name}.sqlite")), identity, limits=SMALL)


def world(tmp_path: Path) -> tuple[Replica, Replica, Path, BlobRef, BlobRef]:
    """a left two photos (3 and 2 chunks) in a folder for b."""
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    one, two = a.put_blob(photo(10_000, 1), "image/jpeg"), a.put_blob(photo(5000, 2))
    a.put("people", "p1", {"photo": one.field()})
    a.put("people", "p2", {"photo": two.field()})
    folder = tmp_path / "share"
    folder.mkdir()
    sync(a, FolderTransport(folder, a, b), pull=False)
    return a, b, folder, one, two


def path_of(folder: Path, to: bytes, ref: BlobRef, offset: int) -> Path:
    name = chunk_name(ref.hash, offset)
    return folder / outbox_name(to) / "blobs" / ref.hex[:2] / name


def take(b: Replica, folder: Path) -> list[tuple[str, str]]:
    report = sync(b, FolderTransport(folder, b), push=False)
    assert report.blobs is not None
    assert b.get("people", "p1") is not None and b.get("people", "p2") is not None
    return report.blobs.refused


def test_a_corrupt_chunk_is_refused_and_the_other_blob_arrives(tmp_path: Path) -> None:
    _, b, folder, one, two = world(tmp_path)
    target = path_of(folder, B.public_key, one, 4096)
    data = bytearray(target.read_bytes())
    data[200] ^= 1
    target.write_bytes(bytes(data))
    (refused,) = take(b, folder)
    assert refused[0] == one.hex[:32] and "DecryptionError" in refused[1]
    assert b.open_blob(two).read() == photo(5000, 2)
    assert not b.has_blob(one) and b.missing_blobs().count == 1
    assert (folder / "refused" / target.name).exists()
    assert "does not open" in (folder / "refused" / (target.name + ".txt")).read_text()


def test_a_chunk_sealed_for_another_site_is_refused(tmp_path: Path) -> None:
    _, b, folder, one, two = world(tmp_path)
    target = path_of(folder, B.public_key, two, 0)
    target.write_bytes(encode_chunk(BlobChunk(two, 0, photo(4096, 2)), M.public_key))
    (refused,) = take(b, folder)
    assert "sealed for another site" in refused[1]
    assert b.open_blob(one).read() == photo(10_000, 1) and not b.has_blob(two)


def test_wrong_bytes_under_a_good_seal_drop_the_blob_whole(tmp_path: Path) -> None:
    """Anyone can seal to a public key: the blob's hash, signed by its origin in the
    record, is what proves a chunk, so the whole blob is dropped at its last byte."""
    _, b, folder, one, two = world(tmp_path)
    target = path_of(folder, B.public_key, one, 8192)
    target.write_bytes(encode_chunk(BlobChunk(one, 8192, b"\x00" * (10_000 - 8192)), B.public_key))
    (refused,) = take(b, folder)
    assert "BlobError" in refused[1] and "do not match its hash" in refused[1]
    assert not b.has_blob(one) and b.held_blobs([one.hash]) == {}
    assert b.open_blob(two).read() == photo(5000, 2)


def test_a_blob_larger_than_declared_is_refused(tmp_path: Path) -> None:
    _, b, folder, one, two = world(tmp_path)
    bigger = BlobRef(two.hash, two.size + 4096, two.media_type)
    target = path_of(folder, B.public_key, two, 4096)  # replaces the last chunk
    target.write_bytes(encode_chunk(BlobChunk(bigger, 4096, photo(4096, 3)), B.public_key))
    (refused,) = take(b, folder)
    assert "RemoteDataError" in refused[1] and "its record 5000" in refused[1]
    assert not b.has_blob(two) and b.open_blob(one).read() == photo(10_000, 1)


def test_a_torn_chunk_file_is_refused_and_blocks_nothing(tmp_path: Path) -> None:
    _, b, folder, one, two = world(tmp_path)
    target = path_of(folder, B.public_key, one, 0)
    target.write_bytes(target.read_bytes()[:1500])  # the disk was pulled mid-write
    (refused,) = take(b, folder)
    assert "DecryptionError" in refused[1]
    assert b.open_blob(two).read() == photo(5000, 2)
    assert b.held_blobs([one.hash]) == {}  # 4096..10000 staged beyond a gap: not held
    assert not b.has_blob(one)


def test_a_chunk_of_a_blob_no_record_references_is_set_aside(tmp_path: Path) -> None:
    _, b, folder, _, _ = world(tmp_path)
    junk = b"not in any record"
    ref = BlobRef(blob_hash(junk), len(junk))
    target = path_of(folder, B.public_key, ref, 0)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encode_chunk(BlobChunk(ref, 0, junk), B.public_key))
    (refused,) = take(b, folder)
    assert "no visible record" in refused[1] and not b.has_blob(ref)
    assert b.missing_blobs().count == 0


def test_a_disk_full_of_half_written_chunks(tmp_path: Path) -> None:
    """Temporaries of an export that never finished are never read as chunks; torn
    files under chunk names are refused; the next export removes the temporaries and
    writes what is missing, and the blobs arrive whole."""
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    refs = [a.put_blob(photo(9000, i)) for i in range(4)]
    for i, ref in enumerate(refs):
        a.put("people", f"p{i}", {"photo": ref.field()})
    usb = tmp_path / "usb"
    usb.mkdir()
    sync(a, DiskTransport(usb, a, b), pull=False)
    boxes = usb / "OFFSYNC" / outbox_name(B.public_key) / "blobs"
    files = sorted(boxes.rglob("*.ofc"))
    for i, f in enumerate(files):
        (f.parent / f".tmp-{i}.part").write_bytes(f.read_bytes()[:700])
        if i % 3 == 0:
            f.write_bytes(f.read_bytes()[:700])  # torn under its final name
        else:
            f.unlink()  # only its temporary was written
    got = sync(b, DiskTransport(usb, b), push=False)
    assert got.applied == 4 and got.blobs is not None and got.blobs.received == 0
    assert len(got.blobs.refused) == len([f for i, f in enumerate(files) if i % 3 == 0])
    assert b.missing_blobs().count == 4
    assert len(list(boxes.rglob(".tmp-*"))) == len(files)  # never read, never taken
    # The sender's next export: a's receipt from b is not here yet, so all four are in
    # transit in a's log; b's want list travels back and brings them again.
    exchange_reply = sync(b, DiskTransport(usb, b, a), pull=False)
    assert exchange_reply.blobs is not None
    again = sync(a, DiskTransport(usb, a, b))
    assert again.blobs is not None and again.blobs.sent == 4
    assert list(boxes.rglob(".tmp-*")) == []  # a disk's temporaries go at once
    sync(b, DiskTransport(usb, b), push=False)
    assert all(b.open_blob(r).read() == photo(9000, i) for i, r in enumerate(refs))


def test_a_strangers_key_gets_no_chunks(tmp_path: Path) -> None:
    authority = Replica.open(":memory:", identity=Identity.generate(label="authority"))
    centre = Replica.open(
        str(tmp_path / "centre.sqlite"),
        identity=Identity.generate(label="centre"),
        trust=[authority.id],
    )
    issue_certificate(authority, centre.identity, label="centre")
    for bundle in authority.pack():
        centre.apply(bundle)
    ref = centre.put_blob(photo(6000))
    centre.put("people", "p1", {"photo": ref.field()})
    usb = tmp_path / "usb"
    usb.mkdir()
    report = sync(centre, DiskTransport(usb, centre, M), pull=False)
    assert report.blobs is not None and report.blobs.sent == 0
    assert list(usb.rglob("*.ofc")) == [] and list(usb.rglob("*.ofw")) == []
