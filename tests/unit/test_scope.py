"""Partitions, streams, the partition rule and scopes (offsync.scope, format 3 §4).

The scope algebra is checked against its definition, pointwise: a partition is in
``S | T`` exactly when it is in S or in T, and so on, for scopes built by any mix of
unions, intersections and differences; and knowledge restricted to a union is the
union of the restrictions (what a scope that grew must fetch is ``new - old``).
"""

from __future__ import annotations

import pytest

from offsync.errors import BundleFormatError, UsageError
from offsync.scope import Partition, PartitionRule, Scope, Stream
from tests.helpers.v3_strategies import (
    ORIGINS,
)


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
    bad_rules: list[dict[str, int]] = [
        {"residents": -1},
        {"residents": 513},
        {"residents": True},
        {"": 1},
    ]
    for bad in bad_rules:
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
        Scope({"r": "35"})
    with pytest.raises(AttributeError):
        Scope.nothing()._others = {}


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


def test_certificate_write_scope_as_a_scope() -> None:
    district = Scope.from_certificate(["residents", "doses"], ["351901"])
    assert district == Scope({"residents": ["351901"], "doses": ["351901"]})
    anything = Scope.from_certificate(["*"], [])
    assert Partition("residents", "x") in anything and Partition("_trust", "") not in anything
    assert anything.including("_trust").is_everything
