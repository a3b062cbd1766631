"""Merge policies: determinism (check_policy), and the rules of each builtin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import Phase, settings

from offsync import Identity, Replica, policies
from offsync.change import DELETE, PUT, Change, ChangeId
from offsync.encoding import canonical_fields, decode_fields
from offsync.errors import ImmutableRecordError
from offsync.policies import FirstWriterWins, LastWriterWins, MultiValue, Policy, RecordState
from offsync.testing import check_policy
from offsync.testing.policies import ORIGINS

A, B, C = ORIGINS
FAIL_FAST = (Phase.explicit, Phase.generate)  # no shrinking: only the failure matters


def put(origin: bytes, seq: int, hlc: int, parents: Sequence[ChangeId] = (), **f: Any) -> Change:
    return Change(origin, seq, hlc, "c", "k", PUT, canonical_fields(f), tuple(sorted(parents)))


def delete(origin: bytes, seq: int, hlc: int, parents: Sequence[ChangeId] = ()) -> Change:
    return Change(origin, seq, hlc, "c", "k", DELETE, None, tuple(sorted(parents)))


def value(state: RecordState) -> dict[str, Any] | None:
    return None if state.fields is None else decode_fields(state.fields)


# -- determinism -------------------------------------------------------------------------


class ArrivalOrderWins(Policy):
    """Wrong on purpose: the last change handed in wins."""

    def merge(self, changes: Sequence[Change]) -> RecordState:
        return RecordState(changes[-1].fields, (changes[-1].id,))


class UnsortedHeads(Policy):
    """Wrong on purpose: heads in arrival order."""

    def merge(self, changes: Sequence[Change]) -> RecordState:
        return RecordState(policies.fold(changes), tuple(c.id for c in changes))


@pytest.mark.parametrize("bad", [ArrivalOrderWins(), UnsortedHeads()], ids=repr)
def test_check_policy_catches_order_dependence(bad: Policy) -> None:
    with pytest.raises(AssertionError):
        check_policy(bad, settings=settings(max_examples=100, database=None, phases=FAIL_FAST))


# -- last writer wins --------------------------------------------------------------------


def test_lww_is_per_field() -> None:
    a = put(A, 1, 10, name="Siti", village="Kare")
    b = put(B, 1, 20, [a.id], village="Mejayan")
    c = put(C, 1, 15, [a.id], name="Siti Aminah")  # concurrent with b, older stamp
    state = LastWriterWins().merge([c, b, a])
    assert value(state) == {"name": "Siti Aminah", "village": "Mejayan"}
    assert state.heads == tuple(sorted([b.id, c.id]))
    assert not state.conflict


def test_lww_ties_broken_by_origin() -> None:
    a = put(A, 1, 10, v="a")
    b = put(B, 1, 10, v="b")
    assert value(LastWriterWins().merge([b, a])) == {"v": "b"}  # B > A


def test_lww_tombstone_rule() -> None:
    a = put(A, 1, 10, name="x", extra=1)
    d = delete(B, 1, 20, [a.id])
    # The delete clears every field written before it ...
    assert LastWriterWins().merge([a, d]).fields is None
    # ... a later put revives the record with only the fields written after the delete,
    revive = put(C, 1, 30, [d.id], name="y")
    assert value(LastWriterWins().merge([revive, a, d])) == {"name": "y"}
    # ... and a concurrent put older than the delete is cleared by it too.
    older = put(C, 2, 15, [a.id], late=True)
    assert LastWriterWins().merge([a, older, d]).fields is None
    newer = put(C, 3, 25, [a.id], late=True)
    assert value(LastWriterWins().merge([a, newer, d])) == {"late": True}


# -- first writer wins -------------------------------------------------------------------


def test_fww_first_write_stands() -> None:
    a = put(A, 1, 10, dose="Sinovac")
    b = put(B, 1, 20, dose="Pfizer")  # concurrent, later
    state = FirstWriterWins().merge([b, a])
    assert value(state) == {"dose": "Sinovac"}
    assert state.conflict  # the differing concurrent write is surfaced
    same = put(C, 1, 30, dose="Sinovac")
    assert not FirstWriterWins().merge([same, a]).conflict


def test_fww_correction_descends_from_the_standing_write() -> None:
    a = put(A, 1, 10, dose="Sinovac", lot="L1")
    b = put(B, 1, 20, dose="Pfizer")
    fix = put(C, 1, 30, [a.id, b.id], lot="L2")  # a resolution sees both heads
    state = FirstWriterWins().merge([fix, b, a])
    assert value(state) == {"dose": "Pfizer", "lot": "L2"}  # fold of fix's ancestry
    assert state.heads == (fix.id,)
    assert not state.conflict


def test_fww_on_replicas() -> None:
    ident_a, ident_b = Identity(bytes([1]) * 32), Identity(bytes([2]) * 32)
    pol = {"doses": FirstWriterWins()}
    a = Replica.open(":memory:", identity=ident_a, policies=pol, wall=lambda: 1000)
    b = Replica.open(":memory:", identity=ident_b, policies=pol, wall=lambda: 2000)
    a.put("doses", "n/1", {"vaccine": "Sinovac"})
    b.put("doses", "n/1", {"vaccine": "Pfizer"})
    with pytest.raises(ImmutableRecordError):
        a.put("doses", "n/1", {"vaccine": "Moderna"})
    with pytest.raises(ImmutableRecordError):
        a.delete("doses", "n/1")
    for bundle in a.pack(b.knowledge()):
        b.apply(bundle)
    for bundle in b.pack(a.knowledge()):
        a.apply(bundle)
    for rep in (a, b):
        assert rep.get("doses", "n/1") == {"vaccine": "Sinovac"}  # A wrote first
        assert [(c.collection, c.key) for c in rep.conflicts()] == [("doses", "n/1")]
    b.resolve("doses", "n/1", {"vaccine": "Sinovac", "lot": "X9"})  # a correction
    for bundle in b.pack(a.knowledge()):
        a.apply(bundle)
    for rep in (a, b):
        assert rep.get("doses", "n/1") == {"vaccine": "Sinovac", "lot": "X9"}
        assert rep.conflicts() == []
    assert a.state_digest() == b.state_digest()


# -- multi-value -------------------------------------------------------------------------


def test_multivalue_surfaces_and_resolve_settles() -> None:
    pol = {"addresses": MultiValue()}
    a = Replica.open(
        ":memory:", identity=Identity(bytes([1]) * 32), policies=pol, wall=lambda: 1000
    )
    b = Replica.open(
        ":memory:", identity=Identity(bytes([2]) * 32), policies=pol, wall=lambda: 9000
    )
    a.put("addresses", "n", {"street": "Jl. Mawar"})
    for bundle in a.pack(b.knowledge()):
        b.apply(bundle)
    a.put("addresses", "n", {"street": "Jl. Melati"})
    b.put("addresses", "n", {"street": "Jl. Kenanga", "rt": 3})
    for bundle in a.pack(b.knowledge()):
        report = b.apply(bundle)
        assert report.conflicts == [("addresses", "n")]
    for bundle in b.pack(a.knowledge()):
        a.apply(bundle)
    assert a.state_digest() == b.state_digest()
    [conflict] = a.conflicts()
    assert conflict == b.conflicts()[0]
    versions = sorted(conflict.versions.values(), key=repr)
    assert versions == [
        {"street": "Jl. Kenanga", "rt": 3},
        {"street": "Jl. Melati"},
    ]
    # Provisional winner: the head with the greatest stamp (B's clock is ahead).
    assert conflict.current == {"street": "Jl. Kenanga", "rt": 3}
    assert a.get("addresses", "n") == conflict.current
    choice = next(h for h, v in conflict.versions.items() if v == {"street": "Jl. Melati"})
    a.resolve("addresses", "n", choose=choice)
    assert a.conflicts() == []
    assert a.get("addresses", "n") == {"street": "Jl. Melati"}
    for bundle in a.pack(b.knowledge()):
        b.apply(bundle)
    assert b.conflicts() == []
    assert b.get("addresses", "n") == {"street": "Jl. Melati"}


def test_multivalue_equal_versions_are_not_a_conflict() -> None:
    a = put(A, 1, 10, v=1)
    b = put(B, 1, 11, v=1)
    state = MultiValue().merge([a, b])
    assert not state.conflict
    assert state.heads == (a.id, b.id)


# -- order of arrival --------------------------------------------------------------------


@pytest.mark.parametrize("policy", [LastWriterWins(), FirstWriterWins(), MultiValue()], ids=repr)
def test_changes_arriving_before_their_parents_converge(policy: Policy) -> None:
    pol = {"r": policy}
    idents = [Identity(bytes([i]) * 32) for i in (1, 2, 3, 4)]
    a, b, c, late = (
        Replica.open(":memory:", identity=i, policies=pol, wall=lambda: 5000) for i in idents
    )
    a.put("r", "k", {"x": 1, "y": 1})
    for bundle in a.pack():
        b.apply(bundle)
    b.resolve("r", "k", {"y": 2})  # descends from a's change
    c.put("r", "k", {"x": 3})  # concurrent with both
    from_a = a.pack()
    from_b_only = b.pack(since=a.knowledge())  # b's change without its parent
    from_c = c.pack()
    # In order of causality ...
    for bundle in (*from_a, *from_b_only):
        c.apply(bundle)
    for bundle in from_c:
        b.apply(bundle)
    # ... and children first.
    for bundle in (*from_c, *from_b_only, *from_a):
        late.apply(bundle)
    assert late.state_digest() == b.state_digest() == c.state_digest()
    assert late.get("r", "k") == b.get("r", "k")
    assert [x.key for x in late.conflicts()] == [x.key for x in b.conflicts()]
