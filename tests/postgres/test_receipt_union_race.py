"""Two server workers keeping receipts of one signer at once lose nothing of the union.

A receipt may be restricted to what its receiver needs, so the store keeps, per signer,
the union of what its receipts said (docs/spec.md §8.1). Keeping one is a read (the union
so far), a union, and a write: two workers (two connections to one PostgreSQL store)
doing that for the same signer at the same moment must not both read the old union,
or the second write drops what the first added. The second worker starts once the
first has read, and they meet after their reads (a barrier): exactly the interleaving
that lost an update before the peer lock. With the lock the second waits for the
first to commit, the barrier gives up (it is only a meeting point) and both
statements survive.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator

import pytest

from offsync import Identity, Knowledge, Receipt, Replica
from offsync.scope import Partition, Stream
from offsync.stores.postgres import PostgresStore
from tests.helpers.postgres import DSN, drop_schemas

RESIDENTS = Partition("residents")  # each collection is one partition by default

pytestmark = pytest.mark.postgres

CENTRE = Identity(bytes([9]) * 32, "centre")
SITE = Identity(bytes([2]) * 32, "site")
X, Y = bytes([30]) * 32, bytes([31]) * 32


class _MeetAfterRead(PostgresStore):
    """A real PostgreSQL store whose workers meet right after reading a signer's union
    (the read of the read-modify-write), so that both read before either writes."""

    meet: threading.Barrier | None = None
    #: Set once this worker has read the union, inside its transaction.
    read: threading.Event

    def peer(self, peer: bytes) -> tuple[bytes, int, bytes, bytes] | None:
        row = super().peer(peer)
        if self.meet is not None and self._depth > 0:
            self.read.set()
            # With the peer lock the other worker waits for our commit: it cannot meet us.
            with contextlib.suppress(threading.BrokenBarrierError):
                self.meet.wait(timeout=3)
        return row


@pytest.fixture
def schema() -> Iterator[str]:
    prefix = f"offsync_test_{uuid.uuid4().hex[:10]}_"
    yield prefix + "0"
    drop_schemas(prefix)


def test_two_workers_union_the_receipts_of_one_signer(schema: str) -> None:
    seed = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    seed.record_receipt(
        Receipt.issue(SITE, 10, Knowledge.of(Stream(SITE.public_key, RESIDENTS), 1, 1))
    )
    seed.close()
    meet = threading.Barrier(2)
    workers = []
    for _ in range(2):
        store = _MeetAfterRead(DSN, schema=schema)
        store.meet, store.read = meet, threading.Event()
        workers.append((Replica(store, CENTRE), store))
    # Restricted receipts of one site, each to a different receiver, heard at once: the
    # older one first (a newer one kept first makes the older one not kept at all, by
    # design: it may predate a restore), the newer one while the first has read.
    said = [
        Receipt.issue(
            SITE,
            20,
            Knowledge(
                {Stream(SITE.public_key, RESIDENTS): [(1, 1)], Stream(X, RESIDENTS): [(1, 4)]}
            ),
        ),
        Receipt.issue(
            SITE,
            21,
            Knowledge(
                {Stream(SITE.public_key, RESIDENTS): [(1, 1)], Stream(Y, RESIDENTS): [(1, 7)]}
            ),
        ),
    ]
    errors: list[BaseException] = []

    def keep(rep: Replica, receipt: Receipt) -> None:
        try:
            rep.record_receipt(receipt)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    first = threading.Thread(target=keep, args=(workers[0][0], said[0]))
    first.start()
    assert workers[0][1].read.wait(timeout=60), "the first worker never read"
    second = threading.Thread(target=keep, args=(workers[1][0], said[1]))
    second.start()
    for t in (first, second):
        t.join()
    assert not errors, errors
    for w, _ in workers:
        w.close()
    check = Replica(PostgresStore(DSN, schema=schema), CENTRE)
    try:
        union = check.peer_knowledge(SITE.public_key)[SITE.public_key]
        assert union.contains(Stream(X, RESIDENTS), 4) and union.contains(
            Stream(Y, RESIDENTS), 7
        ), f"an update was lost: {union}"
        assert check.receipts()[SITE.public_key].created == 21, "the newest receipt is kept"
    finally:
        check.close()
