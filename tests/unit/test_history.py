"""``Replica.history``: every version of a record, in stamp order, on SQLite in memory.

Files and a reopened store: tests/integration/test_history_sqlite.py; PostgreSQL:
tests/postgres/test_history_postgres.py; the property across replicas:
tests/property/test_history_properties.py.
"""

from __future__ import annotations

from offsync import HistoryEntry, Identity, Replica
from offsync.change import ChangeId
from offsync.clock import hlc_millis
from offsync.replica.history import history
from tests.helpers.history import COLLECTION, NIK, OTHER, offline_edits

DAY = 86_400_000


def site(n: int, label: str, **options: object) -> Replica:
    return Replica.open(":memory:", identity=Identity(bytes([n]) * 32, label=label), **options)  # type: ignore[arg-type]


def test_every_offline_edit_is_listed_with_its_site_time_and_fields() -> None:
    centre, district, kec = site(1, "centre"), site(2, "district"), site(3, "kec")
    written = offline_edits(centre, district, kec)
    listed = kec.history(COLLECTION, NIK)
    assert {e.id for e in listed} == {w.id for w in written}
    by_id = {e.id: e for e in listed}
    for w in written:
        entry = by_id[w.id]
        assert (entry.op, entry.fields) == (w.op, w.fields), "each as it was written"
        assert (entry.collection, entry.key, entry.author, entry.schema) == (
            COLLECTION,
            NIK,
            None,
            0,
        )
        assert entry.reason is None and entry.ms == hlc_millis(entry.hlc)
    stamps = [e.stamp for e in listed]
    assert stamps == sorted(stamps), "the merge order"
    # The three offline edits chain: each names the one before as its parent.
    kec_edits = [by_id[w.id] for w in written if w.id.origin == kec.id]
    assert [e.parents for e in kec_edits[1:]] == [(kec_edits[0].id,), (kec_edits[1].id,)]
    # The district's edit and the last offline edit are both current versions.
    heads = {e.id for e in listed if e.head}
    assert heads == {kec_edits[-1].id, written[-1].id}
    assert kec.get(COLLECTION, NIK) is not None
    for other in (centre, district):
        assert other.history(COLLECTION, NIK) == listed, "the same on every replica"


def test_a_delete_is_listed_without_fields_and_other_records_are_not() -> None:
    centre = site(1, "centre")
    first = centre.put(COLLECTION, OTHER, {"name": "Budi"})
    gone = centre.delete(COLLECTION, OTHER)
    centre.put(COLLECTION, NIK, {"name": "Siti"})
    listed = centre.history(COLLECTION, OTHER)
    assert [(e.id, e.op, e.fields, e.head) for e in listed] == [
        (first, "put", {"name": "Budi"}, False),
        (gone, "delete", None, True),
    ]
    assert centre.history(COLLECTION, "nobody") == []
    assert centre.history("doses", OTHER) == []


def test_history_orders_by_stamp_whatever_the_order_held() -> None:
    a, b = site(1, "a"), site(2, "b")
    a.put(COLLECTION, NIK, {"v": 1})
    b.put(COLLECTION, NIK, {"v": 2})
    changes = a.record_changes(COLLECTION, NIK) + b.record_changes(COLLECTION, NIK)
    forward = history(changes)
    assert history(reversed(changes)) == forward
    assert [e.stamp for e in forward] == sorted(e.stamp for e in forward)
    assert all(e.head for e in forward), "two concurrent first writes: both heads"


def test_held_changes_are_listed_only_when_asked_after_the_applied_ones() -> None:
    """A change from a site whose clock runs two days ahead is held (``clock:``): not
    in the history of what is applied, listed with its reason when asked."""
    now = 1_780_000_000_000
    fast = site(1, "fast", wall=lambda: now + 2 * DAY)
    here = site(2, "here", wall=lambda: now)
    mine = here.put(COLLECTION, NIK, {"name": "Siti"})
    ahead = fast.put(COLLECTION, NIK, {"name": "Siti A."})
    fast.put(COLLECTION, OTHER, {"name": "Budi"})
    for bundle in fast.pack(since=here.knowledge()):
        here.apply(bundle)
    assert [e.id for e in here.history(COLLECTION, NIK)] == [mine]
    listed = here.history(COLLECTION, NIK, held=True)
    assert [(e.id, e.reason is None) for e in listed] == [(mine, True), (ahead, False)]
    assert listed[1].reason is not None and listed[1].reason.startswith("clock: ")
    assert listed[1].fields == {"name": "Siti A."} and not listed[1].head
    assert [e.key for e in here.history(COLLECTION, OTHER, held=True)] == [OTHER]


def test_an_entry_is_a_value() -> None:
    entry = HistoryEntry(COLLECTION, NIK, b"o" * 32, 1, 5 << 16, "put", {}, (), True)
    assert entry.id == ChangeId(b"o" * 32, 1) and entry.ms == 5
    assert entry.stamp == (5 << 16, b"o" * 32, 1)
    assert entry == HistoryEntry(COLLECTION, NIK, b"o" * 32, 1, 5 << 16, "put", {}, (), True)
