"""The sync driver: reports, refusals, relays (including quarantined segments), outages."""

from __future__ import annotations

import time

import pytest

from offsync import Identity, Replica, SyncReport, sync
from offsync.errors import TransportError
from offsync.scope import Partition, Stream
from offsync.transports import LoopbackTransport, MemoryTransport

R = Partition("r")  # the collection these tests write: one partition


def replica(label: str, **options: object) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label), **options)  # type: ignore[arg-type]


def test_report_counts_and_text() -> None:
    a, b = replica("a"), replica("b")
    for i in range(7):
        a.put("r", str(i), {"v": i})
    ta, tb = MemoryTransport.pair(a, b)
    first = sync(a, ta)
    assert (first.sent_bundles, first.sent_changes) == (1, 7) and first.sent_bytes > 0
    assert first.peer == b.id and first.received == []
    second = sync(b, tb)
    assert (second.applied, second.duplicates, second.quarantined) == (7, 0, 0)
    assert second.ok and "7 changes applied" in str(second)


def test_a_refused_bundle_is_reported_not_fatal_and_never_applied() -> None:
    a, b = replica("a"), replica("b")
    a.put("r", "1", {"v": 1})
    ta, tb = MemoryTransport.pair(a, b)
    good = a.pack()[0]
    forged = bytearray(good)
    forged[-1] ^= 0xFF  # the signature no longer verifies
    ta.send([bytes(forged), good])
    report = sync(b, tb)
    assert len(report.refused) == 1 and "SignatureError" in report.refused[0].reason
    assert report.applied == 1 and b.get("r", "1") == {"v": 1}
    assert sync(b, tb).refused == []  # set aside, not offered again


def test_pull_only_and_push_only() -> None:
    a, b = replica("a"), replica("b")
    a.put("r", "1", {"v": 1})
    ta, tb = MemoryTransport.pair(a, b)
    assert sync(a, ta, push=False).sent_bundles == 0
    assert sync(a, ta, pull=False).sent_changes == 1
    assert sync(b, tb, push=False).applied == 1 and ta.knowledge().count() == 0


def test_in_transit_bundles_are_not_sent_again() -> None:
    a, b = replica("a"), replica("b")
    a.put("r", "1", {"v": 1})
    ta, _ = MemoryTransport.pair(a, b)
    assert sync(a, ta).sent_changes == 1
    assert sync(a, ta).sent_changes == 0  # still waiting in b's mailbox


def test_outage_mid_round_loses_nothing() -> None:
    a, b = replica("a"), replica("b")
    for i in range(5):
        b.put("r", f"b{i}", {"v": i})
        a.put("r", f"a{i}", {"v": i})
    t = LoopbackTransport(b)
    received = []
    for item in t.receive(a.knowledge()):
        assert isinstance(item, bytes)
        received.append(a.apply(item))
    t.online = False  # the link drops before the push
    with pytest.raises(TransportError):
        sync(a, t)
    assert a.knowledge().count(Stream(b.id, R)) == 5  # what was applied stays applied
    t.online = True
    report = sync(a, t)
    assert report.sent_changes == 5 and report.applied == 0
    assert a.state_digest() == b.state_digest()


def test_relay_forwards_segments_byte_for_byte_and_receipts_back() -> None:
    sub, district, centre = replica("sub"), replica("district"), replica("centre")
    for i in range(4):
        sub.put("r", str(i), {"v": i})
    up = LoopbackTransport(district)
    sync(sub, up)  # sub -> district
    sync(district, LoopbackTransport(centre))  # district -> centre
    sync(sub, up)  # the district now passes on the centre's receipt
    assert centre.knowledge() == sub.knowledge()
    assert centre.id in sub.receipts()
    assert sub.knowledge() <= sub.receipts()[centre.id].knowledge
    key = [(Stream(sub.id, R), 1)]
    assert centre.store.segment_data(key) == sub.store.segment_data(key)


def test_relay_forwards_quarantined_segments() -> None:
    """A site with a clock days ahead: the district holds its segment back (quarantine)
    but still forwards it, byte for byte, for the centre to judge."""
    ahead = replica("ahead", wall=lambda: int(time.time() * 1000) + 3 * 86_400_000)
    district, centre = replica("district"), replica("centre")
    ahead.put("r", "1", {"v": 1})
    report = sync(ahead, LoopbackTransport(district))
    assert report.sent_changes == 1
    assert [q.reason for q in district.quarantined()] == ["clock: timestamp too far in the future"]
    assert district.get("r", "1") is None
    sync(district, LoopbackTransport(centre))
    assert centre.knowledge().count(Stream(ahead.id, R)) == 1
    assert len(centre.quarantined()) == 1
    key = [(Stream(ahead.id, R), 1)]
    assert centre.store.segment_data(key) == ahead.store.segment_data(key)


def test_sync_report_defaults() -> None:
    report = SyncReport()
    assert report.ok and report.applied == 0 and report.conflicts == []
    assert "sync with ?" in str(report)
