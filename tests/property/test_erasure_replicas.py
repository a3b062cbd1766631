"""Erasure across real replicas, in any order: several replicas (SQLite in memory)
write, erase (the authority) and exchange through the in-memory loopback transport
(and one way, bundles straight from one into another) in any interleaving, erase orders arriving before or after the changes they erase. All
converge (equal state digests), and no replica holds a value of an erased record in
its segments, records, changes or outbox afterwards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import Replica
from offsync.errors import UsageError
from offsync.identity import Identity
from offsync.sync import sync
from offsync.transports.memory import LoopbackTransport
from offsync.trust import issue_certificate

SITES = 3
KEYS = ["k0", "k1", "k2"]
IDS = [Identity.generate(f"site{i}") for i in range(SITES)]

action = st.one_of(
    st.tuples(st.just("put"), st.integers(0, SITES - 1), st.sampled_from(KEYS)),
    st.tuples(st.just("erase"), st.just(0), st.sampled_from(KEYS)),
    st.tuples(st.just("sync"), st.integers(0, SITES - 1), st.integers(0, SITES - 1)),
    # One way: a site that has not heard of an order sends whole puts to one that has.
    st.tuples(st.just("push"), st.integers(0, SITES - 1), st.integers(0, SITES - 1)),
)


def _values_in(replica: Replica) -> bytes:
    """Every byte the store holds of changes: segments, records, changes, outbox."""
    out = bytearray()
    keys = [(stream, s.first) for stream, segs in replica._st.segments.items() for s in segs]
    for data in replica.store.segment_data(keys):
        out += data
    for r in replica.store.iter_records():
        out += r.fields or b""
        for c in replica.store.changes_for(r.collection, r.key):
            out += c.fields or b""
    for partition in replica.store.outbox_partitions():
        for _, row in replica.store.outbox(partition):
            out += bytes(row)
    return bytes(out)


def _open() -> list[Replica]:
    trust = [IDS[0].public_key]
    sites = [Replica.open(":memory:", identity=i, trust=trust) for i in IDS]
    for other in IDS:  # the authority writes records too: a certificate of its own
        issue_certificate(sites[0], other)
    for site in sites[1:]:
        sync(site, LoopbackTransport(sites[0], me=site.id))
    return sites


@settings(max_examples=40, deadline=None)
@given(st.lists(action, max_size=25))
def test_replicas_converge_and_hold_no_erased_value(actions: list[tuple[str, int, object]]) -> None:
    sites = _open()
    written: dict[str, list[str]] = {k: [] for k in KEYS}
    erased: set[str] = set()
    n = 0
    for kind, a, b in actions:
        if kind == "put":
            assert isinstance(b, str)
            n += 1
            value = f"secret-{n:04d}-value"
            try:
                sites[a].put("residents", b, {"v": value})
            except UsageError:  # erased here already
                assert b in erased
                continue
            written[b].append(value)
        elif kind == "erase":
            assert isinstance(b, str)
            sites[0].erase("residents", b, "request")
            erased.add(b)
        elif kind == "push" and a != b:
            assert isinstance(b, int)
            for bundle in sites[a].pack(since=sites[b].knowledge()):
                sites[b].apply(bundle)
        elif a != b:
            assert isinstance(b, int)
            sync(sites[a], LoopbackTransport(sites[b], me=sites[a].id))
    for _ in range(2):  # everything everywhere
        for i in range(1, SITES):
            sync(sites[i], LoopbackTransport(sites[0], me=sites[i].id))
    digests = {s.state_digest() for s in sites}
    assert len(digests) == 1
    for site in sites:
        held = _values_in(site)
        for key in erased:
            assert site.get("residents", key) is None
            for value in written[key]:
                assert value.encode() not in held, (key, value)
    for site in sites:
        site.close()
