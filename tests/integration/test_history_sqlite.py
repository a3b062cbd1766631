"""``Replica.history`` on SQLite files: the audit scenario, a reopened and a read-only
store, and the paths by which SQLite keeps a record's first change in the record's
own row (a bulk apply, ``put_many``) until a later change moves it to ``changes``."""

from __future__ import annotations

from pathlib import Path

from offsync import Identity, Replica
from offsync.stores.sqlite import SQLiteStore
from tests.helpers.history import COLLECTION, NIK, OTHER, offline_edits

IDS = [Identity(bytes([n]) * 32, label=label) for n, label in enumerate("xcdk")]


def opened(tmp_path: Path, n: int, **options: object) -> Replica:
    return Replica.open(str(tmp_path / f"{n}.sqlite"), identity=IDS[n], **options)  # type: ignore[arg-type]


def test_the_audit_scenario_on_files_survives_reopening(tmp_path: Path) -> None:
    sites = [opened(tmp_path, n) for n in (1, 2, 3)]
    written = offline_edits(*sites)
    listed = [s.history(COLLECTION, NIK) for s in sites]
    assert listed[0] == listed[1] == listed[2]
    assert {e.id for e in listed[0]} == {w.id for w in written}
    assert len(listed[0]) == 5
    assert [e.op for e in sites[0].history(COLLECTION, OTHER)] == ["put", "delete"]
    for s in sites:
        s.close()
    again = opened(tmp_path, 3)
    assert again.history(COLLECTION, NIK) == listed[2]
    again.close()
    reader = opened(tmp_path, 3, read_only=True)
    assert reader.history(COLLECTION, NIK) == listed[2]
    reader.close()


def test_a_first_change_kept_in_the_record_row_is_listed_before_and_after_it_moves(
    tmp_path: Path,
) -> None:
    """A bundle of new records takes SQLite's bulk path (the change in the record's
    row); ``put_many`` does too. A later edit moves it to ``changes``: listed alike."""
    source, here = opened(tmp_path, 1), opened(tmp_path, 2)
    sent = [source.put(COLLECTION, f"35190101019{n:05d}", {"n": n}) for n in range(50)]
    for bundle in source.pack(since=here.knowledge()):
        here.apply(bundle)
    key = "3519010101900007"
    store = here.store
    assert isinstance(store, SQLiteStore)
    assert store.db.execute("SELECT count(*) FROM changes").fetchone() == (0,), "the bulk path"
    assert [e.id for e in here.history(COLLECTION, key)] == [sent[7]]
    edit = here.put(COLLECTION, key, {"n": 70})
    listed = here.history(COLLECTION, key)
    assert [(e.id, e.fields, e.head) for e in listed] == [
        (sent[7], {"n": 7}, False),
        (edit, {"n": 70}, True),
    ]
    assert here.put_many("doses", [(f"{NIK}/{d}", {"dose": d}) for d in (1, 2)]) == 2
    first = here.history("doses", f"{NIK}/1")
    assert [(e.origin, e.op, e.fields) for e in first] == [(here.id, "put", {"dose": 1})]
    here.delete("doses", f"{NIK}/1")
    assert [e.op for e in here.history("doses", f"{NIK}/1")] == ["put", "delete"]
    source.close()
    here.close()
