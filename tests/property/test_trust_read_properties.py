"""Properties of read scopes in certificates (docs/spec.md §13.3): a certificate issued
with a read scope gives back exactly that scope through the trust store, and without
one it reads exactly what it may write."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from offsync.errors import UsageError
from offsync.scope import PartitionRule, Scope
from offsync.trust import Certificate, TrustStore, certificate_fields
from tests.helpers.v3_strategies import COLLECTIONS, PREFIXES, scopes

AUTH = bytes([1]) * 32
SITE = bytes([2]) * 32
T0 = 1_700_000_000_000
#: Long enough for every prefix the strategies draw, so every listable scope fits.
RULE = PartitionRule(dict.fromkeys(COLLECTIONS, max(map(len, PREFIXES))))

#: Scopes a read field can say: include lists, unions of them, everything, nothing.
listable = st.one_of(
    scopes(depth=0),
    st.builds(Scope.union, scopes(depth=0), scopes(depth=0)),
    scopes(),
)


@given(listable)
def test_read_scope_round_trips_through_a_certificate(scope: Scope) -> None:
    try:
        fields = certificate_fields(SITE, read=scope, partitions=RULE)
    except UsageError:
        assume(False)  # a scope that excludes prefixes: no read field can say it
        raise
    trust = TrustStore.from_records([AUTH], [(f"cert/{SITE.hex()}", fields)], RULE)
    assert trust.problems == ()
    assert trust.read_scope(SITE, T0) == scope
    assert Certificate.from_fields(fields).to_fields() == fields


keys = st.builds(
    lambda p, tail: p + tail, st.sampled_from(PREFIXES), st.sampled_from(["", "0", "9"])
)


@given(
    st.lists(st.sampled_from([*COLLECTIONS, "*"]), max_size=3),
    st.lists(st.sampled_from([p for p in PREFIXES if p]), max_size=3),
    st.sampled_from(COLLECTIONS),
    keys,
)
def test_without_read_a_site_reads_what_it_may_write(
    collections: list[str], prefixes: list[str], collection: str, key: str
) -> None:
    fields = certificate_fields(SITE, collections=collections, prefixes=prefixes)
    trust = TrustStore.from_records([AUTH], [(f"cert/{SITE.hex()}", fields)])
    may_write = trust.check(SITE, 1, T0 << 16, collection, key) is None
    assert trust.read_scope(SITE, T0).contains_record(collection, key) == may_write
    assert not trust.read_scope(SITE, T0).contains_record("_trust", key)
