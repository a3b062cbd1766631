"""The upload spool of a centre: uploads held durably, applied in group commits.

Without a spool each upload is applied in its request: one transaction, one commit and
one receipt per bundle, the request waiting for all of it. With one (``create_app(...,
spool=...)``, a PostgreSQL store; docs/scale.md, "The upload spool"):

* ``SpoolWriter`` writes each whole upload into ``upload_spool`` and the request is
  answered ``202 held``. The uploads that arrive while one spool transaction commits go
  in the next, so a flood costs one commit (one WAL flush) per group, not per bundle.
* ``Applier`` (a thread per worker process, on a connection of its own) claims the
  oldest held bundles, applies a group of them in one transaction and marks them
  applied in that same transaction: a bundle is applied exactly once, and a crash at
  any point leaves it either held (applied later) or applied, never half.
* A bundle refused while applying (it does not verify, breaks its chain ...) is
  applied alone to find it, then marked refused with the answer its uploader would
  have had; nothing of it is kept.

The uploader asks again (``PUT`` with ``Content-Range: bytes */TOTAL``, no body): held
(202 again), applied (``200 duplicate`` with a receipt built after it was seen applied,
so the receipt never claims what is not durably held) or the refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import RemoteDataError, StorageConflictError, StorageError
from ..replica import Replica, spooling
from ..replica.spooling import replica_beside
from ..stores import pgspool
from ..stores.pgspool import Spooled
from ..stores.postgres import PostgresStore
from .refusals import refusal_for

__all__ = ["Applier", "SpoolSettings", "SpoolWriter", "replica_beside"]

log = logging.getLogger("offsync.server")


@dataclass(frozen=True, slots=True)
class SpoolSettings:
    """``group``: bundles per apply transaction at most; ``group_bytes``: their bytes at
    most; ``max_held``: held bundles beyond which uploads are answered 503 (the centre
    is truly behind); ``idle``: seconds an applier waits when nothing is held;
    ``keep_settled``: seconds an applied or refused row is remembered for its uploader."""

    group: int = 64
    group_bytes: int = 32 * 1024 * 1024
    max_held: int = 100_000
    idle: float = 0.25
    hold: float = 4.0
    watch: float = 0.05
    keep_settled: float = 7 * 24 * 3600
    batch: int = 512
    batch_bytes: int = 32 * 1024 * 1024


@dataclass(slots=True)
class _Op:
    bundle_id: bytes
    data: bytes | None  # None: a lookup (or a wait, with ``until``)
    loop: asyncio.AbstractEventLoop
    until: float | None = None  # a wait: answer once settled, or HELD at this time
    future: asyncio.Future[Spooled | None] = field(init=False)
    #: When the query that answered had returned (``time.monotonic()``): what it saw
    #: applied was committed before then, so a receipt whose build starts after this
    #: states it (a time taken before the query would not do: the apply may commit
    #: between that time and the query's snapshot).
    seen: float = 0.0

    def __post_init__(self) -> None:
        self.future = self.loop.create_future()

    def settle(self, value: Spooled | None, error: BaseException | None, seen: float = 0.0) -> None:
        self.seen = seen

        def done() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(value)

        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(done)


class SpoolWriter:
    """Writes uploads into the spool from one thread, many per transaction.

    ``put`` and ``lookup`` are awaited by requests; the thread takes everything queued
    (up to ``batch`` uploads or ``batch_bytes``) into one transaction, so the commit's
    WAL flush is shared by every upload that arrived while the previous one committed.
    """

    def __init__(
        self,
        store: PostgresStore,
        settings: SpoolSettings,
        on_spooled: Callable[[], None] | None = None,
    ) -> None:
        self._db = store  # a connection of its own, not a replica's store
        self.settings = settings
        self.on_spooled = on_spooled
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        #: Requests waiting for their bundle to be settled, by id.
        self._waiting: dict[bytes, list[_Op]] = {}
        self._thread = threading.Thread(target=self._run, name="offsync-spool", daemon=True)
        self._thread.start()

    async def put(self, bundle_id: bytes, data: bytes) -> tuple[Spooled, float]:
        """Spool a whole bundle (its id checked by the caller); what the spool says,
        and when it was asked (``_Op.seen``)."""
        op = _Op(bundle_id, data, asyncio.get_running_loop())
        self._queue.put(op)
        found = await op.future
        assert found is not None
        return found, op.seen

    async def lookup(self, bundle_id: bytes) -> tuple[Spooled | None, float]:
        op = _Op(bundle_id, None, asyncio.get_running_loop())
        self._queue.put(op)
        return await op.future, op.seen

    async def wait(self, bundle_id: bytes, seconds: float) -> tuple[Spooled, float]:
        """What becomes of a held bundle within ``seconds``: applied or refused (as
        soon as the watcher sees it), else still held. Whichever process applies it."""
        op = _Op(bundle_id, None, asyncio.get_running_loop(), time.monotonic() + seconds)
        self._queue.put(op)
        found = await op.future
        return found or Spooled(pgspool.HELD), op.seen

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._db.close()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.settings.watch if self._waiting else None)
            except queue.Empty:
                self._watch()
                continue
            if first is None:
                for waiters in self._waiting.values():
                    for waiter in waiters:
                        waiter.settle(Spooled(pgspool.HELD), None)
                return
            if first.until is not None:
                self._waiting.setdefault(first.bundle_id, []).append(first)
                continue
            ops, size = [first], len(first.data or b"")
            while len(ops) < self.settings.batch and size < self.settings.batch_bytes:
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    self._queue.put(None)  # stop after this batch
                    break
                if op.until is not None:
                    self._waiting.setdefault(op.bundle_id, []).append(op)
                    continue
                ops.append(op)
                size += len(op.data or b"")
            self._write(ops)
            if self._waiting:
                self._watch()

    def _watch(self) -> None:
        """Answer the waiting requests whose bundles were settled, or whose time is up."""
        try:
            found = pgspool.settled(self._db, list(self._waiting))
        except StorageError:
            found = {}  # tried again at the next watch; the waits still time out
        seen = time.monotonic()
        now = time.monotonic()
        for bundle_id in list(self._waiting):
            spooled = found.get(bundle_id)
            settled = spooled is not None and spooled.state != pgspool.HELD
            keep = []
            for op in self._waiting[bundle_id]:
                if settled:
                    op.settle(spooled, None, seen)
                elif op.until is not None and now >= op.until:
                    op.settle(Spooled(pgspool.HELD), None)
                else:
                    keep.append(op)
            if keep:
                self._waiting[bundle_id] = keep
            else:
                del self._waiting[bundle_id]

    def _write(self, ops: list[_Op]) -> None:
        puts: dict[bytes, bytes] = {}
        for op in ops:
            if op.data is not None:
                puts.setdefault(op.bundle_id, op.data)
        try:
            found = pgspool.put(self._db, list(puts.items()))
            asked = [op.bundle_id for op in ops if op.data is None and op.bundle_id not in found]
            found.update(pgspool.lookup(self._db, asked))
            seen = time.monotonic()
        except StorageError as exc:
            for op in ops:
                op.settle(None, exc)
            return
        except Exception as exc:  # pragma: no cover - a bug: fail the requests, keep going
            log.exception("the upload spool failed")
            for op in ops:
                op.settle(None, StorageError(f"upload spool failed: {exc}"))
            return
        for op in ops:
            op.settle(found.get(op.bundle_id), None, seen)
        if puts and self.on_spooled is not None:
            self.on_spooled()


class Applier:
    """Applies held bundles in group commits, in a thread of its own.

    Several appliers (one per worker process) share the spool and take turns (a
    centre-wide transaction lock): one group is applied at a time, made of the oldest
    held bundles. So a group grows while the one before it commits (group commit), a
    later bundle of an origin is never applied before an earlier one, and two groups
    never deadlock on records both merge. Applying is serial across the centre; what
    runs in parallel is everything else (HTTP, spooling, receipts, pulls).
    """

    def __init__(
        self,
        replica: Replica,
        settings: SpoolSettings,
        on_applied: Callable[[int], None] | None = None,
    ) -> None:
        self.replica = replica
        self.settings = settings
        self.on_applied = on_applied
        #: Held bundles the last time this applier looked, and bundles it applied.
        self.held = 0
        self.applied = 0
        self.refused = 0
        self.groups = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._purged = 0.0

    def wake(self) -> None:
        """Something was spooled (by this process): look now, not after ``idle``."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="offsync-applier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.replica.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.step()
            except StorageError as exc:
                log.warning("upload spool applier: %s; trying again", exc)
                done = 0
                self._stop.wait(1.0)
            except Exception:  # pragma: no cover - a bug: keep the centre applying
                log.exception("upload spool applier failed; trying again")
                done = 0
                self._stop.wait(1.0)
            if not done:
                self._wake.wait(self.settings.idle)
                self._wake.clear()

    def step(self) -> int:
        """Apply one group of held bundles; how many were settled (0: none held)."""
        now = time.monotonic()
        if now - self._purged > 60:
            self._purged = now
            spooling.purge(self.replica, self.settings.keep_settled)
        held = spooling.held(self.replica)
        self.held = held or 0  # what the 503 of ``max_held`` goes by
        if held is None:
            return 0
        claimed: list[bytes] = []
        try:
            done = spooling.apply_group(
                self.replica, self.settings.group, self.settings.group_bytes, claimed
            )
        except StorageConflictError:
            return 0  # lost a race: the rows are held still, tried again
        except StorageError:
            raise  # the database: back off (``_run``), the rows are held still
        except Exception as exc:
            if not isinstance(exc, RemoteDataError):  # a bug: isolate its bundle
                log.exception("a group of spooled bundles failed; applying them one by one")
            return self._one_by_one(claimed)
        if done:
            self.groups += 1
            self.applied += done
            self.held = max(0, self.held - done)
            if self.on_applied is not None:
                self.on_applied(done)
        return done

    def _one_by_one(self, ids: list[bytes]) -> int:
        """A group met a refusal: apply each bundle alone, refusing the bad ones."""
        settled = 0
        for bundle_id in ids:
            try:
                if not spooling.apply_alone(self.replica, bundle_id):
                    continue  # another applier has it, or it is settled
                settled += 1
                self.applied += 1
            except RemoteDataError as exc:
                refusal = refusal_for(exc)
                assert refusal is not None
                spooling.mark_refused(
                    self.replica,
                    bundle_id,
                    refusal.status,
                    refusal.body.error,
                    refusal.body.reason,
                )
                log.warning("spooled bundle %s refused: %s", bundle_id.hex()[:16], exc)
                settled += 1
                self.refused += 1
            except StorageConflictError:
                continue  # still held: the next step takes it again
            except StorageError:
                raise
            except Exception:  # a bug met on this bundle: it stays held, the others go on
                log.exception("spooled bundle %s failed to apply", bundle_id.hex()[:16])
        return settled
