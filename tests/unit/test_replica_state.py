"""The replica keeps its in-memory state as one value, published when a transaction commits.

A write, batch or bundle that fails leaves the very same state value in place (nothing
is put back by hand); one that commits publishes a new value once, at the end.
"""

from __future__ import annotations

import pytest

from offsync import Identity, Knowledge, Replica
from offsync.bundle import build_bundle
from offsync.errors import NotAuthorisedError, SignatureError
from offsync.replica.state import NO_SEQS, OwnSeqs, ReplicaState
from offsync.scope import Partition, Stream, whole
from offsync.segindex import SegmentIndex
from offsync.segment import Segment
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
    assert rep._state is not before and rep._state.seqs(rep._own).seq == 3


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
    seg = Segment.decode(auth.store.segment_data([(whole(AUTH.public_key), 1)])[0])
    forged = Segment(seg.origin, seg.first_seq, seg.last_seq, seg.prev_hash, seg.block, bytes(64))
    bad = build_bundle(
        AUTH,
        [forged.encode()],
        ranges=Knowledge.of(AUTH.public_key, seg.first_seq, seg.last_seq),
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


def test_a_format_2_replica_seqs_its_one_stream() -> None:
    rep = Replica.open(":memory:", identity=SITE)
    rep.put("residents", "1", {"n": 1})
    rep.pack()
    assert dict(rep._state.own) == {whole(SITE.public_key): OwnSeqs(1, 1, 0)}
    assert list(rep._state.segments) == [whole(SITE.public_key)]
