"""The upload spool's statements: the ``upload_spool`` table of a PostgreSQL store.

A centre that spools (docs/scale.md, "The upload spool") writes each whole upload here
once and answers it "held"; a background applier (``offsync.http.spool``) claims held
rows, applies their bundles and marks them applied in one transaction. These functions
only say the SQL: they run on a ``PostgresStore`` (its connection, its transactions),
inside the caller's transaction when they are called in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .pgarrays import bytea_array, int8_array
from .postgres import PostgresStore, lock_key

__all__ = [
    "APPLIED",
    "HELD",
    "REFUSED",
    "Spooled",
    "any_held",
    "claim",
    "claim_turn",
    "depth",
    "lookup",
    "mark_applied",
    "mark_refused",
    "purge",
    "put",
    "settled",
]

HELD, APPLIED, REFUSED = 0, 1, 2


class Spooled(NamedTuple):
    """What the spool says of one bundle id: its state, and a refusal's answer."""

    state: int
    status: int | None = None
    error: str | None = None
    reason: str | None = None
    new: bool = False  # held because this very call spooled it


#: Answer for a row this call inserted: held, new.
NEW = Spooled(HELD, new=True)


def put(store: PostgresStore, items: Sequence[tuple[bytes, bytes]]) -> dict[bytes, Spooled]:
    """Spool ``(id, data)`` pairs in one transaction (one commit, one WAL flush for the
    group); what the spool says of each id afterwards. An id already spooled keeps its
    row (uploads are idempotent by id): its state is returned as it was."""
    if not items:
        return {}
    ids = [i for i, _ in items]
    with store.transaction():
        inserted = {
            bytes(r[0])
            for r in store._q(
                "INSERT INTO upload_spool (id, data, size)"
                " SELECT * FROM unnest(%b::bytea[], %b::bytea[], %b::int8[])"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                (
                    bytea_array(ids),
                    bytea_array([d for _, d in items]),
                    int8_array([len(d) for _, d in items]),
                ),
            )
        }
        out = {i: NEW for i in inserted}
        rest = [i for i in ids if i not in inserted]
        out.update(_states(store, rest))
    return out


def lookup(store: PostgresStore, ids: Sequence[bytes]) -> dict[bytes, Spooled]:
    """What the spool says of these ids (those it does not hold are left out)."""
    return _states(store, ids)


def settled(store: PostgresStore, ids: Sequence[bytes]) -> dict[bytes, Spooled]:
    """Those of these ids that are applied or refused (what waiting requests watch for:
    the held ones, most of them, cost no row)."""
    if not ids:
        return {}
    rows = store._q(
        "SELECT id, state, status, error, reason FROM upload_spool"
        " WHERE id = ANY(%b::bytea[]) AND state <> 0",
        (bytea_array(list(ids)),),
    )
    return {bytes(i): Spooled(s, st, e, r) for i, s, st, e, r in rows}


def _states(store: PostgresStore, ids: Sequence[bytes]) -> dict[bytes, Spooled]:
    if not ids:
        return {}
    rows = store._q(
        "SELECT id, state, status, error, reason FROM upload_spool WHERE id = ANY(%b::bytea[])",
        (bytea_array(list(ids)),),
    )
    return {bytes(i): Spooled(s, st, e, r) for i, s, st, e, r in rows}


def claim_turn(store: PostgresStore) -> None:
    """Inside the applier's transaction: wait for the centre-wide applier's turn (an
    advisory transaction lock). One group is applied at a time: groups grow while one
    commits, never apply a later bundle of an origin before an earlier one, and never
    deadlock on the records two groups both merge."""
    store._x("SELECT pg_advisory_xact_lock(%s)", (lock_key(store.schema.encode(), b"spool"),))


def any_held(store: PostgresStore) -> bool:
    """Whether any bundle is held (one index probe, outside any transaction)."""
    return bool(store._q("SELECT EXISTS (SELECT 1 FROM upload_spool WHERE state = 0)")[0][0])


def claim(store: PostgresStore, limit: int, max_bytes: int) -> list[tuple[bytes, bytes]]:
    """Lock (inside the caller's transaction) the oldest held rows no other applier has
    locked, at most ``limit`` of them and ``max_bytes`` together (at least one); their
    ids and bytes, oldest first."""
    rows = store._q(
        "SELECT id, size FROM upload_spool WHERE state = 0"
        " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    )
    kept: list[bytes] = []
    total = 0
    for i, size in rows:
        if kept and total + size > max_bytes:
            break  # the rest stay locked until this transaction ends, then go to others
        kept.append(bytes(i))
        total += size
    if not kept:
        return []
    found = {
        bytes(i): bytes(d)
        for i, d in store._q(
            "SELECT id, data FROM upload_spool WHERE id = ANY(%b::bytea[])",
            (bytea_array(kept),),
        )
    }
    return [(i, found[i]) for i in kept]


def mark_applied(store: PostgresStore, ids: Sequence[bytes]) -> None:
    """In the apply's transaction: these rows are applied (their bytes are let go)."""
    if ids:
        store._x(
            "UPDATE upload_spool SET state = 1, data = NULL WHERE id = ANY(%b::bytea[])",
            (bytea_array(list(ids)),),
        )


def mark_refused(
    store: PostgresStore, bundle_id: bytes, status: int, error: str, reason: str
) -> None:
    """The bundle was refused: keep the answer its uploader will get, drop its bytes."""
    store._x(
        "UPDATE upload_spool SET state = 2, data = NULL, status = %s, error = %s, reason = %s"
        " WHERE id = %b AND state = 0",
        (status, error, reason[:2000], bundle_id),
    )


def depth(store: PostgresStore) -> tuple[int, int]:
    """Held rows and their bytes: the backlog the appliers have yet to apply."""
    rows = store._q("SELECT count(*), coalesce(sum(size), 0) FROM upload_spool WHERE state = 0")
    return int(rows[0][0]), int(rows[0][1])


def purge(store: PostgresStore, older_than_seconds: float) -> None:
    """Forget settled rows (applied or refused) older than this: their uploaders had
    that long to learn the outcome; after it an upload of the id starts over."""
    store._x(
        "DELETE FROM upload_spool WHERE state <> 0"
        " AND received < now() - make_interval(secs => %s)",
        (float(older_than_seconds),),
    )
