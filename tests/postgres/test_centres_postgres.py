"""Several centres on PostgreSQL: each centre on its own schema of the test server
(as two databases would be), one of them killed before the sites deliver and brought
back afterwards; the sites fail over, the centres peer, all converge with every change
once (the scenario is ``tests.helpers.centres.down_then_converge``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.postgres import DSN, drop_schemas, psycopg

pytest.importorskip("httpx", reason="the http extra is not installed")

from offsync import Identity, Replica
from offsync.scope import Partition, Stream
from offsync.server import create_app
from offsync.stores.postgres import PostgresStore
from offsync.sync import sync_any
from tests.helpers.centres import POLICIES, client, down_then_converge
from tests.helpers.http import LiveServer

RESIDENTS = Partition("residents")  # each collection is one partition by default

pytestmark = pytest.mark.postgres


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"offsync_test_{uuid.uuid4().hex[:10]}_centres"
    yield name
    drop_schemas(name)


def test_one_centre_killed_sites_deliver_then_all_converge(prefix: str) -> None:
    schemas: dict[bytes, str] = {}
    opened: list[Replica] = []

    def make_centre(label: str) -> Replica:
        schema = f"{prefix}_{label.replace('-', '_')}"
        store = PostgresStore(DSN, schema=schema)
        rep = Replica(store, Identity.generate(label), POLICIES)
        schemas[rep.id] = schema
        opened.append(rep)
        return rep

    def count_rows(rep: Replica) -> tuple[int, int]:
        # A change id is unique within its stream; these sites write one partition per
        # collection, so (origin, collection, seq) names a change.
        query = psycopg.sql.SQL(
            "SELECT count(*), count(DISTINCT (origin, collection, seq)) FROM {}.changes"
        ).format(psycopg.sql.Identifier(schemas[rep.id]))
        with psycopg.connect(DSN) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    try:
        down_then_converge(make_centre, count_rows, kill_first=True)
    finally:
        for rep in opened:
            rep.close()


def test_a_killed_centre_fails_over_mid_life(prefix: str) -> None:
    """A centre that answered a first round and is then killed: the next round goes to
    the other centre, and receipts of both count."""
    a = Replica(PostgresStore(DSN, schema=f"{prefix}_a"), Identity.generate("a"), POLICIES)
    b = Replica(PostgresStore(DSN, schema=f"{prefix}_b"), Identity.generate("b"), POLICIES)
    site = Replica.open(":memory:", identity=Identity.generate("site"), policies=POLICIES)
    try:
        with LiveServer(create_app(b)) as srv_b:
            srv_a = LiveServer(create_app(a)).start()
            urls = [srv_a.url, srv_b.url]
            site.put("residents", "3519010101900001", {"name": "first"})
            first = sync_any(site, [client(u, site) for u in urls])
            assert first.index == 0 and not first.failures
            srv_a.stop()  # killed
            site.put("residents", "3519010101900002", {"name": "second"})
            second = sync_any(site, [client(u, site) for u in urls])
            assert second.index == 1 and second.failures[0].where == srv_a.url
            assert a.knowledge().count(Stream(site.id, RESIDENTS)) == 1
            assert b.knowledge().count(Stream(site.id, RESIDENTS)) == 2
    finally:
        for rep in (a, b, site):
            rep.close()
