"""What one server app holds between requests: its replica, limits, slots and uploads."""

from __future__ import annotations

import threading
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
from .uploads import Uploads

__all__ = ["Readable", "ServerState"]

T = TypeVar("T")

#: Decides what a pulling site may read: ``readable(site_key, origin_key)``. Segments are
#: signed per origin and forwarded byte for byte, so an origin's changes are the unit.
Readable = Callable[[bytes, bytes], bool]


class ServerState:
    """What one app holds between requests; ``app.state.offsync`` for integrators.

    ``refused_busy`` counts the 503 answers given and ``in_flight`` the uploads,
    applies and pulls running (for monitoring and tests); ``uploads`` holds the
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
        self.in_flight = 0
        self.refused_busy = 0  # 503 answers given, for tests and monitoring
        #: This process's uploads in progress: a lock per id, and how many wait on it.
        self.upload_locks: dict[str, tuple[anyio.Lock, int]] = {}
        self._counter_lock = threading.Lock()

    # -- bounded in-flight work --------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take one of the ``max_in_flight`` slots, if one is free."""
        with self._counter_lock:
            if self.in_flight >= self.max_in_flight:
                return False
            self.in_flight += 1
            self.observe.in_flight(self.in_flight)
            return True

    def release(self) -> None:
        with self._counter_lock:
            self.in_flight -= 1
            self.observe.in_flight(self.in_flight)

    def count_busy(self) -> None:
        with self._counter_lock:
            self.refused_busy += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block, or refuse as busy."""
        if not self.try_acquire():
            raise busy()
        try:
            yield
        finally:
            self.release()

    def run_locked(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` (in a worker thread) holding the replica's lock; busy after
        ``busy_timeout``."""
        lock = self.replica.lock
        if not lock.acquire(timeout=self.busy_timeout):
            raise busy()
        try:
            return fn()
        finally:
            lock.release()

    async def locked(self, fn: Callable[[], T]) -> T:
        """``run_locked`` in a worker thread, off the event loop."""
        return await anyio.to_thread.run_sync(self.run_locked, fn)

    def remember_done(self, bundle_id: str) -> None:
        self.uploads.remember(bundle_id)

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
        """The replica's fresh receipt, encoded (call holding its lock)."""
        return self.replica.receipt().encode()
