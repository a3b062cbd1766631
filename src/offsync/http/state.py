"""What one server app holds between requests: its replica, limits, slots and uploads."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ..replica import Replica
from .observe import Observer
from .refusals import busy
from .signing import Challenges, challenge_key
from .spool import Applier, SpoolWriter
from .told import ToldReceipts
from .uploads import Uploader, Uploads

__all__ = ["Readable", "ServerState"]

T = TypeVar("T")

#: Decides what a pulling site may read: ``readable(site_key, origin_key)``. Segments are
#: signed per origin and forwarded byte for byte, so an origin's changes are the unit.
Readable = Callable[[bytes, bytes], bool]


class ServerState:
    """What one app holds between requests; ``app.state.offsync`` for integrators.

    ``refused_busy`` counts the 503 answers given and ``in_flight`` the uploads,
    applies and pulls running (for monitoring and tests); ``waiting`` the requests
    queued for a slot (at most ``max_waiting``, each for at most ``admission_wait``
    seconds: docs/scale.md, "Admission"); ``uploads`` holds the
    partial uploads (``offsync.http.uploads``); ``observe`` logs what happens and
    counts it in the metrics (``offsync.http.observe``).
    """

    def __init__(
        self,
        replica: Replica,
        *,
        upload_dir: Path,
        max_upload_bytes: int,
        max_pull_bundle_bytes: int,
        max_pull_response_bytes: int,
        max_in_flight: int,
        busy_timeout: float,
        retry_after: int,
        replay_window: float,
        readable: Readable | None,
        max_partial_uploads: int = 1000,
        partial_ttl: float = 7 * 24 * 3600,
        observer: Observer | None = None,
        admission_wait: float = 0.0,
        max_waiting: int = 0,
    ) -> None:
        self.replica = replica
        self.observe = observer or Observer(replica)
        self.max_partial_uploads = max_partial_uploads
        self.partial_ttl = partial_ttl
        self.upload_dir = upload_dir
        self.max_upload_bytes = max_upload_bytes
        self.max_pull_bundle_bytes = max_pull_bundle_bytes
        self.max_pull_response_bytes = max_pull_response_bytes
        self.max_in_flight = max_in_flight
        self.busy_timeout = busy_timeout
        self.retry_after = retry_after
        self.readable = readable
        #: The receipt each site was last sent, so an idle pull sends no bundle.
        self.told = ToldReceipts()
        self.challenges = Challenges(
            challenge_key(replica.identity), replica.id, max(1, int(replay_window * 1000))
        )
        self.uploads = Uploads(
            upload_dir,
            max_upload_bytes=max_upload_bytes,
            max_partial=max_partial_uploads,
            ttl=partial_ttl,
            busy_timeout=busy_timeout,
        )
        self.done = self.uploads.done  # recently applied bundle ids
        self.admission_wait = admission_wait
        self.max_waiting = max_waiting
        self.in_flight = 0
        #: Requests waiting for a slot, first come first served: a freed slot passes
        #: straight to the first (``release``), so a newcomer never overtakes them.
        self._waiters: deque[_Waiter] = deque()
        self.refused_busy = 0  # 503 answers given, for tests and monitoring
        #: Bundles this process applied, and the last receipt built for an upload's
        #: answer with how many had been applied then (``receipt_after``).
        self._applies = 0
        self._lock_waiters = 0  # requests of this process waiting for the replica's lock
        self._last_receipt: tuple[int, bytes] | None = None
        #: This process's uploads in progress: a lock per id, and how many wait on it.
        self.upload_locks: dict[str, tuple[anyio.Lock, int]] = {}
        self._counter_lock = threading.Lock()
        #: The upload spool (``offsync.http.spool``), when uploads are spooled.
        self.spool: SpoolWriter | None = None
        self.applier: Applier | None = None
        self.spool_max_held = 0
        self.spool_hold = 0.0
        self.spool_retry_after = 1
        #: The last receipt built by ``receipt_since``, with when its build started.
        self._since_receipt: tuple[float, bytes] | None = None

    # -- bounded in-flight work --------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Requests queued for a slot now."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take one of the ``max_in_flight`` slots, if one is free and nobody waits."""
        with self._counter_lock:
            if self.in_flight >= self.max_in_flight or self._waiters:
                return False
            self.in_flight += 1
            self.observe.in_flight(self.in_flight)
            return True

    def release(self) -> None:
        """Give a slot back: to the first request waiting for one, or free it. Any
        thread may call this (a streamed pull ends wherever its response is closed)."""
        with self._counter_lock:
            while self._waiters:
                handed = self._waiters.popleft().hand_over()  # in_flight is unchanged
                self.observe.waiting(len(self._waiters))
                if handed:
                    return
            self.in_flight -= 1
            self.observe.in_flight(self.in_flight)

    def count_busy(self) -> None:
        with self._counter_lock:
            self.refused_busy += 1

    async def acquire(self) -> None:
        """Take a slot, waiting for one up to ``admission_wait`` seconds in a queue of
        at most ``max_waiting``; busy (503) when the queue is full or the wait is over.

        Waiting costs the server a coroutine and an unread socket (the body is read
        after admission); a 503 costs both sides a whole request and the site a
        Retry-After sleep, so a 503 is kept for a server that is truly saturated."""
        with self._counter_lock:
            if self.in_flight < self.max_in_flight and not self._waiters:
                self.in_flight += 1
                self.observe.in_flight(self.in_flight)
                return
            full = len(self._waiters) >= self.max_waiting
            if full or self.admission_wait <= 0 or self.max_in_flight == 0:
                raise busy()
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
            self.observe.waiting(len(self._waiters))
        try:
            await asyncio.wait_for(waiter.future, self.admission_wait)
        except BaseException as exc:  # timed out, or the request was cancelled
            with self._counter_lock:
                handed = waiter not in self._waiters
                if not handed:
                    self._waiters.remove(waiter)
                    self.observe.waiting(len(self._waiters))
            if handed:  # the slot came as the wait ended: it is ours to give back
                self.release()
            if isinstance(exc, TimeoutError):
                raise busy() from None
            raise

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block (``acquire``), or refuse as busy."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def run_locked(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` (in a worker thread) holding the replica's lock; busy after
        ``busy_timeout``."""
        lock = self.replica.lock
        with self._counter_lock:
            self._lock_waiters += 1
        try:
            acquired = lock.acquire(timeout=self.busy_timeout)
        finally:
            with self._counter_lock:
                self._lock_waiters -= 1
        if not acquired:
            raise busy()
        try:
            return fn()
        finally:
            lock.release()

    async def locked(self, fn: Callable[[], T]) -> T:
        """``run_locked`` in a worker thread, off the event loop."""
        return await anyio.to_thread.run_sync(self.run_locked, fn)

    def remember_done(self, bundle_id: str, uploader: Uploader | None = None) -> None:
        self.uploads.remember(bundle_id, uploader)

    @asynccontextmanager
    async def upload_lock(self, bundle_id: str) -> AsyncIterator[None]:
        """Serialise this process's requests for one upload id (other processes sharing
        the upload directory are held off by its lock file, ``Uploads.lock``)."""
        lock, users = self.upload_locks.get(bundle_id, (anyio.Lock(), 0))
        self.upload_locks[bundle_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self.upload_locks[bundle_id]
            if users == 1:
                del self.upload_locks[bundle_id]
            else:
                self.upload_locks[bundle_id] = (lock, users - 1)

    def receipt(self) -> bytes:
        """The replica's fresh receipt for anyone (``GET /knowledge``, unsigned), encoded
        (call holding its lock): its own changes only, since an unknown asker needs
        nothing else from it (docs/http.md); a signed site gets the rest bounded by
        what it holds, in a pull answer."""
        return self.replica.receipt_for(self.replica.id).encode()

    def receipt_for_uploader(self, uploader: Uploader) -> bytes:
        """A fresh receipt for a site's upload (call holding the replica's lock), bounded
        by what that site needs and what the bundle carried, as an applied upload's
        answer is: built now, after every commit that made the bundle held."""
        sender, ranges = uploader
        return self.replica.receipt_for(sender, ranges).encode()

    def applied(self) -> int:
        """Count a bundle applied and committed (call holding the replica's lock); the
        ticket for ``receipt_after``."""
        self._applies += 1
        return self._applies

    @property
    def applies(self) -> int:
        """Bundles this process applied so far (the latest ticket)."""
        return self._applies

    async def receipt_for(self, ticket: int) -> bytes:
        """``receipt_after(ticket)``, without a trip to a worker thread when the last
        receipt built will do."""
        found = self.built_after(ticket)
        if found is None:
            found = await self.locked(lambda: self.receipt_after(ticket))
        return found

    def receipt_now(self, ticket: int) -> bytes | None:
        """Right after apply ``ticket`` (holding the replica's lock): its receipt when no
        other request waits for the replica (built now, no second trip for it), None when
        some do (one of them, or a receipt built after them, will cover this one too)."""
        return None if self._lock_waiters else self.receipt_after(ticket)

    def built_after(self, ticket: int) -> bytes | None:
        """The last receipt built for an upload, if built after apply ``ticket``
        committed (no lock needed: the pair is replaced whole)."""
        last = self._last_receipt
        return last[1] if last is not None and last[0] >= ticket else None

    def receipt_after(self, ticket: int) -> bytes:
        """A receipt built after apply number ``ticket`` committed (call holding the
        replica's lock): the last one built for an upload, if it was built after, else a
        fresh one.

        A receipt lists every origin the centre holds (≈ 2 ms of CPU at 500 origins,
        benchmarks/ANALYSIS.md 1.2). In a flood, uploads queue for the replica; the
        receipt built for the first after the others' applies also proves theirs, so it
        is built once for them all. It never claims what is not durably held: it is
        built after those commits."""
        last = self.built_after(ticket)
        if last is not None:
            return last
        covers = self._applies
        data = self.replica.receipt().encode()
        self._last_receipt = (covers, data)
        return data

    def spooling(self, writer: SpoolWriter, applier: Applier, retry_after: int = 1) -> None:
        """Spool uploads from now on (``create_app(spool=...)``): ``retry_after`` is
        the Retry-After of a held answer (when to ask again)."""
        self.spool, self.applier = writer, applier
        self.spool_max_held = writer.settings.max_held
        self.spool_hold = writer.settings.hold
        self.spool_retry_after = retry_after
        applier.start()

    def close(self) -> None:
        """Stop the spool's threads (at shutdown); nothing else needs closing."""
        if self.applier is not None:
            self.applier.stop()
        if self.spool is not None:
            self.spool.close()

    async def receipt_since(self, seen: float) -> bytes:
        """A receipt whose build started after ``seen`` (``time.monotonic()``): it
        states every bundle that was committed by then, whichever process applied it
        (the spool's appliers). One built for another request is shared when it
        started late enough."""
        last = self._since_receipt
        if last is not None and last[0] >= seen:
            return last[1]

        def build() -> bytes:
            found = self._since_receipt
            if found is not None and found[0] >= seen:
                return found[1]  # built while this one waited for the lock
            started = time.monotonic()
            data = self.replica.receipt().encode()
            self._since_receipt = (started, data)
            return data

        return await self.locked(build)


class _Waiter:
    """A request queued for a slot; ``hand_over`` (from any thread) wakes it owning one."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()

    def hand_over(self) -> bool:
        """Wake the waiter owning a slot; False if its event loop is gone (shutdown)."""
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: nobody will take the slot
            return False
        return True

    def _wake(self) -> None:
        if not self.future.done():
            self.future.set_result(None)
