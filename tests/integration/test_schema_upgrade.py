"""Schema versions in real replicas (SQLite files), the issue's case: a site twelve
months and four schema versions behind merges a year of bundles, replayed in random
order, with no reset and no loss; and what opening with other schemas does."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from offsync import Replica
from offsync.errors import UsageError
from offsync.identity import Identity
from offsync.schemas import Schema, Schemas


def _v1_to_2(f: dict[str, Any]) -> dict[str, Any]:
    out = dict(f)
    name = out.pop("name", None)
    if name is not None:
        out["given"], _, out["family"] = name.partition(" ")
    return out


def _v2_to_3(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "region": f.get("region", "unknown")}


def _v3_to_4(f: dict[str, Any]) -> dict[str, Any]:
    out = dict(f)
    if "village" in out:
        out["desa"] = out.pop("village")
    return out


def _v4_to_5(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "checked": bool(f.get("checked", False))}


STEPS = {1: _v1_to_2, 2: _v2_to_3, 3: _v3_to_4, 4: _v4_to_5}


def schemas(version: int) -> Schemas:
    return Schemas({"residents": Schema(version, {v: STEPS[v] for v in range(1, version)})})


def _fields(version: int, month: int, i: int) -> dict[str, Any]:
    """What a site at ``version`` writes (each version's own field names)."""
    base: dict[str, Any] = {"village": f"v{month}"} if version < 4 else {"desa": f"v{month}"}
    if version < 2:
        base["name"] = f"Siti M{month}"
    else:
        base["given"], base["family"] = "Siti", f"M{month}"
    if version >= 3:
        base["region"] = "east"
    if version >= 5:
        base["checked"] = i % 2 == 0
    return base


def test_a_site_four_versions_behind_merges_a_year_of_bundles_in_random_order(
    tmp_path: Path,
) -> None:
    centre_id, far_id = Identity.generate("centre"), Identity.generate("far")
    bundles: list[bytes] = []
    centre = Replica.open(str(tmp_path / "c.db"), identity=centre_id, schemas=schemas(1))
    for month in range(12):
        version = 1 + month // 3 + (1 if month == 11 else 0)  # 1 … 5 over the year
        if version != centre.schemas.version("residents"):
            centre.close()
            centre = Replica.open(
                str(tmp_path / "c.db"), identity=centre_id, schemas=schemas(version)
            )
        known = centre.knowledge()
        for i in range(5):
            key = f"35{(month * 5 + i) % 17:04d}"  # records edited again over the year
            centre.put("residents", key, _fields(version, month, i), author=f"clerk-{month}")
        bundles += centre.pack(since=known)
    assert centre.schemas.version("residents") == 5
    random.Random(15).shuffle(bundles)
    far = Replica.open(str(tmp_path / "f.db"), identity=far_id, schemas=schemas(1))
    for b in bundles:
        far.apply(b)
    # Nothing is lost: every change is held, the newer ones quarantined for schema.
    assert far.knowledge() == centre.knowledge()
    held = far.quarantined()
    assert held and all(q.reason.startswith("schema:") for q in held)
    far.close()
    centre.close()
    with pytest.raises(UsageError, match="older schema"):
        Replica.open(str(tmp_path / "c.db"), identity=centre_id, schemas=schemas(4))
    centre = Replica.open(str(tmp_path / "c.db"), identity=centre_id, schemas=schemas(5))
    far = Replica.open(str(tmp_path / "f.db"), identity=far_id, schemas=schemas(5))
    assert not far.quarantined()
    assert far.state_digest() == centre.state_digest()
    for key in {f"35{n % 17:04d}" for n in range(60)}:
        assert far.get("residents", key) == centre.get("residents", key)
        got = far.get("residents", key)
        assert got is not None and "desa" in got and "region" in got and "checked" in got
    far.close()
    centre.close()


def _count(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "steps": f.get("steps", 0) + 1}


def test_stored_changes_are_upcast_once_per_upgrade(tmp_path: Path) -> None:
    """Opening with a newer version moves what the store holds up once; opening again
    with the same schemas changes nothing; an unversioned store takes versions too."""
    me = Identity.generate("site")
    path = str(tmp_path / "s.db")
    with Replica.open(path, identity=me) as site:  # no schemas: unversioned (reads as 1)
        site.put("residents", "a", {"name": "x"})
    two = Schemas({"residents": Schema(2, {1: _count})})
    three = Schemas({"residents": Schema(3, {1: _count, 2: _count})})
    for _ in range(2):
        with Replica.open(path, identity=me, schemas=two) as site:
            assert site.get("residents", "a") == {"name": "x", "steps": 1}
            digest = site.state_digest()
    with Replica.open(path, identity=me, schemas=two) as site:
        assert site.state_digest() == digest
        site.put("residents", "b", {"name": "y"})  # written at 2
    with Replica.open(path, identity=me, schemas=three) as site:
        assert site.get("residents", "a") == {"name": "x", "steps": 2}
        assert site.get("residents", "b") == {"name": "y", "steps": 1}
        assert [e.schema for e in site.history("residents", "b")] == [2]
        assert site.history("residents", "a")[0].fields == {"name": "x"}  # as written
    with pytest.raises(UsageError, match="older schema"):
        Replica.open(path, identity=me)  # no schemas: a downgrade of residents


def test_a_read_only_open_reads_whatever_schemas_it_is_given(tmp_path: Path) -> None:
    me = Identity.generate("site")
    path = str(tmp_path / "s.db")
    with Replica.open(path, identity=me, schemas=schemas(3)) as site:
        site.put("residents", "a", {"given": "x"}, author="clerk-1")
    with Replica.open(path, identity=me, read_only=True) as reader:  # as the CLI opens it
        assert reader.get("residents", "a") == {"given": "x"}
        assert [(e.author, e.schema) for e in reader.history("residents", "a")] == [("clerk-1", 3)]
    with Replica.open(path, identity=me, schemas=schemas(3)) as site:
        assert site.get("residents", "a") == {"given": "x"}
