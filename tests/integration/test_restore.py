"""Restoring a site from an old backup, and forks.

A restored site must not issue seqs it already used: it refuses to write while peers
say they hold more of its changes than it has (``SequenceReuseError``), gets its own
changes back from them, and then carries on. A site that forked anyway (it wrote
before hearing from anyone) is flagged wherever the two histories meet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from offsync import Identity, Knowledge, Receipt, Replica
from offsync.bundle import build_bundle, open_bundle
from offsync.change import DELETE, Change
from offsync.errors import BundleFormatError, SequenceReuseError, WrongPassphraseError
from offsync.scope import Partition, Stream
from offsync.segment import NO_PREVIOUS, Segment

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

SITE = Identity(bytes([2]) * 32, "saradan")
DISTRICT = Identity(bytes([5]) * 32, "district")
CENTRE = Identity(bytes([9]) * 32, "centre")


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def backup(path: Path) -> Path:
    copy = path.with_name(path.name + ".bak")
    shutil.copyfile(path, copy)
    return copy


def restore(copy: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(copy, path)


def test_restored_site_refuses_to_write_until_it_has_its_changes_back(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    site = Replica.open(str(path), identity=SITE)
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    for i in range(3):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
    send(site, district)
    site.close()
    saved = backup(path)
    site = Replica.open(str(path), identity=SITE)
    for i in range(3, 6):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
    send(site, district)
    site.close()

    restore(saved, path)  # the disk died; last night's backup comes back
    site = Replica.open(str(path), identity=SITE)
    assert site.seq == 3
    # Only the district's receipt arrives at first (a bundle with nothing new for us).
    (receipt_only,) = district.pack(district.knowledge(), always=True)
    site.apply(receipt_only)
    with pytest.raises(SequenceReuseError) as info:
        site.put("residents", "3519000000000099", {"n": 99})
    assert "3519000000000099" not in str(info.value)
    # Then the district sends what we lost: our own changes come back.
    send(district, site)
    assert site.seq == 6
    assert site.get("residents", "3519000000000005") == {"n": 5}
    site.put("residents", "3519000000000099", {"n": 99})
    assert site.seq == 7
    send(site, district)
    assert district.quarantined() == [] and site.quarantined() == []
    assert district.state_digest() == site.state_digest()
    site.close()
    district.close()


def test_unsealed_changes_in_the_backup_match_what_peers_hold(tmp_path: Path) -> None:
    """The backup holds changes not yet sealed into segments; peers hold them sealed."""
    path = tmp_path / "site.sqlite"
    site = Replica.open(str(path), identity=SITE)
    for i in range(3):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
    site.close()
    saved = backup(path)  # seqs 1..3, unsealed
    site = Replica.open(str(path), identity=SITE)
    district = Replica.open(":memory:", identity=DISTRICT)
    send(site, district)  # seals 1..3
    site.put("residents", "3519000000000003", {"n": 3})
    send(site, district)  # seals 4
    site.close()

    restore(saved, path)
    site = Replica.open(str(path), identity=SITE)
    assert site.seq == 3
    send(district, site)
    assert site.quarantined() == []
    assert site.seq == 4
    site.put("residents", "3519000000000004", {"n": 4})
    send(site, district)
    assert district.quarantined() == [] and district.forks() == []
    assert district.state_digest() == site.state_digest()
    centre = Replica.open(":memory:", identity=CENTRE)
    send(district, centre)
    assert centre.state_digest() == site.state_digest()
    site.close()


def test_a_fork_is_flagged_where_the_histories_meet(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    site = Replica.open(str(path), identity=SITE)
    district = Replica.open(":memory:", identity=DISTRICT)
    site.put("residents", "3519000000000001", {"n": 1})
    send(site, district)
    site.close()
    saved = backup(path)
    site = Replica.open(str(path), identity=SITE)
    site.put("residents", "3519000000000002", {"n": "original"})
    send(site, district)
    site.close()

    restore(saved, path)
    site = Replica.open(str(path), identity=SITE)
    # Written before hearing from anyone: seq 2 again, with different content.
    site.put("residents", "3519000000000002", {"n": "forked"})
    before = district.state_digest()
    report_total = 0
    for bundle in site.pack(
        district.knowledge() - Knowledge.of(Stream(SITE.public_key, RESIDENTS_PARTITION), 2, 2)
    ):
        report_total += district.apply(bundle).quarantined
    assert report_total == 1
    assert district.state_digest() == before  # the fork changed nothing
    assert district.get("residents", "3519000000000002") == {"n": "original"}
    (evidence,) = district.forks()
    assert (evidence.origin, evidence.first_seq) == (SITE.public_key, 2)
    assert [q.reason.split(":")[0] for q in district.quarantined()] == ["fork"]
    # Knowledge names seqs, not contents, so the restored site learns of the fork only
    # when it is sent the original (here: a full pack) ...
    for bundle in district.pack():
        site.apply(bundle)
    assert [f.first_seq for f in site.forks()] == [2]
    assert [q.reason.split(":")[0] for q in site.quarantined()] == ["fork"]
    # ... and whatever it writes on top of its fork stays quarantined everywhere else.
    site.put("residents", "3519000000000003", {"n": 3})
    send(site, district)
    assert district.get("residents", "3519000000000003") is None
    assert "fork: does not chain to the previous segment" in {
        q.reason for q in district.quarantined()
    }
    # Fork evidence survives reopening; the forked segment is never passed on.
    centre = Replica.open(":memory:", identity=CENTRE)
    send(district, centre)
    assert centre.get("residents", "3519000000000002") == {"n": "original"}
    assert centre.forks() == []
    # The way out: the site moves to a new key (see docs/operations-keys.md).
    site.close()
    new = Replica.open(str(tmp_path / "site-2.sqlite"), identity=Identity(bytes([6]) * 32))
    send(district, new)
    new.put("residents", "3519000000000003", {"n": 3})
    send(new, district)
    assert district.get("residents", "3519000000000003") == {"n": 3}


def test_fork_evidence_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "district.sqlite")
    original = Replica.open(":memory:", identity=SITE)
    original.put("residents", "1", {"n": 1})
    forked = Replica.open(":memory:", identity=SITE)
    forked.put("residents", "1", {"n": "other"})
    district = Replica.open(path, identity=DISTRICT)
    send(original, district)
    for _ in range(2):  # the same fork twice is recorded once
        for bundle in forked.pack():  # everything: knowledge cannot tell the two apart
            assert district.apply(bundle).quarantined == 1
    assert len(district.forks()) == 1
    district.close()
    district = Replica.open(path, identity=DISTRICT)
    assert len(district.forks()) == 1
    assert district.forks()[0].origin == SITE.public_key
    district.close()


def test_a_bundle_with_overlapping_segments_of_one_origin_is_refused() -> None:
    """Two segments sharing a seq of one origin in one bundle are malformed
    (docs/spec.md §7.2), whatever their signatures: refused whole, nothing changes."""

    def seal(first: int, keys: list[str], prev: bytes) -> bytes:
        deletes = [
            Change(SITE.public_key, first + i, 1, "residents", k, DELETE, None)
            for i, k in enumerate(keys)
        ]
        return Segment.seal(SITE, deletes, prev, 3).encode()

    segments = [seal(1, ["a", "b", "c"], NO_PREVIOUS), seal(2, ["x"], b"\x01" * 32)]
    # Validly framed and signed: seqs 1-3 and 2 together are the ranges 1-3.
    bundle = build_bundle(
        SITE,
        segments,
        ranges=Knowledge.of(Stream(SITE.public_key, RESIDENTS_PARTITION), 1, 3),
        receipts=[Receipt.issue(SITE, 1, Knowledge())],
        created=1,
    )
    with pytest.raises(BundleFormatError, match="share seqs of a stream"):
        open_bundle(bundle)
    rep = Replica.open(":memory:", identity=CENTRE)
    before = rep.state_digest()
    with pytest.raises(BundleFormatError):
        rep.apply(bundle)
    assert rep.state_digest() == before and rep.knowledge() == Knowledge()
    # Either segment alone is a valid bundle.
    for one in segments:
        alone = Replica.open(":memory:", identity=CENTRE)
        seg = Segment.decode(one)
        only = Knowledge.of(
            Stream(SITE.public_key, RESIDENTS_PARTITION), seg.first_seq, seg.last_seq
        )
        receipt = Receipt.issue(SITE, 1, Knowledge())
        data = build_bundle(SITE, [one], ranges=only, receipts=[receipt], created=1)
        assert alone.apply(data).applied == seg.count


def test_key_file_backups_are_encrypted(tmp_path: Path) -> None:
    key_file = tmp_path / "saradan.key"
    SITE.save(key_file, "correct horse", opslimit=2, memlimit=8 * 1024 * 1024)
    raw = key_file.read_bytes()
    assert bytes([2]) * 32 not in raw  # the seed is not in the file
    assert key_file.stat().st_mode & 0o077 == 0
    with pytest.raises(WrongPassphraseError):
        Identity.load(key_file, "wrong")
    assert Identity.load(key_file, "correct horse").public_key == SITE.public_key
