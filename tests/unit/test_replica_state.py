"""The replica keeps its in-memory state as one value, published when a transaction commits.

A write, batch or bundle that fails leaves the very same state value in place (nothing
is put back by hand); one that commits publishes a new value once, at the end.
"""

from __future__ import annotations

import dataclasses

import pytest

from offsync import Identity, Knowledge, Replica, policies
from offsync.bundle import build_bundle
from offsync.errors import (
    FormatTwoStoreError,
    NotAuthorisedError,
    SignatureError,
    StorageError,
    UsageError,
)
from offsync.replica.state import NO_SEQS, OwnSeqs, ReplicaState
from offsync.scope import WHOLE, Partition, PartitionRule, Stream, whole
from offsync.segindex import SegmentIndex
from offsync.segment import Segment
from offsync.stores.memory import MemoryStore
from offsync.trust import issue_certificate

AUTH = Identity(bytes([1]) * 32, "authority")
SITE = Identity(bytes([2]) * 32, "site")


def test_a_failed_batch_leaves_the_state_value_untouched() -> None:
    rep = Replica.open(":memory:", identity=SITE)
    rep.put("residents", "1", {"n": 1})
    before = rep._state
    with pytest.raises(RuntimeError), rep.batch():
        for i in range(5):
            rep.put("residents", f"b{i}", {"n": i})
        assert rep.seq == 6  # inside the batch, its own writes are seen
        assert rep._state is before  # ... but nothing is published yet
        raise RuntimeError("cancelled")
    assert rep._state is before and rep.seq == 1
    with rep.batch():
        rep.put("residents", "2", {"n": 2})
        rep.put("residents", "3", {"n": 3})
        assert rep._state is before
    mine = Stream(SITE.public_key, Partition("residents"))
    assert rep._state is not before and rep._state.seqs(mine).seq == 3


def test_a_refused_write_or_bundle_leaves_the_state_value_untouched() -> None:
    rep = Replica.open(":memory:", identity=SITE, trust=[AUTH.public_key])
    before = rep._state
    with pytest.raises(NotAuthorisedError):  # not certified yet
        rep.put("residents", "1", {"n": 1})
    assert rep._state is before and rep.clock.last == before.hlc
    auth = Replica.open(":memory:", identity=AUTH, trust=[AUTH.public_key])
    issue_certificate(auth, SITE)
    for i in range(3):
        auth.put("_trust", f"note/{i}", {"i": i})
    (bundle,) = auth.pack()
    trust = Stream(AUTH.public_key, Partition("_trust"))
    seg = Segment.decode(auth.store.segment_data([(trust, 1)])[0])
    forged = dataclasses.replace(seg, signature=bytes(64))
    bad = build_bundle(
        AUTH,
        [forged.encode()],
        ranges=Knowledge.of(trust, seg.first_seq, seg.last_seq),
        receipts=[auth.receipt()],
        created=auth.clock.now(),
    )
    with pytest.raises(SignatureError):
        rep.apply(bad)
    assert rep._state is before
    report = rep.apply(bundle)
    assert report.applied == 4 and rep._state is not before
    assert rep.trust_store is not None and SITE.public_key in rep.trust_store.certificates
    rep.put("residents", "1", {"n": 1})  # certified now
    assert rep.seq == 1


def test_own_seqs_are_kept_per_own_stream() -> None:
    mine, other = whole(SITE.public_key), Stream(SITE.public_key, Partition("residents", "35"))
    empty = ReplicaState(SegmentIndex(), {}, 0, None)
    wrote = empty.wrote(mine, 3, 7)
    assert wrote.seqs(mine) == OwnSeqs(3, 0, 0) and wrote.hlc == 7
    assert empty.seqs(mine) is NO_SEQS and wrote.seqs(other) is NO_SEQS
    both = wrote.with_seqs(other, seq=2, claim=5).with_seqs(mine, sealed=3)
    assert both.seqs(mine) == OwnSeqs(3, 3, 0) and both.seqs(other) == OwnSeqs(2, 0, 5)
    assert both.wrote(other, 4, 9).seqs(mine) == OwnSeqs(3, 3, 0)
    assert wrote.seqs(mine) == OwnSeqs(3, 0, 0)  # a value: the older state is as it was


def test_a_replica_seqs_each_partition_of_its_own_as_a_stream() -> None:
    rep = Replica.open(":memory:", identity=SITE, partitions={"residents": 1})
    rep.put("residents", "1a", {"n": 1})
    rep.put("residents", "2a", {"n": 2})
    rep.put("residents", "1b", {"n": 3})  # the same partition as 1a: seq 2 there
    rep.put("lots", "x", {"n": 4})
    rep.pack()
    mine = {
        Stream(SITE.public_key, Partition("residents", "1")): OwnSeqs(2, 2, 0),
        Stream(SITE.public_key, Partition("residents", "2")): OwnSeqs(1, 1, 0),
        Stream(SITE.public_key, Partition("lots")): OwnSeqs(1, 1, 0),
    }
    assert dict(rep._state.own) == mine
    assert set(rep._state.segments) == set(mine)
    assert (rep.seq, rep.sealed) == (4, 4)


def test_a_resolution_of_two_changes_takes_consecutive_seqs_of_the_records_stream() -> None:
    mv = {"residents": policies.MultiValue()}
    rule = {"residents": 1}
    a = Replica.open(":memory:", identity=SITE, policies=mv, partitions=rule)
    b = Replica.open(":memory:", identity=AUTH, policies=mv, partitions=rule)
    a.put("residents", "2x", {"other": 1})  # another partition of a's: its own seqs
    a.put("residents", "1a", {"name": "Siti", "village": "Kare"})
    b.put("residents", "1a", {"name": "Siti N."})
    for bundle in b.pack():
        a.apply(bundle)
    (conflict,) = a.conflicts()
    theirs = next(h for h in conflict.versions if h.origin == AUTH.public_key)
    # b's version lacks "village": a tombstone over every head, then a put of b's fields.
    a.resolve("residents", "1a", choose=theirs)
    one = Stream(SITE.public_key, Partition("residents", "1"))
    mine = [c.seq for c in a.record_changes("residents", "1a") if c.origin == SITE.public_key]
    assert mine == [1, 2, 3] and a.seqs()[one] == (3, 0)
    assert a.get("residents", "1a") == {"name": "Siti N."}


def test_the_partition_rule_is_kept_and_another_is_refused() -> None:
    store = MemoryStore()
    Replica(store, SITE, partitions={"residents": 2}).put("residents", "123", {"n": 1})
    assert Replica(store, SITE, partitions=PartitionRule({"residents": 2})).seq == 1
    with pytest.raises(UsageError, match="partition rule"):
        Replica(store, SITE)
    with pytest.raises(UsageError, match="partition rule"):
        Replica(store, SITE, partitions={"residents": 3})


def test_a_store_holding_format_2_is_refused_with_what_to_do() -> None:
    store = MemoryStore()
    Replica(store, SITE)
    with store.transaction():  # an unsealed change of format 2's one stream
        store.add_outbox(WHOLE, [(1, b"row")])
    with pytest.raises(FormatTwoStoreError, match="export its records"):
        Replica(store, SITE)
    assert isinstance(FormatTwoStoreError("x"), StorageError)
