"""The replica's side of the upload spool: applying held bundles in group commits.

The spool itself (``upload_spool``, ``offsync.stores.pgspool``) lives in a PostgreSQL
centre's store; the threads that fill it and drain it are the HTTP server's
(``offsync.http.spool``). What touches the replica's store is here, as everything that
does is in this package: claiming a group of held bundles, applying them in one
transaction (``Replica.group_commit``) and marking them applied in that transaction,
so that each held bundle is applied exactly once whatever crashes when.
"""

from __future__ import annotations

from ..errors import UsageError
from ..stores import pgspool
from ..stores.postgres import PostgresStore
from .replica import Replica

__all__ = [
    "apply_alone",
    "apply_group",
    "held",
    "mark_refused",
    "purge",
    "replica_beside",
    "spool_store",
]


def _store(replica: Replica) -> PostgresStore:
    store = replica.store
    if not isinstance(store, PostgresStore):
        raise UsageError("the upload spool needs a replica on the PostgreSQL store")
    return store


def spool_store(replica: Replica) -> PostgresStore:
    """A connection of its own to ``replica``'s PostgreSQL store (the spool writer's);
    ``UsageError`` for any other store."""
    store = _store(replica)
    return PostgresStore(store._dsn, schema=store.schema, migrate=False)


def replica_beside(replica: Replica) -> Replica:
    """A second replica of ``replica``'s centre on a connection of its own (the same
    identity, policies, trust and limits): what an applier applies with, so that it
    never waits for the request path's replica lock, nor holds it."""
    return Replica(
        spool_store(replica),
        replica.identity,
        replica.policies,
        default_policy=replica.default_policy,
        limits=replica.limits,
        trust=replica.authorities,
        validators=replica.validators,
        level=replica.level,
    )


def held(replica: Replica) -> int | None:
    """How many bundles are held; None (one index probe, no count) when none is."""
    store = _store(replica)
    if not pgspool.any_held(store):
        return None
    return pgspool.depth(store)[0]


def purge(replica: Replica, older_than_seconds: float) -> None:
    pgspool.purge(_store(replica), older_than_seconds)


def apply_group(replica: Replica, limit: int, max_bytes: int, claimed: list[bytes]) -> int:
    """In one transaction: wait for the applier's turn, claim the oldest held bundles
    (at most ``limit`` and ``max_bytes``; their ids are put in ``claimed`` as soon as
    they are claimed), apply them as one group and mark them applied; how many were
    applied (0: nothing was left to claim). Any error rolls all of it back: the
    bundles stay held, and the caller may apply those in ``claimed`` one by one."""
    store = _store(replica)
    with replica.group_commit() as group:
        pgspool.claim_turn(store)
        rows = pgspool.claim(store, limit, max_bytes)
        claimed.extend(i for i, _ in rows)
        if not rows:
            return 0
        group.apply([d for _, d in rows])
        pgspool.mark_applied(store, claimed)
    return len(rows)


def apply_alone(replica: Replica, bundle_id: bytes) -> bool:
    """Apply one held bundle in a transaction of its own and mark it applied; False if
    it is not held (settled, or another applier has it). Errors roll it back."""
    store = _store(replica)
    with replica.group_commit() as group:
        pgspool.claim_turn(store)
        rows = store._q(
            "SELECT data FROM upload_spool WHERE id = %b AND state = 0 FOR UPDATE SKIP LOCKED",
            (bundle_id,),
        )
        if not rows:
            return False
        group.apply([bytes(rows[0][0])])
        pgspool.mark_applied(store, [bundle_id])
    return True


def mark_refused(replica: Replica, bundle_id: bytes, status: int, error: str, reason: str) -> None:
    """The held bundle is refused: keep the answer its uploader gets, drop its bytes."""
    pgspool.mark_refused(_store(replica), bundle_id, status, error, reason)
