"""Several processes applying to one PostgreSQL store at once: nothing lost, nothing twice.

Real worker processes (spawned, each with its own connection and Replica, as uvicorn
workers would be) apply overlapping, shuffled and duplicated bundles at the same moment;
afterwards every change was applied exactly once across all of them and the store equals
a SQLite replica fed the same bundles.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from offsync import Identity, Knowledge, Replica, policies
from offsync.errors import StorageConflictError
from offsync.stores.postgres import PostgresStore
from tests.helpers.postgres import DSN, drop_schemas, psycopg

pytestmark = pytest.mark.postgres

POLICIES = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
    "addresses": policies.MultiValue(),
}


@pytest.fixture
def schemas() -> Iterator[Callable[[], str]]:
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    counter = itertools.count()
    yield lambda: f"{prefix}{next(counter)}"
    drop_schemas(prefix)


def _bundles(rng: random.Random, sites: int = 6, writes: int = 120) -> tuple[list[bytes], int]:
    """Bundles from sites that write overlapping records; a relay re-packs them all."""
    reps = [
        Replica.open(":memory:", identity=Identity.generate(label=f"s{i}"), policies=POLICIES)
        for i in range(sites)
    ]
    # Every site first holds a common base, so most of its writes name parents and take
    # the merge path (read the record's changes, recompute) rather than the insert path.
    base = Replica.open(":memory:", identity=Identity.generate(label="base"), policies=POLICIES)
    with base.batch():
        for n in range(40):
            base.put("residents", f"3519{n:04d}", {"name": "base"})
    bundles: list[bytes] = base.pack()
    for rep in reps:
        for bundle in bundles:
            rep.apply(bundle)
    for i, rep in enumerate(reps):
        sent = Knowledge()  # what this site's earlier bundles carried
        for n in range(writes):
            key = f"3519{rng.randrange(40):04d}"  # shared by all sites: record contention
            if n % 7 == 0:
                rep.put("addresses", key, {"street": f"{i}-{n}"})
            elif n % 11 == 0 and rep.get("doses", key + "/1") is None:
                rep.put("doses", key + "/1", {"site": i})
            else:
                rep.put("residents", key, {"name": f"{i}-{n}", "n": n})
            if n % 10 == 9:  # a bundle every ten writes: many small bundles, each a segment
                bundles += rep.pack(sent | base.knowledge())
                sent = rep.knowledge()
    relay = Replica.open(":memory:", identity=Identity.generate(label="relay"), policies=POLICIES)
    for bundle in bundles:
        relay.apply(bundle)
    relay.put("residents", "35190001", {"by": "relay"})
    bundles += relay.pack(max_bytes=20000)  # the same segments again, grouped differently
    total = sum(r.seq for r in [*reps, relay, base])
    for r in [*reps, relay, base]:
        r.close()
    return bundles, total


def _worker(dsn: str, schema: str, seed: bytes, bundles: list[bytes], barrier: Any) -> Any:
    store = PostgresStore(dsn, schema=schema)
    replica = Replica(store, Identity(seed, "centre"), POLICIES)
    barrier.wait(timeout=60)
    applied = duplicates = quarantined = 0
    for bundle in bundles:
        report = replica.apply(bundle)
        applied += report.applied
        duplicates += report.duplicates
        quarantined += report.quarantined
    knowledge = replica.knowledge().to_bytes()
    replica.close()
    return applied, duplicates, quarantined, knowledge


def test_concurrent_worker_processes_apply_every_change_exactly_once(
    schemas: Callable[[], str],
) -> None:
    rng = random.Random(2024)
    bundles, total = _bundles(rng)
    schema = schemas()
    PostgresStore(DSN, schema=schema).close()  # migrate once, before the race
    seed = os.urandom(32)
    workers = 3
    # Every worker gets every bundle in its own order, some of them twice.
    plans = [rng.sample(bundles, len(bundles)) + rng.sample(bundles, 8) for _ in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Manager().Barrier(workers)
    with ctx.Pool(workers) as pool:
        results = pool.starmap(_worker, [(DSN, schema, seed, p, barrier) for p in plans])
    applied = sum(r[0] for r in results)
    assert sum(r[2] for r in results) == 0, "nothing here should be quarantined"
    assert applied == total, f"{applied} changes applied across workers, {total} written"

    centre = Identity(seed, "centre")
    reference = Replica.open(":memory:", identity=centre, policies=POLICIES)
    for bundle in bundles:
        reference.apply(bundle)
    store = PostgresStore(DSN, schema=schema)
    (rows, distinct) = store._q(
        "SELECT count(*), count(DISTINCT (origin, collection, seq)) FROM changes"
    )[0]
    # a change is one seq of one stream: (origin, collection) with one partition each
    assert rows == distinct == total, "the changes table holds every change exactly once"
    overlaps = store._q(
        "SELECT count(*) FROM segments a JOIN segments b ON a.origin = b.origin"
        " AND a.collection = b.collection AND a.prefix = b.prefix"
        " AND a.first_seq < b.first_seq AND b.first_seq <= a.last_seq"
    )[0][0]
    assert overlaps == 0, "no two stored segments of one stream overlap"
    assert store._q("SELECT count(*) FROM records WHERE heads = ''")[0][0] == 0
    centre_view = Replica(store, centre, POLICIES)
    # Every record row, heads and conflict flag too: a lost update shows in the heads
    # even when the surviving write happens to carry the winning fields.
    assert list(store.iter_records()) == list(reference.store.iter_records())
    assert centre_view.state_digest() == reference.state_digest()
    assert centre_view.knowledge() == reference.knowledge()
    for _, _, _, knowledge in results:  # each worker, at its end, saw everything
        assert Knowledge.from_bytes(knowledge) == reference.knowledge()
    centre_view.close()
    reference.close()


def test_a_replica_sees_what_another_process_applied(schemas: Callable[[], str]) -> None:
    """The segment index of a replica on a shared store follows the other writers."""
    rng = random.Random(5)
    bundles, total = _bundles(rng, sites=2, writes=30)
    schema = schemas()
    centre = Identity.generate(label="centre")
    first = Replica(PostgresStore(DSN, schema=schema), centre, POLICIES)
    second = Replica(PostgresStore(DSN, schema=schema), centre, POLICIES)
    assert second.knowledge() == Knowledge()
    for bundle in bundles:
        first.apply(bundle)
    assert second.knowledge() == first.knowledge(), "knowledge must follow other writers"
    assert sum(second.apply(b).applied for b in bundles) == 0, "all duplicates now"
    copy = Replica.open(":memory:", identity=Identity.generate(label="site"), policies=POLICIES)
    for bundle in second.pack():
        copy.apply(bundle)
    assert copy.state_digest() == first.state_digest(), "pulls carry other writers' segments"
    assert not list(copy.knowledge().partitions(first.id))
    for r in (first, second, copy):
        r.close()
    assert total > 0


class _FlakyStore(PostgresStore):
    """Loses the race (as after a deadlock) the first ``fail`` times it locks origins."""

    fail = 2

    def lock_origins(self, origins: Any) -> None:
        super().lock_origins(origins)
        if self.fail:
            self.fail -= 1
            self.set_meta("half-done", b"1")  # must vanish with the rolled-back try
            raise StorageConflictError("simulated deadlock")


def test_apply_retries_after_losing_a_race(schemas: Callable[[], str]) -> None:
    bundles, _ = _bundles(random.Random(9), sites=1, writes=20)
    centre = Identity.generate(label="centre")
    reference = Replica.open(":memory:", identity=centre, policies=POLICIES)
    flaky = Replica(_FlakyStore(DSN, schema=schemas()), centre, POLICIES)
    for bundle in bundles:
        assert flaky.apply(bundle).applied == reference.apply(bundle).applied
    assert flaky.store.get_meta("half-done") is None
    assert flaky.state_digest() == reference.state_digest()
    flaky.close()
    reference.close()


def _waits_for_lock(pid: int) -> bool:
    """Whether backend ``pid`` is waiting for a lock (polled, bounded)."""
    with psycopg.connect(DSN, autocommit=True) as conn:
        for _ in range(200):
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return True
            time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("hold", "take", "blocks"),
    [
        ("record", "record", True),  # a record that exists
        ("new record", "new record", True),  # one that does not yet (placeholder)
        ("inserted", "new record", True),  # a record add_new_records just wrote
        ("origin", "origin", True),
        ("record", "other record", False),
        ("origin", "other origin", False),
    ],
)
def test_store_locks_hold_until_commit(
    schemas: Callable[[], str], hold: str, take: str, blocks: bool
) -> None:
    from offsync.stores.base import RecordRow

    schema = schemas()
    a, b = PostgresStore(DSN, schema=schema), PostgresStore(DSN, schema=schema)
    with a.transaction():
        a.put_records([RecordRow("c", "k", b"\x80", b"\x90", False)])
    actions: dict[str, Callable[[PostgresStore], Any]] = {
        "record": lambda s: s.lock_records([("c", "k")]),
        "other record": lambda s: s.lock_records([("c", "j")]),
        "new record": lambda s: s.lock_records([("c", "new")]),
        "inserted": lambda s: s.add_new_records([RecordRow("c", "new", b"\x80", b"\x90", False)]),
        "origin": lambda s: s.lock_origins([b"o" * 32]),
        "other origin": lambda s: s.lock_origins([b"p" * 32]),
    }
    pid_b = b._q("SELECT pg_backend_pid()")[0][0]
    done = threading.Event()

    def second() -> None:
        with b.transaction():
            actions[take](b)
            b.get_meta("sync")  # a read: wait for the queued statements' results
        done.set()

    with a.transaction():
        actions[hold](a)
        a.get_meta("sync")
        thread = threading.Thread(target=second)
        thread.start()
        if blocks:
            assert _waits_for_lock(pid_b), f"{take} must wait while {hold} is held"
            assert not done.is_set()
        else:
            assert done.wait(30), f"{take} must not wait for {hold}"
    thread.join(30)
    assert done.is_set()
    a.close()
    b.close()
