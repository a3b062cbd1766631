"""The index of blob references on PostgreSQL (migration 5): a replica's missing blobs
per record and its collection read from it, records held before the migration indexed
by the first store opened after it, and the index equal to a scan of the records.

Needs a server: OFFSYNC_TEST_POSTGRES (tests/helpers/postgres.py skips otherwise).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator

import pytest

from offsync import Identity, Replica
from offsync.blobs import BlobRef, blob_hash
from offsync.stores.base import Store
from offsync.stores.postgres import PostgresStore
from tests.helpers.postgres import DSN, drop_schemas

pytestmark = pytest.mark.postgres

A = Identity(bytes([1]) * 32, "centre")
B = Identity(bytes([2]) * 32, "site")
FACE, PRINT = b"a photo" * 100, b"a fingerprint" * 50
REF_FACE = BlobRef(blob_hash(FACE), len(FACE), "image/jpeg")
REF_PRINT = BlobRef(blob_hash(PRINT), len(PRINT), "application/octet-stream")


@pytest.fixture
def schemas() -> Iterator[Callable[[], str]]:
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    counter = itertools.count()
    yield lambda: f"{prefix}{next(counter)}"
    drop_schemas(prefix)


def same_as_scan(store: Store) -> None:
    assert store.blob_refs() == Store.blob_refs(store)
    assert store.missing_blob_refs() == Store.missing_blob_refs(store)


def test_missing_blobs_and_collection_read_the_index(schemas: Callable[[], str]) -> None:
    now = [10**12]
    site = Replica(PostgresStore(DSN, schema=schemas()), B, wall=lambda: now[0])
    site.put_blob(FACE, "image/jpeg")
    site.put_blob(PRINT)
    site.put("people", "p1", {"photo": REF_FACE.field(), "prints": [REF_PRINT.field()]})
    site.put("people", "p2", {"photo": REF_FACE.field()})
    site.put_many("people", {f"bulk{i}": {"photo": REF_PRINT.field()} for i in range(3)})
    centre = Replica(PostgresStore(DSN, schema=schemas()), A, wall=lambda: now[0])
    for bundle in site.pack(centre.knowledge()):
        centre.apply(bundle)
    same_as_scan(centre.store)
    missing = centre.missing_blobs()
    assert missing.count == 2 and len(missing.by_record) == 5
    assert centre.missing_blobs("people", "p2").by_record == {("people", "p2"): (REF_FACE,)}
    centre.put_blob(FACE, "image/jpeg")
    assert centre.missing_blobs().blobs == {REF_PRINT}
    assert centre.missing_blobs("people", "p2").count == 0
    same_as_scan(centre.store)
    centre.delete("people", "p1")
    centre.put("people", "p2", {"photo": None})
    now[0] += 10**10
    assert centre.collect_blobs() == [REF_FACE.hash]  # no visible record references it
    assert centre.missing_blobs().blobs == {REF_PRINT}  # bulk0-2 still reference it
    same_as_scan(centre.store)
    site.close()
    centre.close()


def test_records_held_before_migration_5_are_indexed_at_the_next_open(
    schemas: Callable[[], str],
) -> None:
    name = schemas()
    rep = Replica(PostgresStore(DSN, schema=name), A)
    rep.put_blob(PRINT)
    rep.put("people", "p1", {"photo": REF_FACE.field(), "print": REF_PRINT.field()})
    rep.put("people", "p2", {"name": "no blobs"})
    expected = rep.store.blob_refs()
    assert len(expected) == 2
    store = rep.store
    assert isinstance(store, PostgresStore)
    # Back to schema 4, as a centre that ran the previous offsync left it.
    store._x("DROP TABLE blob_refs")
    store._x("DELETE FROM schema_migrations WHERE version = 5")
    rep.close()
    again = PostgresStore(DSN, schema=name)
    assert again.migrated == [5]
    assert again.get_meta("blob_refs_backfill") is None  # done, and said so
    assert again.blob_refs() == expected
    assert again.missing_blob_refs() == [("people", "p1", REF_FACE)]
    again.close()
    empty = PostgresStore(DSN, schema=schemas())  # nothing to index: no note left
    assert empty.get_meta("blob_refs_backfill") is None and empty.blob_refs() == []
    empty.close()
