"""Delivery status: only here, held by a relay, held by the centre — from receipts."""

from __future__ import annotations

import pytest

from offsync import ChangeId, Identity, Replica, sync
from offsync.delivery import Delivery, Status
from offsync.transports import MemoryTransport


def replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label))


@pytest.fixture
def chain() -> tuple[Replica, Replica, Replica]:
    return replica("sub"), replica("district"), replica("centre")


def test_status_moves_from_local_to_relay_to_centre(chain: tuple[Replica, ...]) -> None:
    sub, district, centre = chain
    first = sub.put("residents", "3519010101900001", {"name": "Siti Aminah"})
    status = Delivery(sub, centre=[centre.id])
    assert status.status(first) is Status.LOCAL
    assert status.record_status("residents", "3519010101900001") is Status.LOCAL
    assert not status.reached_centre()

    up_sub, up_district = MemoryTransport.pair(sub, district)
    to_centre, from_district = MemoryTransport.pair(district, centre)
    sync(sub, up_sub)
    sync(district, up_district)  # district applies, its receipt goes back
    sync(sub, up_sub)
    assert status.status(first) is Status.RELAY
    assert status.holders(first) == [district.id]

    second = sub.put("residents", "3519010101900002", {"name": "Budi"})
    sync(district, to_centre)
    sync(centre, from_district)  # the centre's receipt travels to the district ...
    sync(district, to_centre)
    sync(district, up_district)  # ... and on to the sub-district
    sync(sub, up_sub)
    assert status.status(first) is Status.CENTRE
    assert status.record_status("residents", "3519010101900001") is Status.CENTRE
    assert status.status(second) is Status.LOCAL  # written after the last delivery
    assert status.undelivered() == sub.knowledge().difference(sub.receipts()[centre.id].knowledge)
    assert status.undelivered().count() == 1
    assert not status.reached_centre()


def test_record_status_is_the_least_travelled_change(chain: tuple[Replica, ...]) -> None:
    sub, _district, centre = chain
    sub.put("r", "k", {"v": 1})
    t_sub, t_centre = MemoryTransport.pair(sub, centre)
    sync(sub, t_sub)
    sync(centre, t_centre)
    sync(sub, t_sub)
    status = Delivery(sub, centre=[centre.id])
    assert status.record_status("r", "k") is Status.CENTRE
    sub.put("r", "k", {"v": 2})  # a newer version, not yet delivered
    assert status.record_status("r", "k") is Status.LOCAL
    assert status.record_status("r", "never-written") is Status.UNKNOWN


def test_unknown_changes_and_several_centres(chain: tuple[Replica, ...]) -> None:
    sub, district, centre = chain
    status = Delivery(sub, centre=[centre.id, district.identity.public])
    assert status.centre == {centre.id, district.id}
    assert status.status(ChangeId(centre.id, 1)) is Status.UNKNOWN
    assert status.reached_centre()  # nothing written, nothing pending


def test_pending_per_peer(chain: tuple[Replica, ...]) -> None:
    sub, district, centre = chain
    other = replica("other")
    for i in range(5):
        sub.put("r", str(i), {"v": i})
    other.put("r", "o", {"v": 0})
    t_other, t_sub_o = MemoryTransport.pair(other, sub)
    sync(other, t_other)
    sync(sub, t_sub_o)  # sub now holds one change of `other`
    t_sub, t_district = MemoryTransport.pair(sub, district)
    sync(sub, t_sub)
    sync(district, t_district)
    sync(sub, t_sub)  # the district's receipt
    sub.put("r", "late", {"v": 9})
    sync(sub, t_sub_o)  # so that `other`'s receipt is known to sub as well
    sync(other, t_other)
    sync(sub, t_sub_o)
    pending = {p.peer: p for p in Delivery(sub, centre=[centre.id]).pending()}
    assert set(pending) == {district.id, other.id}
    assert pending[district.id].count == 1  # the late change
    assert pending[other.id].count == 0
    assert not pending[district.id].is_centre and pending[district.id].heard > 0
    everything = {p.peer: p for p in Delivery(sub, [centre.id]).pending(own_only=False)}
    assert everything[district.id].count >= pending[district.id].count
    assert not list(everything[other.id].missing.partitions(other.id))  # it holds its own
