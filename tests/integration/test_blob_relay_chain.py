"""A relay chain carries blobs: four sub-district sites -> one courier disk -> the
district -> HTTP (uvicorn on a free loopback port) -> the centre, which ends holding
every blob, verified; and ``forward`` carries chunk files sealed for another site
unopened, from a disk to a folder, as it carries bundles."""

from __future__ import annotations

from pathlib import Path

from offsync import Identity, Replica, sync
from offsync.blobs import BlobRef
from offsync.limits import Limits
from offsync.server import create_app
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import exchange, forward
from offsync.transports import DiskTransport
from offsync.transports.folder import FolderTransport
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

SMALL = Limits(blob_chunk_bytes=8192, max_blob_bytes=1 << 20)


def biometric(n: int, seed: int) -> bytes:
    return bytes((i * 131 + seed * 17) % 256 for i in range(n))


def replica(tmp_path: Path, name: str) -> Replica:
    ident = Identity(bytes([len(name) * 7 % 256, *name.encode()[:31].ljust(31, b"-")]), name)
    return Replica(SQLiteStore(str(tmp_path / f"{name}.sqlite")), ident, limits=SMALL)


def recordings(site: Replica, n: int, seed: int) -> dict[BlobRef, bytes]:
    """``n`` recordings: a photo, a signature and two fingerprints each."""
    made: dict[BlobRef, bytes] = {}
    for i in range(n):
        blobs = [
            biometric(size, seed * 100 + i * 4 + j)
            for j, size in enumerate((30_000, 10_000, 15_000, 15_000))
        ]
        refs = [site.put_blob(b, "image/x-wsq") for b in blobs]
        made.update(zip(refs, blobs, strict=True))
        site.put(
            "recordings",
            f"{seed}-{i}",
            {"photo": refs[0].field(), "rest": [r.field() for r in refs[1:]]},
        )
    return made


def no_sleep(_: float) -> None:
    return None


def test_four_sub_districts_to_the_centre_over_disk_and_http(tmp_path: Path) -> None:
    subs = [replica(tmp_path, f"sub{i}") for i in range(4)]
    district, centre = replica(tmp_path, "district"), replica(tmp_path, "centre")
    made: dict[BlobRef, bytes] = {}
    for i, sub in enumerate(subs):
        made.update(recordings(sub, 3, i))
    shared = subs[0].put_blob(b"the same form scanned at two sites", "application/pdf")
    subs[1].put_blob(b"the same form scanned at two sites", "application/pdf")
    subs[0].put("forms", "f", {"scan": shared.field()})
    subs[1].put("forms", "g", {"scan": shared.field()})
    made[shared] = b"the same form scanned at two sites"
    usb = tmp_path / "usb"
    usb.mkdir()
    for sub in subs:  # the courier's round: each site writes for the district
        with DiskTransport(usb, sub, district) as t:
            report = sync(sub, t, pull=False)
        assert report.blobs is not None and report.blobs.ok
    stop = exchange(district, usb)  # at the district: records first, then the blobs
    assert stop.imported.blobs is not None and stop.imported.blobs.refused == []
    assert district.missing_blobs().count == 0
    assert stop.imported.blobs.received == len(made)  # the shared scan taken once
    with (
        LiveServer(create_app(centre, readable=None)) as srv,
        HTTPTransport(srv.url, district.identity, limits=SMALL, max_retries=1, sleep=no_sleep) as t,
    ):
        onward = sync(district, t)
    assert onward.blobs is not None and onward.blobs.sent == len(made) and onward.blobs.ok
    assert centre.missing_blobs().count == 0
    for ref, data in made.items():
        assert centre.open_blob(ref).read() == data  # verified against its hash on open
    for sub in subs:
        assert sub.knowledge() <= centre.knowledge()


def test_forward_carries_sealed_chunks_unopened_from_a_disk_to_a_folder(tmp_path: Path) -> None:
    sub, relay, centre = (replica(tmp_path, n) for n in ("sub", "relay", "centre"))
    made = recordings(sub, 2, 5)
    usb, share = tmp_path / "usb", tmp_path / "share"
    usb.mkdir()
    share.mkdir()
    sync(sub, DiskTransport(usb, sub, centre), pull=False)  # sealed to the centre
    on_disk = sorted(p.name for p in usb.rglob("*.ofc"))
    assert on_disk
    report = forward(DiskTransport(usb, centre.id), FolderTransport(share, relay, centre))
    assert report.ok and report.blob_files == len(on_disk)
    assert list(usb.rglob("*.ofc")) == []
    assert sorted(p.name for p in share.rglob("*.ofc")) == on_disk
    got = sync(centre, FolderTransport(share, centre), push=False)
    assert got.blobs is not None and got.blobs.received == len(made)
    for ref, data in made.items():
        assert centre.open_blob(ref).read() == data
