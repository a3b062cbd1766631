"""Scopes in the replica: the planning functions (``offsync.plan.scopes``) and a scoped
replica's refusals, skips and bounded packs, on replicas in memory."""

from __future__ import annotations

import pytest

from offsync import Identity, Knowledge, Replica, read_header
from offsync.bundle import build_bundle, open_bundle
from offsync.errors import SignatureError, UsageError
from offsync.limits import DEFAULT_LIMITS
from offsync.plan.scopes import held_scope, leaving, unconfirmed, within
from offsync.scope import Partition, PartitionRule, Scope, Stream
from offsync.segment import Segment

RULE = PartitionRule({"residents": 6, "doses": 6})
A, B = b"\x01" * 32, b"\x02" * 32


def part(collection: str, prefix: str = "") -> Partition:
    return Partition(collection, prefix)


# -- offsync.plan.scopes -----------------------------------------------------------------


def test_held_scope_adds_trust_and_reference_collections() -> None:
    scope = held_scope(Scope({"residents": ["3519"]}), ["vaccine_lots"], RULE)
    assert part("_trust") in scope and part("vaccine_lots") in scope
    assert part("residents", "351901") in scope and part("residents", "361901") not in scope
    assert part("doses", "351901") not in scope  # a collection it does not name
    assert held_scope(None, (), RULE).is_everything


def test_held_scope_refuses_what_a_site_cannot_hold() -> None:
    with pytest.raises(UsageError, match="longer than the partition rule"):
        held_scope(Scope({"residents": ["3519011"]}), (), RULE)  # 7 > L = 6
    with pytest.raises(UsageError, match="reference collection"):
        held_scope(Scope.nothing(), ["residents"], RULE)  # cut into partitions
    with pytest.raises(UsageError):
        held_scope({"residents": []}, (), RULE)  # type: ignore[arg-type]


def test_leaving_lists_held_partitions_outside_the_new_scope() -> None:
    held = [part("residents", "351901"), part("residents", "361901"), part("_trust")]
    new = Scope({"residents": ["35"]}).including("_trust")
    assert leaving(held, new) == [part("residents", "361901")]
    assert leaving(held, Scope.everything()) == []
    assert leaving(reversed(held), Scope.nothing()) == sorted(held)


def test_unconfirmed_own_streams_block_a_shrink() -> None:
    s35 = Stream(A, part("residents", "351901"))
    s36 = Stream(A, part("residents", "361901"))
    own = {s35: (4, 4, 2), s36: (3, 3, 3)}
    assert unconfirmed(own, Scope({"residents": ["36"]})) == [s35]  # 3, 4 not held by a peer
    assert unconfirmed(own, Scope({"residents": ["35"]})) == []  # 36's are all claimed
    assert unconfirmed({s35: (5, 4, 5)}, Scope.nothing()) == []
    assert unconfirmed(own, Scope.everything()) == []


def test_within_splits_streams_by_scope() -> None:
    s35 = Stream(A, part("residents", "351901"))
    s36 = Stream(B, part("residents", "361901"))
    assert within(Scope({"residents": ["35"]}), [s36, s35]) == ([s35], [s36])


# -- a scoped replica ----------------------------------------------------------------------


def replica(n: int, scope: Scope | None = None) -> Replica:
    return Replica.open(
        ":memory:",
        identity=Identity(bytes([n]) * 32, f"site-{n}"),
        partitions=RULE,
        reference=["vaccine_lots"],
        scope=scope,
    )


DISTRICT = Scope({"residents": ["351901"], "doses": ["351901"]})


def test_a_scoped_replica_writes_only_its_scope() -> None:
    with replica(1, DISTRICT) as site:
        site.put("residents", "3519010101", {"name": "Ani"})
        site.put("vaccine_lots", "L1", {"maker": "x"})  # reference data: every site's
        with pytest.raises(UsageError, match="outside this replica's scope"):
            site.put("residents", "3619010101", {"name": "Budi"})
        with pytest.raises(UsageError, match="outside this replica's scope"):
            site.put("addresses", "k", {"street": "y"})
        assert site.seq == 2 and site.get("residents", "3619010101") is None


def test_out_of_scope_segments_are_counted_not_kept() -> None:
    with replica(1) as centre, replica(2, DISTRICT) as site:
        centre.put("residents", "3519010101", {"name": "Ani"})
        centre.put("residents", "3619010101", {"name": "Budi"})
        centre.put("doses", "3619010101", {"lot": "L1"})
        (bundle,) = centre.pack()
        report = site.apply(bundle)
        assert (report.applied, report.out_of_scope, report.quarantined) == (1, 2, 0)
        assert report.ranges == read_header(bundle)[0].ranges.restrict(site.scope)
        assert [k for k, _ in site.items("residents")] == ["3519010101"]
        assert site.knowledge() == centre.knowledge().restrict(site.scope)
        assert site.quarantined() == []
        again = site.apply(bundle)  # the same bundle again: the same skip, nothing held
        assert (again.duplicates, again.out_of_scope) == (1, 2)


def test_pack_for_a_scope_sends_only_it_and_bounds_the_receipt() -> None:
    with replica(1) as centre, replica(2, DISTRICT) as site, replica(3) as other:
        other.put("residents", "3619010101", {"name": "Budi"})
        site.put("residents", "3519010102", {"name": "Cici"})
        for b in [*other.pack(), *site.pack()]:
            centre.apply(b)
        centre.put("residents", "3519010101", {"name": "Ani"})
        bundles = list(centre.iter_pack(site.knowledge(), receiver=site.id, scope=site.scope))
        (bundle,) = bundles
        header, _ = read_header(bundle)
        assert header.ranges == Knowledge.of(Stream(centre.id, part("residents", "351901")), 1, 1)
        stated = header.receipts[0].knowledge
        assert stated == centre.knowledge().restrict(site.scope)
        assert other.id not in set(stated.origins()), "nothing outside the receiver's scope"
        (unscoped,) = centre.pack(site.knowledge(), scope=Scope.everything())
        sent = set(read_header(unscoped)[0].ranges.streams())
        assert Stream(other.id, part("residents", "361901")) in sent, "everything: no bound"


@pytest.mark.parametrize(
    ("reference", "refusal"),
    [(["residents"], "reference collection"), ("vaccine_lots", "not one str")],
)
def test_reference_collections_are_a_list_of_one_partition_each(
    reference: list[str] | str, refusal: str
) -> None:
    with pytest.raises(UsageError, match=refusal):
        Replica.open(
            ":memory:",
            identity=Identity(b"\x01" * 32, "x"),
            partitions=RULE,
            reference=reference,
        )


def test_a_group_commit_skips_out_of_scope_segments_too() -> None:
    with replica(1) as centre, replica(2, DISTRICT) as site:
        centre.put("residents", "3519010101", {"name": "Ani"})
        first = centre.pack()
        centre.put("residents", "3619010101", {"name": "Budi"})
        second = centre.pack(centre.knowledge().restrict(site.scope))  # only 361901
        with site.group_commit() as group:
            report = group.apply([*first, *second])
        assert (report.applied, report.out_of_scope) == (1, 1)
        assert site.knowledge() == centre.knowledge().restrict(site.scope)


def test_setting_the_same_scope_changes_nothing() -> None:
    with replica(1, DISTRICT) as site:
        site.put("residents", "3519010101", {"name": "Ani"})
        digest, known = site.state_digest(), site.knowledge()
        site.set_scope(DISTRICT)
        assert (site.state_digest(), site.knowledge(), site.scope) == (
            digest,
            known,
            DISTRICT.including("_trust", "vaccine_lots"),
        )


def test_a_reader_scope_adds_trust_and_the_reference_collections() -> None:
    with replica(1) as centre:
        read = Scope({"residents": ["351901"]})
        held = centre.reader_scope(read)
        assert held == read.including("_trust", "vaccine_lots")
        assert centre.scope.is_everything  # the centre's own scope is not changed
        with pytest.raises(UsageError, match="longer than the partition rule"):
            centre.reader_scope(Scope({"residents": ["35190101"]}))


def test_a_scoped_receipt_states_the_streams_of_the_sites_the_receiver_relays_for() -> None:
    with replica(1) as centre, replica(2, DISTRICT) as site, replica(3) as behind:
        behind.put("residents", "3619010101", {"name": "Budi"})  # outside the scope
        for b in behind.pack():
            centre.apply(b)
        alone = list(centre.iter_pack(None, receiver=site.id, scope=site.scope, always=True))
        relayed = list(
            centre.iter_pack(
                None, receiver=site.id, scope=site.scope, always=True, relays_for=[behind.id]
            )
        )
        assert behind.id not in set(read_header(alone[0])[0].receipts[0].knowledge.origins())
        stated = read_header(relayed[0])[0].receipts[0].knowledge
        assert stated.restrict_origins([behind.id]) == behind.knowledge()


def _with_bad_signature(bundle: bytes, sender: Identity, partition: str) -> bytes:
    """``bundle`` again, with the origin's signature of its segment of ``partition``
    broken (the bundle itself signed anew by its sender)."""
    header, _ = read_header(bundle)
    segments = [s.encode() for s in open_bundle(bundle, sender, DEFAULT_LIMITS).segments]
    for i, data in enumerate(segments):
        if Segment.decode(data).partition.prefix == partition:
            segments[i] = data[:-1] + bytes([data[-1] ^ 1])  # the signature is last
    return build_bundle(
        sender, segments, ranges=header.ranges, receipts=header.receipts, created=header.created
    )


def test_out_of_scope_segments_are_not_verified_but_in_scope_ones_are() -> None:
    """A segment a scoped replica does not keep is not judged: a bad signature there
    refuses the bundle for a replica that holds it, not for one that does not."""
    writer = Identity(b"\x05" * 32, "writer")
    with Replica.open(":memory:", identity=writer, partitions=RULE) as source:
        source.put("residents", "3519010101", {"name": "Ani"})
        source.put("residents", "3619010101", {"name": "Budi"})
        (bundle,) = source.pack()
    broken_36 = _with_bad_signature(bundle, writer, "361901")
    broken_35 = _with_bad_signature(bundle, writer, "351901")
    with replica(1, DISTRICT) as site, replica(2) as centre, replica(3, DISTRICT) as other:
        assert site.apply(broken_36).applied == 1  # 361901 is not for it
        with pytest.raises(SignatureError):
            centre.apply(broken_36)
        with pytest.raises(SignatureError):
            other.apply(broken_35)  # 351901 is, and it is judged
        assert centre.knowledge() == Knowledge() == other.knowledge()


def test_a_scope_does_not_change_inside_a_batch() -> None:
    with replica(1, DISTRICT) as site:
        with site.batch(), pytest.raises(UsageError, match="inside a batch"):
            site.set_scope(Scope.nothing())
        assert site.scope == DISTRICT.including("_trust", "vaccine_lots")
