"""``Replica.put_many`` on a PostgreSQL store (a shared store: no guessed inserts, the
generic ``existing`` and ``add_first_changes``) gives what SQLite and ``put`` give.

Needs a server: OFFSYNC_TEST_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test);
skipped with the reason when none answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offsync import Identity, Replica, policies
from offsync.stores.postgres import PostgresStore
from tests.helpers.postgres import DSN, drop_schemas

pytestmark = pytest.mark.postgres

SITE = Identity(bytes([7]) * 32, "site")
POLICIES = {"residents": policies.LastWriterWins(), "doses": policies.FirstWriterWins()}


@pytest.fixture
def schema() -> Iterator[str]:
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    yield f"{prefix}0"
    drop_schemas(prefix)


def test_put_many_on_postgres_is_put_on_sqlite(schema: str, tmp_path: Path) -> None:
    data: list[tuple[str, dict[str, Any]]] = [
        (f"35190101{i:08d}", {"name": f"Warga {i}", "n": i}) for i in range(2500, 0, -1)
    ]
    data.append((data[1][0], {"again": 1}))  # a key given twice
    pg = Replica(PostgresStore(DSN, schema=schema), SITE, POLICIES)
    pg.put("residents", data[0][0], {"old": True})  # a record that exists
    pg.put_many("residents", data)
    lite = Replica.open(str(tmp_path / "a.sqlite"), identity=SITE, policies=POLICIES)
    lite.put("residents", data[0][0], {"old": True})
    with lite.batch():
        for k, f in data:
            lite.put("residents", k, f)
    assert pg.seq == lite.seq == 2502
    assert pg.state_digest() == lite.state_digest()
    assert pg.get("residents", data[0][0]) == {"old": True, **data[0][1]}
    assert len(pg.store.segment_index()) >= 1  # whole segments sealed in the transaction
    assert pg.conflicts() == []
    pg.close()
    lite.close()
