"""Scoped replicas on SQLite files: the scope is kept in the store, grows by fetching
what it lacks, and shrinks by removing what left it from that file only."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Replica, read_header
from offsync.errors import SequenceReuseError, UsageError
from offsync.scope import Partition, PartitionRule, Scope, Stream

RULE = PartitionRule({"residents": 6, "doses": 6})
LOTS = ["vaccine_lots"]
D35 = Scope({"residents": ["351901"], "doses": ["351901"]})
D36 = Scope({"residents": ["361901"], "doses": ["361901"]})
CENTRE, SITE = Identity(b"\x01" * 32, "centre"), Identity(b"\x02" * 32, "site")


def open_site(path: Path, scope: Scope | None = None, *, read_only: bool = False) -> Replica:
    return Replica.open(
        str(path),
        identity=SITE,
        partitions=RULE,
        reference=LOTS,
        scope=scope,
        read_only=read_only,
    )


def exchange(centre: Replica, site: Replica) -> None:
    """A pull and a push, the centre packing for the site's scope."""
    for b in site.pack(centre.knowledge()):
        centre.apply(b)
    for b in centre.pack(site.knowledge(), scope=site.scope, always=True):
        site.apply(b)


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Replica]:
    with Replica.open(str(tmp_path / "centre.db"), identity=CENTRE, partitions=RULE) as rep:
        rep.put("residents", "3519010101", {"name": "Ani"})
        rep.put("residents", "3619010101", {"name": "Budi"})
        rep.put("doses", "3619010101", {"lot": "L1"})
        rep.put("vaccine_lots", "L1", {"maker": "x"})
        yield rep


def test_scope_is_kept_and_reopening_without_one_keeps_it(tmp_path: Path, centre: Replica) -> None:
    path = tmp_path / "site.db"
    with open_site(path, D35) as site:
        exchange(centre, site)
        held = site.scope
        digest = site.state_digest()
    assert held == D35.including("_trust", *LOTS)
    with open_site(path) as site:  # scope=None: as the store keeps it
        assert site.scope == held and site.state_digest() == digest
    with open_site(path, read_only=True) as site:
        assert site.scope == held
    with pytest.raises(UsageError, match="read-only"):
        open_site(path, D35 | D36, read_only=True)
    with pytest.raises(UsageError, match="longer than the partition rule"):
        open_site(path, Scope({"residents": ["3519010"]}))
    assert digest == centre.state_digest(scope=held)


def test_growing_fetches_exactly_what_is_lacking(tmp_path: Path, centre: Replica) -> None:
    path = tmp_path / "site.db"
    with open_site(path, D35) as site:
        exchange(centre, site)
        assert [k for k, _ in site.items("doses")] == []
    with open_site(path, D35 | D36) as site:  # reopened with a bigger scope: a growth
        lacking = centre.knowledge().restrict(site.scope) - site.knowledge()
        assert set(p.prefix for p in (s.partition for s in lacking.streams())) == {"361901"}
        exchange(centre, site)
        assert site.state_digest() == centre.state_digest()
        assert site.knowledge() == centre.knowledge()


def test_shrinking_removes_what_left_from_this_file_only(tmp_path: Path, centre: Replica) -> None:
    path = tmp_path / "site.db"
    with open_site(path, D35 | D36) as site:
        site.put("residents", "3619010102", {"name": "Cici"})
        with pytest.raises(UsageError, match="not yet held by a peer"):
            site.set_scope(D35)  # its own change in 361901 has not left this site
        assert site.scope == (D35 | D36).including("_trust", *LOTS)
        exchange(centre, site)
        exchange(centre, site)  # the centre's receipt now states the site's change
        site.set_scope(D35)
        assert site.state_digest() == centre.state_digest(scope=site.scope)
        assert site.knowledge() == centre.knowledge().restrict(site.scope)
        assert site.get("residents", "3619010101") is None
    # Nothing of 361901 is left in the file: segments, records, changes, outbox.
    assert rows(path, "SELECT prefix FROM segments WHERE prefix = '361901'") == []
    assert (
        rows(
            path,
            "SELECT seq FROM part_outbox JOIN partitions ON part = id WHERE prefix = '361901'",
        )
        == []
    )
    for table in ("records", "changes"):
        assert rows(path, f"SELECT key FROM {table} WHERE key LIKE '361901%'") == []
    assert centre.get("residents", "3619010102") == {"name": "Cici"}  # the centre keeps all


def test_own_history_comes_back_before_writing_there_again(tmp_path: Path, centre: Replica) -> None:
    path = tmp_path / "site.db"
    with open_site(path, D35 | D36) as site:
        site.put("residents", "3619010102", {"name": "Cici"})
        exchange(centre, site)
        exchange(centre, site)
        site.set_scope(D35)
        mine = Stream(SITE.public_key, Partition("residents", "361901"))
        assert site.seqs()[mine] == (0, 0)
    with open_site(path, D35 | D36) as site:  # grown back, after a reopen
        with pytest.raises(SequenceReuseError):
            site.put("residents", "3619010103", {"name": "Dedi"})  # seq 1 was issued
        exchange(centre, site)  # its own segment comes back from the centre
        assert site.seqs()[mine] == (1, 1)
        site.put("residents", "3619010103", {"name": "Dedi"})
        exchange(centre, site)
        assert centre.get("residents", "3619010103") == {"name": "Dedi"}
        assert centre.quarantined() == [] and site.quarantined() == []


def test_a_relay_bundle_for_others_leaves_a_scoped_site_untouched(
    tmp_path: Path, centre: Replica
) -> None:
    with open_site(tmp_path / "site.db", D35) as site:
        exchange(centre, site)
        digest, known = site.state_digest(), site.knowledge()
        other = centre.pack(site.knowledge())  # unscoped: 361901 travels too
        report = site.apply(other[0])
        assert report.out_of_scope == 2 and report.applied == 0
        assert (site.state_digest(), site.knowledge()) == (digest, known)


def test_after_a_shrink_a_quiet_round_tells_the_peer_again(tmp_path: Path, centre: Replica) -> None:
    """A peer believes what a site told it it holds; after a shrink the site's next
    quiet round is not quiet: its receipt, taken at its word, no longer claims what
    left (so the peer sends it again should the scope grow back)."""
    with open_site(tmp_path / "site.db", D35 | D36) as site:
        exchange(centre, site)

        def quiet_round() -> list[bytes]:
            sent = list(site.iter_pack(centre.knowledge(), receiver=centre.id, quiet=True))
            for b in sent:
                centre.apply(b)
            site.told(centre.id, [read_header(b)[0] for b in sent])
            return sent

        quiet_round()
        assert quiet_round() == [], "nothing new to say: no bundle"
        site.set_scope(D35)
        (bundle,) = quiet_round()
        stated = read_header(bundle)[0].receipts[0].knowledge
        assert stated == site.knowledge().restrict_origins([centre.id, site.id])
        assert not any(s.prefix == "361901" for s in stated.streams())
