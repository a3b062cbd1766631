"""A site restored from a backup taken before it sealed: peers claim seqs it issued but
never sealed here.

The backup holds own changes in the outbox, unsealed; after the backup the site sealed
them and a peer took them. Restored, the site's own seq is as high as the peer's claim,
but its sealed seq is lower. It must not write until the peer has sent those segments
back (sealing them again could cut them differently: a fork), and its knowledge must
not list them, or the peer never sends them and the site's new changes never leave.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.errors import SequenceReuseError
from offsync.plan.seal import SEGMENT_MAX_BYTES
from offsync.scope import Partition, Stream
from offsync.sync import sync
from offsync.transports.memory import LoopbackTransport

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

SITE = Identity(bytes([2]) * 32, "saradan")
DISTRICT = Identity(bytes([5]) * 32, "district")


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def receipt_only(src: Replica, dst: Replica) -> None:
    """A bundle that carries ``src``'s receipt and nothing ``dst`` lacks."""
    for bundle in src.pack(src.knowledge(), always=True):
        dst.apply(bundle)


def restore(copy: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(copy, path)


def restored_site(tmp_path: Path, district: Replica, *, written: int, sealed_after: int) -> Path:
    """A site whose backup holds ``written`` unsealed puts; after the backup it wrote
    up to ``sealed_after`` in all, sealed them and sent them to ``district``; then it
    was restored from the backup."""
    path = tmp_path / "site.sqlite"
    site = Replica.open(str(path), identity=SITE)
    for i in range(written):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
    site.close()
    saved = path.with_name("site.sqlite.bak")
    shutil.copyfile(path, saved)
    site = Replica.open(str(path), identity=SITE)
    for i in range(written, sealed_after):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
    send(site, district)  # seals them all
    site.close()
    restore(saved, path)
    return path


def test_a_claim_below_the_issued_seq_still_stops_writes_until_the_changes_are_back(
    tmp_path: Path,
) -> None:
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    path = restored_site(tmp_path, district, written=3, sealed_after=3)
    site = Replica.open(str(path), identity=SITE)
    assert (site.seq, site.has_unsealed()) == (3, True)
    receipt_only(district, site)  # the district claims seqs 1..3, which we hold unsealed
    with pytest.raises(SequenceReuseError, match="not sealed"):
        site.put("residents", "3519000000000099", {"n": 99})
    assert site.seq == 3
    # Our knowledge no longer hides what the district holds: it sends it back.
    assert site.knowledge().max_seq(Stream(SITE.public_key, RESIDENTS_PARTITION)) == 0
    send(district, site)
    assert site.has_unsealed() is False and site.seq_claims()[0].seq == 3
    site.put("residents", "3519000000000099", {"n": 99})
    send(site, district)
    send(district, site)
    assert district.get("residents", "3519000000000099") == {"n": 99}
    assert district.quarantined() == [] and site.quarantined() == []
    assert district.forks() == [] and site.forks() == []
    assert district.state_digest() == site.state_digest()
    assert district.knowledge() == site.knowledge()
    site.close()
    district.close()


def test_the_peer_holds_part_of_what_the_backup_holds_unsealed(tmp_path: Path) -> None:
    """The backup holds seqs 1..4 unsealed; after it, the site sealed them as two
    segments (1..2 and 3..4, cut at SEGMENT_MAX_BYTES) and the district took only the
    first bundle. Restored, the site cannot know that 3..4 reached no one else."""
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    path = tmp_path / "site.sqlite"
    site = Replica.open(str(path), identity=SITE)
    photos = [random.Random(i).randbytes(SEGMENT_MAX_BYTES // 2 - 1000) for i in range(4)]
    for i in range(4):
        site.put("residents", f"35190000000000{i:02d}", {"n": i, "photo": photos[i]})
    site.close()
    saved = path.with_name("site.sqlite.bak")
    shutil.copyfile(path, saved)
    site = Replica.open(str(path), identity=SITE)
    first, *rest = site.pack(district.knowledge(), max_bytes=SEGMENT_MAX_BYTES * 3 // 2)
    assert rest  # the link broke after the first bundle
    district.apply(first)
    assert district.knowledge().max_seq(Stream(SITE.public_key, RESIDENTS_PARTITION)) == 2
    site.close()
    restore(saved, path)

    site = Replica.open(str(path), identity=SITE)
    # The district claims 1..2; the receipt it passes on, ours from before the loss,
    # says we had sealed 1..4: a peer not heard from yet may hold 3..4.
    receipt_only(district, site)
    with pytest.raises(SequenceReuseError, match="up to seq 4"):
        site.put("residents", "3519000000000099", {"n": 99})
    send(district, site)  # 1..2 come back; 3..4 wait in the outbox, unsealed
    assert (site.seq, site.has_unsealed()) == (4, True)
    assert site.knowledge().max_seq(Stream(SITE.public_key, RESIDENTS_PARTITION)) == 2
    # Still refused: 3..4 must come back as sealed before the loss, or the site moves
    # to a new key. Nothing was written twice, and nothing was lost here.
    with pytest.raises(SequenceReuseError, match="sealed up to seq 2"):
        site.put("residents", "3519000000000099", {"n": 99})
    assert site.get("residents", "3519000000000003") == {"n": 3, "photo": photos[3]}
    send(site, district)
    assert district.quarantined() == [] and site.quarantined() == []
    assert district.forks() == [] and site.forks() == []
    assert district.knowledge().max_seq(Stream(SITE.public_key, RESIDENTS_PARTITION)) == 2
    site.close()
    district.close()


def test_one_sync_round_brings_the_sealed_changes_back_and_delivers_the_next(
    tmp_path: Path,
) -> None:
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    path = restored_site(tmp_path, district, written=3, sealed_after=3)
    site = Replica.open(str(path), identity=SITE)
    report = sync(site, LoopbackTransport(district))  # the district's claim, then 1..3
    assert not site.has_unsealed() and report.received
    site.put("residents", "3519000000000099", {"n": 99})
    sync(site, LoopbackTransport(district))
    assert district.get("residents", "3519000000000099") == {"n": 99}
    assert district.quarantined() == [] and district.forks() == []
    assert district.state_digest() == site.state_digest()
    site.close()
    district.close()
