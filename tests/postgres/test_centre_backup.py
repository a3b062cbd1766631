"""A PostgreSQL centre backed up with ``pg_dump`` and restored with ``pg_restore``, as
docs/operations.md says, and what happens next: the sites give the restored centre what
it lost at their next round, and the centre's own later changes come back before it may
write again (the fork-safety path, as for a restored site).

Needs a PostgreSQL server (tests/helpers/postgres.py) and the ``pg_dump`` and
``pg_restore`` commands on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.errors import SequenceReuseError
from offsync.stores.postgres import PostgresStore
from offsync.sync import sync
from offsync.transports.memory import LoopbackTransport
from tests.helpers.postgres import DSN, drop_schemas

pytestmark = pytest.mark.postgres

CENTRE = Identity(bytes([41]) * 32, "pusat")
SITE = Identity(bytes([42]) * 32, "kec-saradan")


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"offsync_test_{uuid.uuid4().hex[:10]}_centre"
    yield name
    drop_schemas(name)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not on PATH")
    return path


def _centre(schema: str) -> Replica:
    return Replica(PostgresStore(DSN, schema=schema), CENTRE)


def test_a_centre_restored_from_pg_dump_gets_back_what_it_lost_from_the_sites(
    tmp_path: Path, schema: str
) -> None:
    pg_dump, pg_restore = _tool("pg_dump"), _tool("pg_restore")
    site = Replica.open(str(tmp_path / "site.sqlite"), identity=SITE)
    centre = _centre(schema)
    for i in range(3):
        site.put("residents", f"3519{i:012d}", {"n": i})
    centre.put("_notes", "welcome", {"text": "the centre's own change"})
    sync(site, LoopbackTransport(centre))
    at_dump = centre.state_digest()
    dump = tmp_path / "centre.dump"
    subprocess.run(
        [pg_dump, "--format=custom", f"--schema={schema}", f"--file={dump}", DSN],
        check=True,
        capture_output=True,
    )
    # After the dump: more from the site, and the centre writes again.
    for i in range(3, 5):
        site.put("residents", f"3519{i:012d}", {"n": i})
    centre.put("_notes", "later", {"text": "lost with the database"})
    sync(site, LoopbackTransport(centre))
    before_loss = centre.state_digest()
    assert site.state_digest() == before_loss
    centre.close()

    # The database is lost; the centre comes back from last night's dump.
    drop_schemas(schema)
    subprocess.run(
        [pg_restore, "--exit-on-error", f"--dbname={DSN}", str(dump)],
        check=True,
        capture_output=True,
    )
    centre = _centre(schema)
    assert centre.state_digest() == at_dump
    # The site's next round: it hears the centre's fresh receipt before it packs, so it
    # sends what the centre lost; its receipt tells the centre it issued more than the
    # centre holds of its own, so the centre refuses to write ...
    sync(site, LoopbackTransport(centre))
    assert centre.get("residents", f"3519{4:012d}") == {"n": 4}
    # ... until its own later change is back, which the site carried.
    assert centre.get("_notes", "later") == {"text": "lost with the database"}
    assert centre.state_digest() == site.state_digest() == before_loss
    centre.put("_notes", "after", {"text": "written after the restore"})
    sync(site, LoopbackTransport(centre))
    assert centre.quarantined() == [] and site.quarantined() == [] and site.forks() == []
    assert centre.state_digest() == site.state_digest()
    centre.close()
    site.close()


def test_a_restored_centre_refuses_to_write_while_a_site_holds_more_of_its_changes(
    tmp_path: Path, schema: str
) -> None:
    pg_dump, pg_restore = _tool("pg_dump"), _tool("pg_restore")
    site = Replica.open(str(tmp_path / "site.sqlite"), identity=SITE)
    centre = _centre(schema)
    dump = tmp_path / "centre.dump"
    subprocess.run(
        [pg_dump, "--format=custom", f"--schema={schema}", f"--file={dump}", DSN],
        check=True,
        capture_output=True,
    )
    centre.put("_notes", "one", {"n": 1})
    sync(site, LoopbackTransport(centre))
    centre.close()
    drop_schemas(schema)
    subprocess.run(
        [pg_restore, "--exit-on-error", f"--dbname={DSN}", str(dump)],
        check=True,
        capture_output=True,
    )
    centre = _centre(schema)
    assert centre.seq == 0
    # A bundle from the site that carries only its receipt: the claim arrives first.
    (receipt_only,) = site.pack(site.knowledge(), always=True)
    centre.apply(receipt_only)
    with pytest.raises(SequenceReuseError):
        centre.put("_notes", "two", {"n": 2})
    sync(site, LoopbackTransport(centre))
    assert centre.seq == 1
    centre.put("_notes", "two", {"n": 2})
    centre.close()
    site.close()
