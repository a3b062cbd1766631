"""Replica: local writes, reopening, packing, applying, reports and failure atomicity."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from offsync import (
    ApplyReport,
    Change,
    ChangeId,
    Identity,
    Knowledge,
    Replica,
    policies,
    read_header,
)
from offsync.errors import (
    ImmutableRecordError,
    StorageError,
    UsageError,
)
from offsync.scope import Partition, Stream
from offsync.stores.base import RecordRow
from offsync.stores.sqlite import SQLiteStore

RESIDENTS = Partition("residents")  # every collection is one partition by default

POLICIES = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
    "addresses": policies.MultiValue(),
}


def ident(i: int) -> Identity:
    return Identity(bytes([i]) * 32, f"site-{i}")


def replica(i: int, wall: int = 1_700_000_000_000) -> Replica:
    return Replica.open(":memory:", identity=ident(i), policies=POLICIES, wall=lambda: wall)


def exchange(src: Replica, dst: Replica) -> list[ApplyReport]:
    return [dst.apply(b) for b in src.pack(dst.knowledge())]


def carried(bundles: Sequence[bytes]) -> Knowledge:
    out = Knowledge()
    for b in bundles:
        out = out | read_header(b)[0].ranges
    return out


# -- local writes ------------------------------------------------------------------------


def test_put_get_delete_items() -> None:
    r = replica(1)
    assert r.get("residents", "1") is None
    first = r.put("residents", "1", {"name": "Siti", "village": "Kare"})
    assert first == ChangeId(r.id, 1)
    r.put("residents", "1", {"village": "Mejayan"})  # merges with the other fields
    assert r.get("residents", "1") == {"name": "Siti", "village": "Mejayan"}
    r.put("residents", "2", {"name": "Budi"})
    r.put("residents", "10", {"name": "Ani"})
    r.put("doses", "1/1", {"vaccine": "Sinovac"})
    assert list(r.items("residents")) == [
        ("1", {"name": "Siti", "village": "Mejayan"}),
        ("10", {"name": "Ani"}),
        ("2", {"name": "Budi"}),
    ]
    assert r.delete("residents", "2") == ChangeId(r.id, 5)  # the residents stream's 5th
    assert r.get("residents", "2") is None
    assert r.delete("residents", "2") is None  # nothing left to delete
    assert r.delete("residents", "nope") is None
    assert [k for k, _ in r.items("residents")] == ["1", "10"]
    r.put("residents", "2", {"age": 3})  # revived with only the new fields
    assert r.get("residents", "2") == {"age": 3}
    assert r.seq == 7  # six residents changes and one of doses
    assert r.knowledge() == Knowledge(
        {Stream(r.id, RESIDENTS): [(1, 6)], Stream(r.id, Partition("doses")): [(1, 1)]}
    )


def test_bad_writes_are_usage_errors() -> None:
    r = replica(1)
    for collection, key, fields in [
        ("", "k", {}),
        ("c", "", {}),
        ("c" * 65, "k", {}),
        ("c", "k" * 513, {}),
        ("c", "k", {"x": object()}),
        ("c", "k", {1: 2}),
    ]:
        with pytest.raises(UsageError):
            r.put(collection, key, fields)  # type: ignore[arg-type]  # bad fields on purpose
    assert r.seq == 0
    with pytest.raises(UsageError):
        r.resolve("c", "k")
    with pytest.raises(UsageError):
        r.resolve("c", "k", {"a": 1}, delete=True)


def test_immutable_records() -> None:
    r = replica(1)
    r.put("doses", "n/1", {"vaccine": "Sinovac"})
    with pytest.raises(ImmutableRecordError):
        r.put("doses", "n/1", {"vaccine": "Pfizer"})
    with pytest.raises(ImmutableRecordError):
        r.delete("doses", "n/1")
    assert r.seq == 1
    r.resolve("doses", "n/1", {"vaccine": "Pfizer"})  # a deliberate correction
    assert r.get("doses", "n/1") == {"vaccine": "Pfizer"}
    r.resolve("doses", "n/1", delete=True)
    assert r.get("doses", "n/1") is None
    r.put("doses", "n/1", {"vaccine": "AZ"})  # a deleted record may be written again
    assert r.get("doses", "n/1") == {"vaccine": "AZ"}


def test_batch_is_one_transaction() -> None:
    r = replica(1)
    with pytest.raises(RuntimeError), r.batch():
        r.put("residents", "1", {"a": 1})
        r.put("residents", "2", {"a": 2})
        raise RuntimeError("clerk cancelled")
    assert r.get("residents", "1") is None
    assert r.seq == 0
    assert not r.knowledge()
    with r.batch():
        r.put("residents", "1", {"a": 1})
    assert r.seq == 1
    assert r.put("residents", "2", {"a": 2}) == ChangeId(r.id, 2)  # no seq was lost


def test_pack_carries_exactly_what_the_peer_lacks() -> None:
    a, b = replica(1), replica(2)
    assert a.pack() == []
    assert len(a.pack(always=True)) == 1  # a receipt-only bundle
    for i in range(3):
        a.put("residents", str(i), {"i": i})
    first = a.pack(b.knowledge())
    assert carried(first) == Knowledge.of(Stream(a.id, RESIDENTS), 1, 3)
    for bundle in first:
        b.apply(bundle)
    assert a.pack(b.knowledge()) == []  # nothing missing
    a.put("residents", "3", {"i": 3})
    a.put("residents", "4", {"i": 4})
    second = a.pack(b.knowledge())
    assert carried(second) == Knowledge.of(Stream(a.id, RESIDENTS), 4, 5)
    # since=None sends everything; a peer holding a middle part gets the rest
    assert carried(a.pack()) == Knowledge.of(Stream(a.id, RESIDENTS), 1, 5)
    assert carried(a.pack(Knowledge.of(Stream(a.id, RESIDENTS), 4, 5))) == Knowledge.of(
        Stream(a.id, RESIDENTS), 1, 3
    )
    # b relays a's changes to c, along with its own
    b.put("residents", "b", {"x": 1})
    c = replica(3)
    relayed = b.pack(c.knowledge())
    assert carried(relayed) == Knowledge.of(Stream(a.id, RESIDENTS), 1, 3) | Knowledge.of(
        Stream(b.id, RESIDENTS), 1, 1
    )
    assert all(read_header(x)[0].sender == b.id for x in relayed)


def test_pack_splits_to_max_bytes() -> None:
    a, b = replica(1), replica(2)
    for round_ in range(8):  # each pack seals a segment
        for i in range(4):
            a.put("residents", f"{round_}-{i}", {"blob": os.urandom(1500)})
        a.pack()
    limit = 16_000
    bundles = a.pack(max_bytes=limit)
    assert len(bundles) > 1
    assert all(len(x) <= limit for x in bundles)
    assert carried(bundles) == a.knowledge()
    for x in reversed(bundles):  # any order
        b.apply(x)
    assert b.state_digest() == a.state_digest()
    # A segment too large for max_bytes travels alone rather than not at all.
    alone = a.pack(max_bytes=1000)
    assert all(read_header(x)[0].segments == 1 for x in alone)
    assert carried(alone) == a.knowledge()


def test_encrypted_pack() -> None:
    a, b, c = replica(1), replica(2), replica(3)
    a.put("residents", "1", {"secret": "x"})
    bundles = a.pack(recipient=b.identity.public)
    assert all(read_header(x)[0].recipient == b.id for x in bundles)
    for x in bundles:
        b.apply(x)
    assert b.get("residents", "1") == {"secret": "x"}
    with pytest.raises(Exception) as info:
        c.apply(bundles[0])
    assert type(info.value).__name__ == "DecryptionError"


# -- applying ----------------------------------------------------------------------------


def test_apply_report_counts_and_idempotence() -> None:
    a, b = replica(1), replica(2)
    for i in range(3):
        a.put("addresses", "n", {"street": f"s{i}"})
    bundles = a.pack()
    [report] = [b.apply(x) for x in bundles]
    assert (report.applied, report.duplicates, report.quarantined) == (3, 0, 0)
    assert report.sender == a.id
    assert report.receipts == 1
    assert report.conflicts == []
    digest = b.state_digest()
    again = b.apply(bundles[0])
    assert (again.applied, again.duplicates) == (0, 3)
    assert b.state_digest() == digest
    assert again.bundle_id == report.bundle_id
    # a concurrent write makes a conflict that the report names
    b.put("addresses", "n", {"street": "mine"})
    a.put("addresses", "n", {"street": "theirs"})
    [r2] = exchange(a, b)
    assert (r2.applied, r2.duplicates) == (1, 0)
    assert r2.conflicts == [("addresses", "n")]
    assert [(c.collection, c.key) for c in b.conflicts()] == [("addresses", "n")]


def test_receipts_travel() -> None:
    a, b, c = replica(1), replica(2), replica(3)
    a.put("residents", "1", {"a": 1})
    exchange(a, b)
    assert b.receipts()[a.id].knowledge == a.knowledge()
    b.put("residents", "2", {"b": 1})
    exchange(b, c)  # b passes a's receipt on
    assert set(c.receipts()) == {a.id, b.id}
    assert c.receipts()[a.id].knowledge == Knowledge.of(Stream(a.id, RESIDENTS), 1, 1)
    assert a.receipt().knowledge == a.knowledge()


def test_resolve_choose() -> None:
    a, b = replica(1, wall=1000), replica(2, wall=2000)
    a.put("addresses", "n", {"street": "Mawar", "rt": 1})
    exchange(a, b)
    a.put("addresses", "n", {"street": "Melati"})
    b.put("addresses", "n", {"street": "Kenanga", "note": "b"})
    exchange(a, b)
    exchange(b, a)
    [conflict] = a.conflicts()
    heads = dict(conflict.versions)
    assert len(heads) == 2
    pick = next(h for h, v in heads.items() if v == {"street": "Melati", "rt": 1})
    with pytest.raises(UsageError):
        a.resolve("addresses", "n", choose=ChangeId(a.id, 99))
    a.resolve("addresses", "n", choose=pick)
    assert a.get("addresses", "n") == {"street": "Melati", "rt": 1}  # exactly that version
    assert a.conflicts() == []
    exchange(a, b)
    assert b.get("addresses", "n") == {"street": "Melati", "rt": 1}
    assert b.state_digest() == a.state_digest()
    assert b.conflicts() == []


class FailingStore(SQLiteStore):
    """A real SQLite store whose record writes fail on demand (a full disk, say)."""

    fail = False

    def put_records(self, rows: Sequence[RecordRow]) -> None:
        super().put_records(rows)
        if self.fail:
            raise StorageError("disk full")

    def add_first_changes(self, changes: Sequence[Change]) -> list[tuple[str, str]]:
        existed = super().add_first_changes(changes)  # new records: the bulk path
        if self.fail:
            raise StorageError("disk full")
        return existed


def test_failure_mid_apply_changes_nothing() -> None:
    a = replica(1)
    for i in range(5):
        a.put("residents", str(i), {"i": i})
    bundles = a.pack()
    store = FailingStore(":memory:")
    b = Replica(store, ident(2), POLICIES)
    b.put("residents", "own", {"x": 1})
    digest, knowledge = b.state_digest(), b.knowledge()
    store.fail = True
    with pytest.raises(StorageError):
        b.apply(bundles[0])
    assert b.state_digest() == digest
    assert b.knowledge() == knowledge
    assert b.receipts() == {}
    store.fail = False
    report = b.apply(bundles[0])  # nothing half-remembered: it all applies now
    assert report.applied == 5
    assert b.get("residents", "4") == {"i": 4}


def test_failure_mid_write_changes_nothing() -> None:
    store = FailingStore(":memory:")
    r = Replica(store, ident(1), POLICIES)
    r.put("residents", "1", {"a": 1})
    digest = r.state_digest()
    store.fail = True
    with pytest.raises(StorageError):
        r.put("residents", "2", {"a": 2})
    store.fail = False
    assert r.state_digest() == digest
    assert r.seq == 1
    assert r.put("residents", "2", {"a": 2}) == ChangeId(r.id, 2)


def test_clock_far_ahead_is_quarantined_not_dropped() -> None:
    day = 24 * 3600 * 1000
    ahead = replica(1, wall=1_700_000_000_000 + 2 * day)
    b = replica(2)
    ahead.put("residents", "1", {"a": 1})
    [report] = exchange(ahead, b)
    assert (report.applied, report.quarantined) == (0, 1)
    assert b.get("residents", "1") is None
    assert b.knowledge() == Knowledge.of(
        Stream(ahead.id, RESIDENTS), 1, 1
    )  # held, so not asked for again
    [q] = b.quarantined()
    assert (q.origin, q.first_seq, q.last_seq) == (ahead.id, 1, 1)
    assert "clock" in q.reason
