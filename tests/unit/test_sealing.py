"""Sealing own changes into segments: incrementally as writes accumulate, paged."""

from __future__ import annotations

import itertools

import pytest

import offsync.plan.seal as seal_plan
from offsync import Identity, Knowledge, Replica, read_header
from offsync.scope import Partition, Stream

RESIDENTS = Partition("residents")  # every collection is one partition by default


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small numbers exercise the same code paths as 2000-change segments and 20k pages.
    monkeypatch.setattr(seal_plan, "SEGMENT_MAX_CHANGES", 5)
    monkeypatch.setattr(seal_plan, "SEAL_PAGE", 3)


def _rep(n: int) -> Replica:
    return Replica.open(":memory:", identity=Identity(bytes([n]) * 32, label=f"r{n}"))


def _own_segments(rep: Replica) -> list[tuple[int, int]]:
    return [(s.first, s.last) for s in rep._state.segments.get(Stream(rep.id, RESIDENTS), ())]


@pytest.mark.usefixtures("small_segments")
def test_batch_seals_whole_segments_and_leaves_the_tail() -> None:
    a = _rep(1)
    with a.batch():
        for i in range(12):
            a.put("residents", str(i), {"i": i})
        assert _own_segments(a) == []  # nothing sealed inside the batch
    assert _own_segments(a) == [(1, 5), (6, 10)]
    assert [seq for seq, _ in a.store.outbox(RESIDENTS)] == [11, 12]
    assert a.knowledge() == Knowledge.of(Stream(a.id, RESIDENTS), 1, 12)
    bundles = a.pack()  # the tail is sealed when packing
    assert _own_segments(a) == [(1, 5), (6, 10), (11, 12)]
    assert a.store.outbox(RESIDENTS) == []
    b = _rep(2)
    for x in bundles:
        b.apply(x)
    assert b.state_digest() == a.state_digest()
    assert sum(read_header(x)[0].segments for x in bundles) == 3


@pytest.mark.usefixtures("small_segments")
def test_single_writes_seal_as_segments_fill() -> None:
    a = _rep(1)
    for i in range(11):
        a.put("residents", str(i), {"i": i})
    assert _own_segments(a) == [(1, 5), (6, 10)]
    assert [seq for seq, _ in a.store.outbox(RESIDENTS)] == [11]


@pytest.mark.usefixtures("small_segments")
def test_a_failed_batch_seals_nothing() -> None:
    a = _rep(1)
    a.put("residents", "kept", {"i": 0})
    with pytest.raises(RuntimeError), a.batch():
        for i in range(9):
            a.put("residents", str(i), {"i": i})
        raise RuntimeError("clerk cancelled the import")
    assert _own_segments(a) == []
    assert a.seq == 1
    assert a.knowledge() == Knowledge.of(Stream(a.id, RESIDENTS), 1, 1)
    for i in range(6):
        a.put("residents", f"again-{i}", {"i": i})
    assert _own_segments(a) == [(1, 5)]


@pytest.mark.usefixtures("small_segments")
def test_paged_sealing_chains_segments() -> None:
    a = _rep(1)
    with a.batch():
        for i in range(23):
            a.put("residents", str(i), {"i": i})
    a.pack()
    segs = a._state.segments[Stream(a.id, RESIDENTS)]
    assert [(s.first, s.last) for s in segs] == [(1, 5), (6, 10), (11, 15), (16, 20), (21, 23)]
    assert segs[0].prev == bytes(32)
    assert all(later.prev == earlier.hash for earlier, later in itertools.pairwise(segs))
