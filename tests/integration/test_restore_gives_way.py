"""A site restored from the backup of a timeline it abandoned: own changes it holds
unsealed collide with its own sealed history a peer holds.

Found by ``tests/property/test_restore_properties.py`` (seed 3), shrunk: the site is
backed up twice (empty), writes X (own seq 1, unsealed) and is backed up (b2); it is
restored from the first backup (X lost) and writes Y, which reuses seq 1 (nobody held
it), and sends Y to the district (sealed, seq 1). Then it is restored from b2: it holds
X unsealed at seq 1 again, and hears that the district holds its own sealed seq 1 = Y.
X never left the site, so it gives way: Y takes seq 1 and X is issued again as seq 2.
Before the rule, Y was quarantined (this site's own fork) and X could never be sealed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from offsync import Identity, Replica
from offsync.scope import Partition, Stream

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

SITE = Identity(bytes([2]) * 32, "saradan")
DISTRICT = Identity(bytes([5]) * 32, "district")
RESIDENTS = "residents"


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def hear_from(src: Replica, dst: Replica) -> None:
    """A bundle with ``src``'s receipt and nothing ``dst`` lacks (the restore's wait)."""
    for bundle in src.pack(src.knowledge(), always=True):
        dst.apply(bundle)


def back_up(path: Path, name: str) -> Path:
    copy = path.with_name(name)
    shutil.copyfile(path, copy)
    return copy


def restore(copy: Path, path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(copy, path)


def keys(rep: Replica) -> set[str]:
    return {r.key for r in rep.store.iter_records(RESIDENTS) if r.fields is not None}


def test_unsealed_own_changes_give_way_to_the_sealed_history_and_are_issued_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "site.sqlite"
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    site = Replica.open(str(path), identity=SITE)
    site.close()
    b0 = back_up(path, "b0.sqlite")
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "x", {"n": 0})  # X: own seq 1, unsealed
    site.close()
    b2 = back_up(path, "b2.sqlite")

    restore(b0, path)  # X is lost
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "y", {"n": 1})  # Y reuses seq 1: nobody held it
    assert site.seq == 1
    send(site, district)  # the district holds Y, sealed, at seq 1
    site.close()

    restore(b2, path)  # X unsealed at seq 1 again
    site = Replica.open(str(path), identity=SITE)
    assert (site.seq, site.has_unsealed(), keys(site)) == (1, True, {"x"})
    hear_from(district, site)  # the restore's wait: the district's receipt claims seq 1
    assert (
        site.knowledge().max_seq(Stream(SITE.public_key, RESIDENTS_PARTITION)) == 0
    )  # so it sends seq 1 back
    send(district, site)

    # Y holds seq 1 as the world has it; X is kept, issued again as seq 2, unsealed.
    assert site.get(RESIDENTS, "y") == {"n": 1}
    assert site.get(RESIDENTS, "x") == {"n": 0}
    assert (site.seq, site.has_unsealed()) == (2, True)
    assert site.forks() == [] and site.quarantined() == []

    site.put(RESIDENTS, "z", {"n": 2})  # writing is allowed again: seq 3
    assert site.seq == 3
    for _ in range(2):
        send(site, district)
        send(district, site)
    assert not site.has_unsealed()
    assert keys(site) == keys(district) == {"x", "y", "z"}
    assert site.state_digest() == district.state_digest()
    assert site.knowledge() == district.knowledge()
    assert district.knowledge().max_seq(Stream(SITE.public_key, RESIDENTS_PARTITION)) == 3
    assert site.forks() == [] == district.forks()
    assert site.quarantined() == [] == district.quarantined()

    # The site reopened from its file holds the same.
    site.close()
    site = Replica.open(str(path), identity=SITE)
    assert (site.seq, site.has_unsealed(), keys(site)) == (3, False, {"x", "y", "z"})
    site.close()
    district.close()


def test_a_change_that_names_a_displaced_one_as_parent_follows_it(tmp_path: Path) -> None:
    """Two unsealed changes of one record (the second's parent is the first) give way to
    one sealed change: both are issued again, the parent renamed with its change."""
    path = tmp_path / "site.sqlite"
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    site = Replica.open(str(path), identity=SITE)
    site.close()
    b0 = back_up(path, "b0.sqlite")
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "x", {"n": 0})
    site.put(RESIDENTS, "x", {"n": 1, "m": 5})
    site.close()
    b1 = back_up(path, "b1.sqlite")

    restore(b0, path)
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "y", {"n": 9})
    send(site, district)
    site.close()

    restore(b1, path)
    site = Replica.open(str(path), identity=SITE)
    hear_from(district, site)  # the district's receipt claims seq 1
    send(district, site)  # and then it sends seq 1
    assert site.seq == 3
    assert site.get(RESIDENTS, "x") == {"n": 1, "m": 5}
    assert site.conflicts() == []
    send(site, district)
    send(district, site)
    assert not site.has_unsealed()
    assert district.get(RESIDENTS, "x") == {"n": 1, "m": 5}
    assert district.get(RESIDENTS, "y") == {"n": 9}
    assert site.state_digest() == district.state_digest()
    assert site.forks() == [] == district.forks()
    assert site.quarantined() == [] == district.quarantined()
    site.close()
    district.close()


def test_a_change_the_sealed_history_holds_as_it_is_is_not_issued_twice(
    tmp_path: Path,
) -> None:
    """The backup holds X1 unsealed. Restored from it once, the site wrote X2, sealed
    X1 and X2 together and sent them; restored from it again, it wrote X2' at seq 2.
    The segment holds X1 as this site does and X2 where it holds X2': X1 stays as it
    is, X2' gives way and is issued again as seq 3."""
    path = tmp_path / "site.sqlite"
    district = Replica.open(str(tmp_path / "district.sqlite"), identity=DISTRICT)
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "x1", {"n": 1})
    site.close()
    b = back_up(path, "b.sqlite")
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "x2", {"n": 2})
    send(site, district)  # seals X1 and X2 into one segment
    site.close()

    restore(b, path)
    site = Replica.open(str(path), identity=SITE)
    site.put(RESIDENTS, "x2b", {"n": 3})  # X2' at seq 2, unsealed
    hear_from(district, site)
    send(district, site)
    assert (site.seq, site.has_unsealed()) == (3, True)
    assert keys(site) == {"x1", "x2", "x2b"}
    for _ in range(2):
        send(site, district)
        send(district, site)
    assert not site.has_unsealed()
    assert keys(district) == {"x1", "x2", "x2b"}
    assert len(district.store.changes_for(RESIDENTS, "x1")) == 1
    assert site.state_digest() == district.state_digest()
    assert site.forks() == [] == district.forks()
    assert site.quarantined() == [] == district.quarantined()
    site.close()
    district.close()
