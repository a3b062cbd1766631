"""The courier-disk transport: conformance, manifests, damage, full disks, return trips."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from offsync import Identity, Limits, Replica, sync
from offsync.errors import TransportError, UsageError
from offsync.segment import hash32
from offsync.sync import exchange
from offsync.testing import check_transport
from offsync.transports import DiskTransport, Transport
from offsync.transports.disk import FAT32_MAX_FILE
from tests.helpers.special import bundle_like_name, device, no_hang, plant, posix_only

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
            # No field value in clear ("resident j/i"); a header names collections and
            # partitions (format 3 knowledge is by stream), which are not personal data.
            assert b"resident " not in path.read_bytes()


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
    held = b.knowledge().restrict_origins([a.id]).count()
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


# -- what is on the disk is input from elsewhere: special files and hostile manifests ----


def manifest_doc(sender: bytes, recipient: bytes, bundles: list[dict[str, object]]) -> bytes:
    """A manifest as any site can write one: the format, with a correct checksum."""
    doc: dict[str, object] = {
        "format": "offsync-disk/1",
        "sender": sender.hex(),
        "recipient": recipient.hex(),
        "generation": 1,
        "bundles": bundles,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    doc["checksum"] = hash32(canonical).hex()
    return json.dumps(doc).encode()


def manifest_name(sender: bytes, generation: int = 1) -> str:
    return f"from-{sender.hex()[:32]}-{generation:08d}.man"


@posix_only
def test_special_files_on_the_disk_are_refused_never_read(tmp_path: Path) -> None:
    """FIFOs and links to /dev/zero or to a FIFO, as manifests and as bundles a
    well-formed manifest lists (size 0), and in the outbox the export reads: each is
    refused with its reason; a's export next to them is imported, and b's reply goes
    out."""
    a, b, _ = _export(tmp_path)
    mallory = Identity.generate("mallory")
    tb = DiskTransport(usb := tmp_path / "usb", b, a)
    elsewhere = tmp_path / "elsewhere"
    # Manifests that are not regular files.
    manifests = plant(
        tb.inbox,
        [manifest_name(Identity.generate().public_key) for _ in range(3)],
        elsewhere,
    )
    # A well-formed manifest listing bundles that are not regular files.
    names = [bundle_like_name() for _ in range(4)]
    bundles = plant(tb.inbox, names[:3], elsewhere)
    if device(tb.inbox / names[3]):  # where this process may mknod
        bundles["device"] = tb.inbox / names[3]
    entries = [{"file": n, "size": 0, "blake2b": "00" * 32} for n in names]
    (tb.inbox / manifest_name(mallory.public_key)).write_bytes(
        manifest_doc(mallory.public_key, b.id, entries)
    )
    # And in b's outbox to a, which b reads (manifests, headers) to write its reply.
    plant(
        tb.outbox(a.id), [manifest_name(b.id, 7), bundle_like_name(), bundle_like_name()], elsewhere
    )
    with no_hang():
        stop = exchange(b, usb, peers=[a.id])
    assert stop.imported.applied == 90 and b.state_digest() == a.state_digest()
    reasons = {Path(r.source).name: r.reason for r in stop.imported.refused}
    assert sorted(reasons) == sorted(p.name for p in [*manifests.values(), *bundles.values()])
    assert (
        "damaged manifest (a FIFO (named pipe), not a regular file)"
        in reasons[manifests["fifo"].name]
    )
    assert "a symbolic link, not a regular file" in reasons[manifests["zero"].name]
    assert "a FIFO (named pipe), not a regular file" in reasons[bundles["fifo"].name]
    assert "a symbolic link, not a regular file" in reasons[bundles["to_fifo"].name]
    if "device" in bundles:
        assert "a character device, not a regular file" in reasons[bundles["device"].name]
    assert [r.peer for r in stop.replies] == [a.id] and stop.not_written == []
    with no_hang():
        back = exchange(a, usb, peers=[b.id])
    assert a.receipts()[b.id].knowledge >= a.knowledge() and back.not_written == []


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested deeper than 3 levels"),
        (b'{"bundles": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested deeper"),
        (b"{" * 100_000, "nested deeper"),
        (b" " * (4 * 1024 * 1024 + 1), "over the limit"),
        (b"\xff\xfe{}", "not JSON"),
        (b'{"format": "offsync-disk/1", "n": ' + b"9" * 5000 + b"}", "not JSON"),
        (b'{"format": "offsync-disk/1", "bundles": []}', "checksum differs"),
        (b"[]", "not an offsync disk manifest"),
    ],
    ids=["deep", "deep-inside", "unclosed", "huge", "not-utf8", "long-number", "no-sum", "list"],
)
def test_a_hostile_manifest_is_refused_and_blocks_nothing(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    a, b, usb = _export(tmp_path)
    tb = DiskTransport(usb, b, a)
    stranger = Identity.generate().public_key
    (tb.inbox / manifest_name(stranger)).write_bytes(content)
    # The same under b's own name in its outbox to a, which its export reads.
    (tb.outbox(a.id) / manifest_name(b.id, 3)).parent.mkdir(parents=True, exist_ok=True)
    (tb.outbox(a.id) / manifest_name(b.id, 3)).write_bytes(content)
    stop = exchange(b, usb, peers=[a.id])
    assert stop.imported.applied == 90 and stop.not_written == []
    [refused] = stop.imported.refused
    assert Path(refused.source).name == manifest_name(stranger)
    assert refused.reason.startswith("damaged manifest (") and reason in refused.reason
    assert (tb.refused_dir / manifest_name(stranger)).exists()
    assert exchange(a, usb, peers=[b.id]).imported.received  # b's reply is readable


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda d: d.update(bundles="all of them"), "malformed"),
        (lambda d: d.update(bundles=[["x"]]), "malformed bundle entry"),
        (lambda d: d["bundles"][0].update(size=-1), "malformed bundle entry"),
        (lambda d: d["bundles"][0].update(size=True), "malformed bundle entry"),
        (lambda d: d["bundles"][0].update(file="../../etc/passwd"), "malformed bundle entry"),
        (lambda d: d["bundles"][0].update(blake2b="zz"), "malformed bundle entry"),
        (lambda d: d.update(sender="00" * 32), "not the one its file name says"),
        (lambda d: d.update(recipient="00" * 32), "addressed to another site"),
    ],
    ids=[
        "bundles-not-a-list",
        "entry-not-an-object",
        "negative-size",
        "boolean-size",
        "a-path-as-file-name",
        "bad-hash",
        "another-sender",
        "another-recipient",
    ],
)
def test_a_manifest_that_breaks_the_format_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    """Checksum correct (anyone can compute it), content outside the format."""
    a, b, usb = _export(tmp_path)
    tb = DiskTransport(usb, b, a)
    (path,) = tb.inbox.glob("*.man")
    doc = json.loads(path.read_text())
    del doc["checksum"]
    change(doc)
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    doc["checksum"] = hash32(canonical).hex()
    path.write_text(json.dumps(doc))
    before = b.state_digest()
    report = sync(b, tb, push=False)
    assert report.received == [] and b.state_digest() == before
    assert any(
        r.reason.startswith("damaged manifest") and reason in r.reason for r in report.refused
    )


# -- a full disk -------------------------------------------------------------------------


def test_a_full_disk_at_import_keeps_the_import_and_the_next_run_writes_the_reply(
    tmp_path: Path,
) -> None:
    """At the district the stick has no room for the return trip: the import stands and
    says so, the reply is reported as not written (not 'nothing was written'), and the
    next exchange with room writes it, once."""
    a, b, usb = _export(tmp_path)
    for i in range(5):
        b.put("notices", str(i), {"text": f"notice {i}"})
    tb = DiskTransport(usb, b, a)
    full = exchange(b, usb, free_space=lambda _: 0)
    assert full.imported.applied == 90 and b.knowledge().restrict_origins([a.id]).count() == 90
    assert full.replies == [] and [n.peer for n in full.not_written] == [a.id]
    assert "not enough space" in full.not_written[0].reason
    assert "Nothing of this export was written" in full.not_written[0].reason
    assert not full.ok
    text = str(full)
    assert (
        "90 changes applied" in text and "NOT written" in text and "run the exchange again" in text
    )
    assert list(tb.outbox(a.id).glob("*")) == []  # nothing half-written for a
    # Room again (the courier deleted some old files): the reply is written, though no
    # bundle of a's is left on the disk to say whom to answer.
    later = exchange(b, usb)
    assert later.imported.received == [] and later.not_written == []
    assert [r.peer for r in later.replies] == [a.id] and later.replies[0].sent_changes == 5
    assert list(tb.inbox.glob("*.man")) == []  # a's mail is answered ...
    assert exchange(b, usb).replies == []  # ... so it is not answered again
    back = exchange(a, usb, peers=[b.id])
    assert back.imported.applied == 5 and a.get("notices", "4") == {"text": "notice 4"}
    assert a.receipts()[b.id].knowledge >= a.knowledge()  # b's receipt came back


def test_assume_free_overrides_a_driver_that_reports_no_space(tmp_path: Path) -> None:
    """FAT32 through a userspace driver can report 0 free on a disk with room: the
    operator's figure replaces the driver's, and the export goes through."""
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    for i in range(50):
        a.put("r", str(i), {"v": i})
    usb = tmp_path / "usb"
    usb.mkdir()

    def no_space(path: Path) -> int:
        return 0

    with pytest.raises(TransportError, match=r"the disk reports only 0 B free"):
        sync(a, DiskTransport(usb, a, b, free_space=no_space))
    assert list(usb.rglob("*.ofb")) == []
    report = sync(a, DiskTransport(usb, a, b, free_space=no_space, assume_free_bytes=2**30))
    assert report.sent_changes == 50
    assert sync(b, DiskTransport(usb, b, a), push=False).applied == 50
    # The operator's figure is the one checked, and named as theirs when too small.
    with pytest.raises(TransportError, match=r"you said only 100 B free"):
        sync(b, DiskTransport(usb, b, a, assume_free_bytes=100))
    with pytest.raises(UsageError, match="negative"):
        DiskTransport(usb, a, b, assume_free_bytes=-1)


def test_a_write_that_runs_out_of_space_takes_back_what_it_wrote(tmp_path: Path) -> None:
    """The free-space figure was wrong (or overridden) and the disk fills up mid-export:
    the bundles already written are removed, so the failed export leaves the disk as it
    was and its space free for the next attempt."""
    a, b, usb = _export(tmp_path)  # a first export, listed in a's manifest
    for i in range(40):
        a.put("r", f"more-{i}", {"pad": f"{i}" * 300})
        if i % 10 == 9:
            a.pack(a.knowledge())
    ta = DiskTransport(usb, a, b)
    before = sorted(p.name for p in ta.outbox(b.id).iterdir())

    class FillsUp(DiskTransport):
        written = 0

        def _verify(self, path: Path, size: int, digest: bytes) -> None:
            FillsUp.written += 1
            if FillsUp.written == 3:
                raise OSError(28, "No space left on device")
            super()._verify(path, size, digest)

    with pytest.raises(TransportError, match="What this export wrote was removed"):
        sync(a, FillsUp(usb, a, b, max_bundle_bytes=4096, assume_free_bytes=2**30))
    assert FillsUp.written == 3
    assert sorted(p.name for p in ta.outbox(b.id).iterdir()) == before
    sync(a, DiskTransport(usb, a, b, max_bundle_bytes=4096))
    assert sync(b, DiskTransport(usb, b, a), push=False).applied == 130


def test_an_export_whose_manifest_a_reader_would_refuse_is_not_written(tmp_path: Path) -> None:
    """The manifest is bounded by ``Limits.max_header_bytes`` at the reader; the writer
    refuses an export that would need a larger one, and takes back what it wrote."""
    a, b = replica(tmp_path, "a"), replica(tmp_path, "b")
    for batch in range(8):
        with a.batch():
            for i in range(10):
                a.put("r", f"{batch}-{i}", {"pad": f"{batch}-{i}" * 40})
        a.pack(a.knowledge())
    usb = tmp_path / "usb"
    usb.mkdir()
    small = Limits(max_header_bytes=1024)
    with pytest.raises(TransportError, match="do not fit in one manifest"):
        sync(a, DiskTransport(usb, a, b, max_bundle_bytes=4096, limits=small))
    assert list(usb.rglob("*.ofb")) == [] and list(usb.rglob("*.man")) == []
