"""The courier-disk transport: conformance, manifests, damage, full disks, return trips."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.errors import TransportError, UsageError
from offsync.testing import check_transport
from offsync.transports import DiskTransport, Transport
from offsync.transports.disk import FAT32_MAX_FILE, exchange

FAT_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def replica(path: Path, label: str) -> Replica:
    return Replica.open(str(path / f"{label}.sqlite"), identity=Identity.generate(label))


def test_disk_conforms(tmp_path: Path) -> None:
    counter = iter(range(100))

    @contextmanager
    def make_pair(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
        mount = tmp_path / f"usb{next(counter)}"
        mount.mkdir()
        with DiskTransport(mount, a, b) as ta, DiskTransport(mount, b, a) as tb:
            yield ta, tb

    check_transport(make_pair)


def test_courier_round_trip_many_sites_on_one_disk(tmp_path: Path) -> None:
    subs = [replica(tmp_path, f"sub{i}") for i in range(3)]
    district = replica(tmp_path, "district")
    for j, s in enumerate(subs):
        for i in range(20):
            s.put("residents", f"35190{j}{i:04d}", {"name": f"resident {j}/{i}"})
    usb = tmp_path / "usb"
    usb.mkdir()
    for s in subs:  # the courier visits each sub-district
        exchange(s, usb, peers=[district.id])
    stop = exchange(district, usb)  # ... then the district
    assert stop.imported.applied == 60 and stop.imported.refused == [] and stop.ok
    assert {r.peer for r in stop.replies} == {s.id for s in subs}  # return trip for each
    for s in subs:  # ... and back
        exchange(s, usb, peers=[district.id])
        assert s.state_digest() == district.state_digest()
        receipt = s.receipts()[district.id]
        assert s.knowledge() <= receipt.knowledge  # the district's receipt came back
    # Everything on the disk has a FAT32-safe name, no file near 4 GiB, and is sealed.
    for path in usb.rglob("*"):
        assert not FAT_FORBIDDEN.search(path.name) and len(path.name) <= 64, path.name
        assert path.stat().st_size < FAT32_MAX_FILE
        if path.suffix == ".ofb":
            assert b"Siti" not in path.read_bytes() and b"resident" not in path.read_bytes()


def _export(tmp_path: Path, n: int = 30) -> tuple[Replica, Replica, Path]:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    for batch in range(3):
        with a.batch():
            for i in range(n):
                a.put("r", f"{batch}-{i}", {"v": i, "pad": f"{batch}-{i}" * 40})
        a.pack(a.knowledge())  # seal a segment per batch
    usb = tmp_path / "usb"
    usb.mkdir()
    report = sync(a, DiskTransport(usb, a, b, max_bundle_bytes=4096))
    assert report.sent_bundles >= 3
    return a, b, usb


def test_truncated_and_corrupted_files_are_refused_the_rest_imported(tmp_path: Path) -> None:
    a, b, usb = _export(tmp_path)
    tb = DiskTransport(usb, b, a)
    files = sorted(tb.inbox.glob("*.ofb"))
    truncated, corrupted = files[0], files[1]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    data = bytearray(corrupted.read_bytes())
    data[200] ^= 0x01
    corrupted.write_bytes(bytes(data))
    report = sync(b, tb, push=False)
    reasons = sorted(r.reason for r in report.refused)
    assert len(reasons) == 2
    assert any("truncated" in r for r in reasons)
    assert any("manifest's hash" in r for r in reasons)
    assert len(report.received) == len(files) - 2  # the rest of the disk was imported
    held = b.knowledge().count(a.id)
    assert 0 < held < 90
    # Nothing half-applied: every record b shows is exactly a's.
    for key, fields in b.items("r"):
        assert a.get("r", key) == fields
    # The damaged files are set aside; the next export fills the gap.
    assert sorted(p.name for p in tb.refused_dir.glob("*.ofb")) == sorted(
        [truncated.name, corrupted.name]
    )
    exchange(b, usb, peers=[a.id])
    exchange(a, usb, peers=[b.id])
    exchange(b, usb, peers=[a.id])
    assert b.state_digest() == a.state_digest()


def test_unplugged_mid_write_leaves_nothing_applied_as_whole(tmp_path: Path) -> None:
    a, b, usb = _export(tmp_path)
    tb = DiskTransport(usb, b, a)
    # The disk was pulled after the bundles were renamed into place but before the
    # manifest was written, and one bundle's tail never reached the flash.
    for manifest in tb.inbox.glob("*.man"):
        manifest.unlink()
    victim = sorted(tb.inbox.glob("*.ofb"))[0]
    victim.write_bytes(victim.read_bytes()[:50])
    before = b.state_digest()
    report = sync(b, tb, push=False)
    assert report.received == []
    assert all("not listed in any manifest" in r.reason for r in report.refused)
    assert b.state_digest() == before


def test_torn_manifest_is_refused(tmp_path: Path) -> None:
    a, b, usb = _export(tmp_path)
    tb = DiskTransport(usb, b, a)
    (manifest,) = tb.inbox.glob("*.man")
    doc = json.loads(manifest.read_text())
    doc["bundles"][0]["size"] += 1  # altered without fixing the checksum
    manifest.write_text(json.dumps(doc))
    before = b.state_digest()
    report = sync(b, tb, push=False)
    assert report.received == []
    assert any("damaged manifest" in r.reason for r in report.refused)
    assert b.state_digest() == before


def test_too_little_space_fails_before_writing_anything(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    for i in range(50):
        a.put("r", str(i), {"v": i})
    usb = tmp_path / "usb"
    usb.mkdir()
    # The real free-space check, asked to keep more free than the disk holds (its size,
    # not its free space, which other processes change between measure and check).
    size = shutil.disk_usage(usb).total
    with pytest.raises(TransportError, match=r"not enough space.*Nothing of this export"):
        sync(a, DiskTransport(usb, a, b, reserve_bytes=size + 1))
    assert list(usb.rglob("*")) == []
    # A nearly full disk, as measured by the disk itself.
    tiny = DiskTransport(usb, a, b, free_space=lambda _: 2000, reserve_bytes=0)
    with pytest.raises(TransportError, match=r"reports only 2\.0 KiB free"):
        sync(a, tiny)
    assert list(usb.rglob("*")) == []
    sync(a, DiskTransport(usb, a, b))  # with room, the export goes through
    assert sync(b, DiskTransport(usb, b, a)).applied == 50


def test_missing_disk_and_oversized_bundles_are_usage_errors(tmp_path: Path) -> None:
    me = Identity.generate()
    with pytest.raises(TransportError, match="no disk mounted"):
        DiskTransport(tmp_path / "nowhere", me)
    with pytest.raises(UsageError, match="4 GiB"):
        DiskTransport(tmp_path, me, max_bundle_bytes=5 * 1024**3)
    with pytest.raises(UsageError, match="no peer"):
        DiskTransport(tmp_path, me).send([b"x"])


def test_read_back_detects_a_failing_disk(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    a.put("r", "1", {"v": 1})
    usb = tmp_path / "usb"
    usb.mkdir()

    class FlakyDisk(DiskTransport):
        def _verify(self, path: Path, size: int, digest: bytes) -> None:
            path.write_bytes(path.read_bytes()[:-1])  # the flash lost the last byte
            super()._verify(path, size, digest)

    with pytest.raises(TransportError, match="read-back verification failed"):
        sync(a, FlakyDisk(usb, a, b))
    assert sync(b, DiskTransport(usb, b, a), push=False).received == []


def test_relay_forwards_sealed_bundles_unopened(tmp_path: Path) -> None:
    """A disk brings a bundle sealed to the centre to the district, which cannot open
    it; the district carries it on, unopened, to the centre's shared folder."""
    from offsync.sync import forward
    from offsync.transports import FolderTransport

    sub, district, centre = (replica(tmp_path, x) for x in ("sub", "district", "centre"))
    sub.put("r", "1", {"v": 1})
    usb = tmp_path / "usb"
    usb.mkdir()
    sync(sub, DiskTransport(usb, sub, centre))  # sealed to the centre
    assert exchange(district, usb).imported.received == []  # nothing for the district itself
    share = tmp_path / "share"
    moved = forward(DiskTransport(usb, centre.id), FolderTransport(share, district, centre))
    assert len(moved.forwarded) == 1 and moved.ok
    assert sync(centre, FolderTransport(share, centre, sub)).applied == 1
    assert centre.get("r", "1") == {"v": 1}
    assert list(DiskTransport(usb, centre.id).inbox.glob("*.ofb")) == []
