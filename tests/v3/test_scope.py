"""Partitions, streams, the partition rule and scopes (offsync.scope, format 3 §4).

The scope algebra is checked against its definition, pointwise: a partition is in
``S | T`` exactly when it is in S or in T, and so on, for scopes built by any mix of
unions, intersections and differences; and knowledge restricted to a union is the
union of the restrictions (what a scope that grew must fetch is ``new - old``).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offsync.errors import BundleFormatError, UsageError
from offsync.scope import Partition, PartitionRule, Scope, Stream
from offsync.v3.knowledge import Knowledge

from .strategies import COLLECTIONS, ORIGINS, PREFIXES, knowledge_models, partitions, scopes

#: Partition prefixes probed: every scope prefix, extensions of them, and others.
PROBES = [
    Partition(c, q)
    for c in (*COLLECTIONS, "other")
    for q in {*PREFIXES, "351901", "3520", "361", "49", "éé", "x"}
]


def members(scope: Scope) -> set[Partition]:
    return {p for p in PROBES if p in scope}


def test_partition_and_stream_are_validating_values() -> None:
    p = Partition("residents", "351901")
    assert (p.collection, p.prefix) == ("residents", "351901")
    assert eval(repr(p)) == p
    s = Stream(ORIGINS[0], p)
    assert eval(repr(s)) == s and s.collection == "residents" and s.prefix == "351901"
    assert Partition("a", "b") < Partition("a", "c") < Partition("b", "")
    for bad in [("", ""), ("x" * 65, ""), (1, ""), ("c", None), ("c", "x" * 513), ("\ud800", "")]:
        with pytest.raises(UsageError):
            Partition(*bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        Stream(b"short", p)
    with pytest.raises(UsageError):
        Stream(ORIGINS[0], ("residents", ""))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        p._replace(collection="")
    with pytest.raises(AttributeError):
        p.prefix = "x"  # type: ignore[misc]


def test_the_partition_rule() -> None:
    rule = PartitionRule({"residents": 6, "doses": 6, "lots": 0})
    assert rule == PartitionRule({"doses": 6, "residents": 6})  # 0 is the default
    assert eval(repr(rule)) == rule and hash(rule) == hash(PartitionRule(dict(rule.lengths)))
    assert rule.partition_of("residents", "3519010101900001") == Partition("residents", "351901")
    assert rule.partition_of("residents", "35") == Partition("residents", "35")
    assert rule.partition_of("lots", "CV-1") == Partition("lots", "")
    assert rule.partition_of("residents", "3519éééé") == Partition(
        "residents", "3519éé"
    )  # code points
    assert rule.owns(Partition("residents", "351901"), "3519019999")
    assert not rule.owns(Partition("residents", "3519"), "3519019999")
    assert rule.is_partition(Partition("residents", "35")) and not rule.is_partition(
        Partition("lots", "x")
    )
    with pytest.raises(UsageError, match="_trust"):
        PartitionRule({"_trust": 2})
    assert PartitionRule({"_trust": 0}).length("_trust") == 0
    for bad in [{"residents": -1}, {"residents": 513}, {"residents": True}, {"": 1}]:
        with pytest.raises(UsageError):
            PartitionRule(bad)


def test_scope_membership_follows_the_definition() -> None:
    scope = Scope({"residents": ["3519", "3520"], "lots": []})
    assert Partition("residents", "351901") in scope
    assert Stream(ORIGINS[0], Partition("residents", "352001")) in scope
    assert Partition("residents", "35") not in scope  # coarser than a scope prefix
    assert Partition("residents", "361901") not in scope
    assert Partition("lots", "") in scope and Partition("lots", "anything") in scope
    assert Partition("doses", "351901") not in scope
    assert scope.contains_record("residents", "3519010101900001")
    assert Partition("anything", "x") in Scope.everything()
    assert Partition("anything", "x") not in Scope.nothing()
    with pytest.raises(UsageError):
        ("residents", "3519") in scope  # noqa: B015 - a plain tuple is not a partition


def test_scope_construction_is_canonical() -> None:
    assert Scope({"r": ["35", "3519"]}) == Scope({"r": ["35"]})  # 3519 is inside 35
    assert Scope({"r": [""]}) == Scope({"r": []}) == Scope.whole("r")
    assert Scope({"r": {"35": False}}) == Scope.nothing() == Scope({})
    assert Scope.everything() - Scope.everything() == Scope.nothing()
    assert Scope.everything() == Scope({"r": []}, others=[])
    for s in [Scope({"r": ["35"]}), Scope.everything() - Scope({"r": ["35"]}), Scope.nothing()]:
        assert eval(repr(s)) == s and hash(eval(repr(s))) == hash(s)
    with pytest.raises(UsageError, match="list of str"):
        Scope({"r": "35"})  # type: ignore[dict-item]
    with pytest.raises(AttributeError):
        Scope.nothing()._others = {}  # type: ignore[misc]


@given(scopes(), scopes())
def test_scope_algebra_is_pointwise(s: Scope, t: Scope) -> None:
    ms, mt = members(s), members(t)
    assert members(s | t) == ms | mt
    assert members(s & t) == ms & mt
    assert members(s - t) == ms - mt
    assert (s - t).is_empty == (s <= t)
    if s <= t:
        assert ms <= mt
    assert s | t == t | s and s & t == t & s
    assert (s - t) | (s & t) == s  # canonical: equal sets are equal values
    assert Scope.everything() - (s | t) == (Scope.everything() - s) & (Scope.everything() - t)
    assert eval(repr(s)) == s


@given(scopes(), scopes(), scopes())
def test_scope_algebra_laws(s: Scope, t: Scope, u: Scope) -> None:
    assert (s | t) | u == s | (t | u)
    assert (s & t) & u == s & (t & u)
    assert s & (t | u) == (s & t) | (s & u)
    assert s | (s & t) == s


@given(knowledge_models(), scopes(), scopes())
def test_restriction_then_union(model: dict[Stream, set[int]], s: Scope, t: Scope) -> None:
    from .strategies import intervals_of

    k = Knowledge({stream: intervals_of(seqs) for stream, seqs in model.items()})
    assert k.restrict(s) | k.restrict(t) == k.restrict(s | t)
    assert k.restrict(s) & k.restrict(t) == k.restrict(s & t)
    assert k.restrict(s) - k.restrict(t) == k.restrict(s - t)
    assert set(k.restrict(s).streams()) == {x for x in model if x.partition in s}
    assert s.restrict(k) == k.restrict(s)


def test_validate_against_the_rule() -> None:
    rule = PartitionRule({"residents": 6})
    Scope({"residents": ["351901", "35"], "lots": []}).validate(rule)
    with pytest.raises(UsageError, match="part of a partition"):
        Scope({"residents": ["3519010"]}).validate(rule)
    with pytest.raises(UsageError, match="part of a partition"):
        Scope({"lots": ["x"]}).validate(rule)
    Scope.everything().validate(rule)
    with pytest.raises(UsageError):
        Scope(others=["35"]).validate(rule)


def test_read_field_round_trip_and_its_one_form() -> None:
    scope = Scope({"residents": ["3520", "3519"], "lots": []})
    field = scope.to_read_field()
    assert field == {"lots": [], "residents": ["3519", "3520"]}
    assert Scope.from_read_field(field) == scope
    assert Scope.everything().to_read_field() == {"*": []}
    assert Scope.from_read_field({"*": []}) == Scope.everything()
    assert Scope.from_read_field({}) == Scope.nothing()
    for bad in [
        {"residents": [""]},
        {"residents": ["3520", "3519"]},
        {"residents": ["35", "3519"]},
        {"residents": ["35", "35"]},
        {"*": [], "lots": []},
        {"*": ["35"]},
        {"": []},
        {"residents": "35"},
        ["residents"],
        {"residents": [35]},
    ]:
        with pytest.raises(BundleFormatError):
            Scope.from_read_field(bad)
    with pytest.raises(BundleFormatError):
        Scope.from_read_field({"residents": ["3519010"]}, PartitionRule({"residents": 6}))
    with pytest.raises(UsageError):
        (Scope.everything() - Scope.whole("lots")).to_read_field()
    with pytest.raises(UsageError):
        (Scope({"r": ["35"]}) - Scope({"r": ["3519"]})).to_read_field()


@given(
    st.dictionaries(st.sampled_from(COLLECTIONS), st.lists(st.sampled_from(PREFIXES), max_size=3))
)
def test_read_fields_of_include_scopes_round_trip(spec: dict[str, list[str]]) -> None:
    scope = Scope(spec)
    assert Scope.from_read_field(scope.to_read_field()) == scope


def test_certificate_write_scope_as_a_scope() -> None:
    district = Scope.from_certificate(["residents", "doses"], ["351901"])
    assert district == Scope({"residents": ["351901"], "doses": ["351901"]})
    anything = Scope.from_certificate(["*"], [])
    assert Partition("residents", "x") in anything and Partition("_trust", "") not in anything
    assert anything.including("_trust").is_everything


@given(partitions, scopes())
def test_holds_is_membership(p: Partition, s: Scope) -> None:
    assert s.holds(p.collection, p.prefix) is (p in s)
