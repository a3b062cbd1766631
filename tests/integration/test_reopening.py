"""Reopening a store: what the unit tier checks in memory (tests/unit/test_replica.py,
test_trust.py, test_sealing.py) survives closing and reopening a real SQLite file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import offsync.plan.seal as seal_plan
from offsync import ChangeId, Identity, Knowledge, Replica, policies
from offsync.errors import StorageError, UsageError
from offsync.scope import Partition, Stream
from offsync.trust import Certificate
from tests.helpers.trust import (
    SARADAN,
    STRANGER,
    certifying_authority,
    ident,
    reasons,
    replica,
    send,
)

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

POLICIES = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
    "addresses": policies.MultiValue(),
}


def site(i: int) -> Identity:
    return Identity(bytes([i]) * 32, f"site-{i}")


@pytest.fixture
def authority() -> Replica:
    return certifying_authority()


# -- a replica's own writes -------------------------------------------------------------


def test_reopen_continues_seq_without_reuse(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sqlite")
    me = site(1)
    with Replica.open(path, identity=me, policies=POLICIES) as r:
        r.put("residents", "1", {"a": 1})
        bundles = r.pack()
        r.put("residents", "2", {"a": 2})  # written after the last pack: not yet sealed
        before = r.state_digest()
        clock = r.clock.last
    with Replica.open(path, identity=me, policies=POLICIES, wall=lambda: 0) as r:
        assert r.seq == 2
        assert r.state_digest() == before
        assert r.get("residents", "2") == {"a": 2}
        assert r.put("residents", "3", {"a": 3}) == ChangeId(me.public_key, 3)
        assert r.clock.last > clock  # the clock never goes back, even with the wall at 0
        later = r.pack()
    peer = Replica.open(":memory:", identity=site(2), policies=POLICIES)
    for b in bundles + later:
        peer.apply(b)
    assert peer.knowledge() == Knowledge.of(Stream(me.public_key, RESIDENTS_PARTITION), 1, 3)
    assert peer.quarantined() == []
    assert peer.get("residents", "3") == {"a": 3}
    with pytest.raises(UsageError):  # a store belongs to one identity
        Replica.open(path, identity=site(2))


def test_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(StorageError):
        Replica.open(str(path), identity=site(1))


# -- packing -----------------------------------------------------------------------------


# -- trust --------------------------------------------------------------------------------


def test_reopening_with_authorities_reexamines_what_is_held(tmp_path: Path) -> None:
    path = str(tmp_path / "centre.sqlite")
    writer = replica(STRANGER, trust=False)
    writer.put("residents", "3519000000000001", {"name": "x"})
    centre = replica(ident(9), trust=False, path=path)
    send(writer, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "x"}
    centre.close()
    centre = replica(ident(9), trust=True, path=path)
    assert centre.get("residents", "3519000000000001") is None
    assert reasons(centre) == ["trust: unknown signer"]
    centre.close()
    centre = replica(ident(9), trust=False, path=path)
    assert centre.get("residents", "3519000000000001") == {"name": "x"}
    centre.close()


def test_trust_survives_reopening(tmp_path: Path, authority: Replica) -> None:
    path = str(tmp_path / "site.sqlite")
    site = replica(SARADAN, path=path)
    send(authority, site)
    site.close()
    site = replica(SARADAN, path=path)
    assert site.trust_store is not None
    cert = site.trust_store.certificates[SARADAN.public_key]
    assert cert == Certificate(
        SARADAN.public_key, "kec-saradan", ("residents",), ("3519",), 0, None, None
    )
    site.put("residents", "3519000000000001", {"name": "x"})
    site.close()


# -- sealing ------------------------------------------------------------------------------


def test_sealing_survives_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sqlite")
    ident = Identity(b"\x07" * 32, label="site")
    a = Replica.open(path, identity=ident)
    with a.batch():
        for i in range(seal_plan.SEGMENT_MAX_CHANGES + 3):
            a.put("residents", str(i), {"i": i})
    a.close()
    a = Replica.open(path, identity=ident)
    assert [
        (s.first, s.last)
        for s in a._state.segments.get(Stream(ident.public_key, RESIDENTS_PARTITION), ())
    ] == [(1, seal_plan.SEGMENT_MAX_CHANGES)]
    b = Replica.open(":memory:", identity=Identity(bytes([2]) * 32, label="r2"))
    for x in a.pack():
        b.apply(x)
    assert b.state_digest() == a.state_digest()
    assert a.knowledge() == b.knowledge()
