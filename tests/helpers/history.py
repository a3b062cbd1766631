"""The audit scenario that ``Replica.history`` is tested on in every tier that has a
store (unit: SQLite in memory; integration: SQLite files; postgres): a resident
registered at the centre, edited three times at a sub-district while it is offline and
once at the district meanwhile, then everything delivered.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from offsync import ChangeId, Replica

COLLECTION = "residents"
NIK = "3519010101900001"
OTHER = "3519010101900002"


class Written(NamedTuple):
    id: ChangeId
    op: str
    fields: dict[str, Any] | None


def exchange(a: Replica, b: Replica) -> None:
    """One round both ways, bundles straight from one replica into the other."""
    for bundle in a.pack(since=b.knowledge()):
        b.apply(bundle)
    for bundle in b.pack(since=a.knowledge()):
        a.apply(bundle)


def offline_edits(centre: Replica, district: Replica, kec: Replica) -> list[Written]:
    """Run the scenario (every site ends holding every change); what was written to
    ``NIK``, in the order it was written. ``OTHER`` is written and deleted by the
    centre, so that a history never mixes records."""
    written: list[Written] = []

    def put(site: Replica, fields: dict[str, Any]) -> None:
        written.append(Written(site.put(COLLECTION, NIK, fields), "put", fields))

    put(centre, {"name": "Siti Aminah", "village": "Kare"})
    centre.put(COLLECTION, OTHER, {"name": "Budi"})
    exchange(centre, district)
    exchange(district, kec)
    # The sub-district is cut off: three edits that only it holds for a while.
    put(kec, {"village": "Kare Lor"})
    put(kec, {"phone": "0812"})
    put(kec, {"village": "Kare Kidul"})
    # Meanwhile the district corrects the name, concurrently with all three.
    put(district, {"name": "Siti Aminah Putri"})
    deleted = centre.delete(COLLECTION, OTHER)
    assert deleted is not None
    # The link comes back.
    exchange(kec, district)
    exchange(district, centre)
    exchange(district, kec)
    return written
