"""``Replica.history`` on PostgreSQL: the audit scenario with the centre on PostgreSQL
and the sites on SQLite lists the same entries everywhere, also after reopening, and
a bulk apply of new records (PostgreSQL's one-statement path) is listed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from offsync import Identity, Replica
from offsync.stores.postgres import PostgresStore
from tests.helpers.history import COLLECTION, NIK, OTHER, offline_edits
from tests.helpers.postgres import DSN, drop_schemas

pytestmark = pytest.mark.postgres

CENTRE = Identity(bytes([1]) * 32, label="centre")


@pytest.fixture
def schema() -> Iterator[str]:
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    yield f"{prefix}history"
    drop_schemas(prefix)


def site(n: int, label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity(bytes([n]) * 32, label=label))


def test_history_on_postgres_equals_history_on_sqlite(schema: str) -> None:
    centre = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    district, kec = site(2, "district"), site(3, "kec")
    written = offline_edits(centre, district, kec)
    listed = centre.history(COLLECTION, NIK)
    assert {e.id for e in listed} == {w.id for w in written}
    assert listed == kec.history(COLLECTION, NIK) == district.history(COLLECTION, NIK)
    assert [e.op for e in centre.history(COLLECTION, OTHER)] == ["put", "delete"]
    centre.close()
    again = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    assert again.history(COLLECTION, NIK) == listed
    again.close()


def test_new_records_applied_in_bulk_are_listed(schema: str) -> None:
    centre = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    kec = site(3, "kec")
    sent = [kec.put(COLLECTION, f"35190101019{n:05d}", {"n": n}) for n in range(40)]
    for bundle in kec.pack(since=centre.knowledge()):
        centre.apply(bundle)
    key = "3519010101900009"
    assert [(e.id, e.fields) for e in centre.history(COLLECTION, key)] == [(sent[9], {"n": 9})]
    edit = centre.put(COLLECTION, key, {"n": 90})
    assert [(e.id, e.head) for e in centre.history(COLLECTION, key)] == [
        (sent[9], False),
        (edit, True),
    ]
    centre.close()
