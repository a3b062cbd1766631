"""Erasure and schema versions with the centre on PostgreSQL: an order from an open-mode
site reaches the centre, which keeps no value of the record in its segments (redacted
in place), records or changes, also after reopening; schema-held changes are applied
when the centre is opened with the upgrade."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from offsync import Identity, Replica
from offsync.schemas import Schema, Schemas
from offsync.stores.postgres import PostgresStore
from tests.helpers.postgres import DSN, drop_schemas

pytestmark = pytest.mark.postgres

CENTRE = Identity(bytes([1]) * 32, label="centre")
NAME = b"Siti Aminah Unik"


@pytest.fixture
def schema() -> Iterator[str]:
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    yield f"{prefix}erasure"
    drop_schemas(prefix)


def _holds(replica: Replica) -> bool:
    keys = [(stream, s.first) for stream, segs in replica._st.segments.items() for s in segs]
    if any(NAME in data for data in replica.store.segment_data(keys)):
        return True
    return any(
        (r.fields is not None and NAME in r.fields)
        or any(
            c.fields is not None and NAME in c.fields
            for c in replica.store.changes_for(r.collection, r.key)
        )
        for r in replica.store.iter_records()
    )


def test_an_erasure_redacts_the_centre_on_postgres(schema: str) -> None:
    centre = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    kec = Replica.open(":memory:", identity=Identity(bytes([3]) * 32, label="kec"))
    kec.put("residents", "3519", {"name": NAME.decode()}, author="clerk-7")
    kec.put("residents", "3520", {"name": "Budi"})
    for bundle in kec.pack(since=centre.knowledge()):
        centre.apply(bundle)
    assert _holds(centre)
    kec.erase("residents", "3519", "request 12")
    for bundle in kec.pack(since=centre.knowledge()):
        centre.apply(bundle)
    assert centre.get("residents", "3519") is None
    assert not _holds(centre)
    assert centre.state_digest() == kec.state_digest()
    assert [e.author for e in centre.history("residents", "3519")] == ["clerk-7", None]
    centre.close()
    again = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    assert not _holds(again) and again.get("residents", "3520") == {"name": "Budi"}
    again.close()
    kec.close()


def test_schema_held_changes_apply_after_the_upgrade_on_postgres(schema: str) -> None:
    two = Schemas({"residents": Schema(2, {1: lambda f: {**f, "v": 2}})})
    kec = Replica.open(":memory:", identity=Identity(bytes([3]) * 32, label="kec"), schemas=two)
    centre = Replica(PostgresStore(DSN, schema=schema), CENTRE)  # unversioned: reads 1
    kec.put("residents", "a", {"name": "x"})
    for bundle in kec.pack(since=centre.knowledge()):
        centre.apply(bundle)
    assert centre.get("residents", "a") is None and centre.quarantined()
    centre.close()
    centre = Replica(PostgresStore(DSN, schema=schema), CENTRE, schemas=two)
    assert centre.get("residents", "a") == {"name": "x"} and not centre.quarantined()
    assert centre.state_digest() == kec.state_digest()
    centre.close()
    kec.close()
