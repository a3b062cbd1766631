"""Restoring a site whose unsealed changes carry authors and schema versions: the
peers' sealed copies of them are recognised as its own work coming back (the store
keeps changes to fold, without authors and upcast, so the comparison is on what
identifies a change), not flagged as a fork."""

from __future__ import annotations

import shutil
from pathlib import Path

from offsync import Identity, Replica
from offsync.schemas import Schema, Schemas

SITE = Identity(bytes([2]) * 32, "saradan")
DISTRICT = Identity(bytes([5]) * 32, "district")
SCHEMAS = Schemas({"residents": Schema(2, {1: lambda f: {**f, "v": 2}})})


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def test_unsealed_changes_with_authors_come_back_as_their_own(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    site = Replica.open(str(path), identity=SITE, schemas=SCHEMAS, author="clerk-1")
    for i in range(3):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
    site.close()
    saved = path.with_name("site.bak")
    shutil.copyfile(path, saved)  # seqs 1..3, unsealed
    site = Replica.open(str(path), identity=SITE, schemas=SCHEMAS)
    district = Replica.open(":memory:", identity=DISTRICT, schemas=SCHEMAS)
    send(site, district)  # seals 1..3
    site.put("residents", "3519000000000003", {"n": 3}, author="clerk-2")
    send(site, district)  # seals 4
    site.close()

    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(saved, path)
    site = Replica.open(str(path), identity=SITE, schemas=SCHEMAS)
    assert site.seq == 3
    send(district, site)
    assert site.quarantined() == [] and site.forks() == []
    assert site.seq == 4
    site.put("residents", "3519000000000004", {"n": 4})
    send(site, district)
    assert district.quarantined() == [] and district.forks() == []
    assert district.state_digest() == site.state_digest()
    assert [e.author for e in site.history("residents", "3519000000000003")] == ["clerk-2"]
    site.close()
    district.close()
