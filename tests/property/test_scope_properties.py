"""v3_scope: the properties (hypothesis), moved from tests/unit/test_v3_scope.py, where its examples are."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offsync.knowledge import Knowledge
from offsync.scope import Partition, Scope, Stream
from tests.helpers.v3_strategies import (
    COLLECTIONS,
    PREFIXES,
    knowledge_models,
    partitions,
    scopes,
)

#: Partition prefixes probed: every scope prefix, extensions of them, and others.
PROBES = [
    Partition(c, q)
    for c in (*COLLECTIONS, "other")
    for q in {*PREFIXES, "351901", "3520", "361", "49", "éé", "x"}
]


def members(scope: Scope) -> set[Partition]:
    return {p for p in PROBES if p in scope}


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
    from tests.helpers.v3_strategies import intervals_of

    k = Knowledge({stream: intervals_of(seqs) for stream, seqs in model.items()})
    assert k.restrict(s) | k.restrict(t) == k.restrict(s | t)
    assert k.restrict(s) & k.restrict(t) == k.restrict(s & t)
    assert k.restrict(s) - k.restrict(t) == k.restrict(s - t)
    assert set(k.restrict(s).streams()) == {x for x in model if x.partition in s}
    assert s.restrict(k) == k.restrict(s)


@given(
    st.dictionaries(st.sampled_from(COLLECTIONS), st.lists(st.sampled_from(PREFIXES), max_size=3))
)
def test_read_fields_of_include_scopes_round_trip(spec: dict[str, list[str]]) -> None:
    scope = Scope(spec)
    assert Scope.from_read_field(scope.to_read_field()) == scope


@given(partitions, scopes())
def test_holds_is_membership(p: Partition, s: Scope) -> None:
    assert s.holds(p.collection, p.prefix) is (p in s)
