"""The HTTP face of a replica: an ASGI app built on Starlette.

``create_app(replica, ...)`` returns an app that an integrator mounts in a Starlette or
FastAPI application (``Mount("/offsync", app=create_app(rep))``) or runs with uvicorn.
Endpoints (docs/http.md has the details; ``GET /openapi.json`` describes them):

* ``GET /``                 what this server is (key, limits).
* ``GET /knowledge``        the replica's fresh receipt: its signed knowledge.
* ``GET /challenge``        a fresh single-use challenge for a signed request.
* ``PUT /bundles/{id}``     upload a bundle, whole or in ``Content-Range`` chunks that
                            survive a broken connection or a restart; applied once the
                            bytes hash to ``id``; answers with a fresh receipt.
* ``GET /bundles/{id}``     how much of an upload the server holds, to resume it.
* ``POST /pull``            a signed request with the site's knowledge; answers with a
                            stream of bundles (4-byte length frames) the site lacks.

Signed requests answer a challenge the server issued (``offsync.httpwire``): replay
protection needs no clock of the site's, and a challenge is recorded as used in the
replica's store, once the signature verified, so all workers on one store accept it once.
A store that reports its disk full (``StorageFullError``) is answered 507, not 503: an
operator must act before retrying helps.

Blocking work (SQLite, hashing large uploads, packing) runs in worker threads, never on
the event loop. Uploads, applies and pulls share ``max_in_flight`` slots; a request that
finds none, or a replica busy beyond ``busy_timeout``, gets 503 with Retry-After.

Several processes (uvicorn workers) may share one ``upload_dir``: a chunk is checked
and appended holding an exclusive ``flock`` on ``<id>.lock`` there, so a resumed
upload may land on any worker (POSIX only; on Windows give each process its own).
"""

from __future__ import annotations

import base64
import os
import re
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

try:
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offsync.server needs Starlette: install the http extra (pip install 'offsync[http]')"
    ) from exc

from .errors import RemoteDataError, SignatureError, StorageError, StorageFullError
from .httpwire import (
    BUNDLES_MEDIA_TYPE,
    CHALLENGE_BYTES,
    END_OF_STREAM,
    MORE_AVAILABLE,
    PROTOCOL,
    RECEIPT_MEDIA_TYPE,
    Challenges,
    challenge_key,
    decode_pull_request,
    verify_request,
)
from .knowledge import Knowledge
from .replica import ApplyReport, Replica
from .segment import hash32

if sys.platform != "win32":
    import fcntl

__all__ = ["Readable", "ServerState", "create_app", "openapi"]

# Used with fullmatch, and [0-9] rather than \d (which takes any Unicode digit): the
# OpenAPI document states these patterns, and the server accepts exactly what they match.
_ID = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")
_COMMIT = re.compile(r"bytes \*/([0-9]+)")
CONTENT_RANGE_PATTERN = "^bytes ([0-9]+-[0-9]+|\\*)/[0-9]+$"
#: Answers that must never come from a cache (a proxy's stale copy is not the server).
_NO_STORE = {"Cache-Control": "no-store"}
_WRITE_BUFFER = 1024 * 1024
#: Pulls are packed into bundles of at least this size, whatever the client asks.
PULL_FLOOR_BYTES = 1024 * 1024

#: Decides what a pulling site may read: ``readable(site_key, origin_key)``. Segments are
#: signed per origin and forwarded byte for byte, so an origin's changes are the unit.
Readable = Callable[[bytes, bytes], bool]


class _Busy(Exception):
    """No slot, or the replica stayed locked past ``busy_timeout``: answer 503."""


class _Refusal(Exception):
    """A request the server refuses, with the HTTP status and the JSON body's words."""

    def __init__(self, status: int, error: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.extra = status, error, reason, extra


class ServerState:
    """What one app holds between requests; ``app.state.offsync`` for integrators."""

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
    ) -> None:
        self.replica = replica
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
        self.in_flight = 0
        self.refused_busy = 0  # 503 answers given, for tests and monitoring
        self.upload_locks: dict[str, tuple[anyio.Lock, int]] = {}
        self.done: OrderedDict[str, None] = OrderedDict()  # recently applied bundle ids
        self._counter_lock = threading.Lock()

    # -- bounded in-flight work --------------------------------------------------------

    def try_acquire(self) -> bool:
        with self._counter_lock:
            if self.in_flight >= self.max_in_flight:
                self.refused_busy += 1
                return False
            self.in_flight += 1
            return True

    def release(self) -> None:
        with self._counter_lock:
            self.in_flight -= 1

    def run_locked(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` (in a worker thread) holding the replica's lock, or raise _Busy."""
        lock = self.replica.lock
        if not lock.acquire(timeout=self.busy_timeout):
            with self._counter_lock:
                self.refused_busy += 1
            raise _Busy
        try:
            return fn()
        finally:
            lock.release()

    def remember_done(self, bundle_id: str) -> None:
        self.done[bundle_id] = None
        self.done.move_to_end(bundle_id)
        while len(self.done) > 10_000:
            self.done.popitem(last=False)

    # -- partial uploads ---------------------------------------------------------------

    def partial_path(self, bundle_id: str, total: int) -> Path:
        return self.upload_dir / f"{bundle_id}-{total}.part"

    def find_partial(self, bundle_id: str) -> tuple[Path, int, int] | None:
        """The partial upload of ``bundle_id``: its file, declared total and size so far."""
        for path in self.upload_dir.glob(f"{bundle_id}-*.part"):
            try:
                return path, int(path.name[65:-5]), path.stat().st_size
            except (ValueError, OSError):
                continue
        return None

    def room_for_partial(self) -> bool:
        """Drop partial uploads untouched for ``partial_ttl``, and make room for one more.

        Partial uploads are anonymous (a bundle is authenticated only once whole), so at
        ``max_partial_uploads`` the one untouched longest gives way (its uploader starts
        it again) rather than the newcomer being refused: uploads abandoned by the
        thousand cannot hold every slot for a week. False only if every slot is being
        written to at this moment.
        """
        now = time.time()
        live: list[tuple[float, Path]] = []
        for path in self.upload_dir.glob("*.part"):
            try:
                touched = path.stat().st_mtime
                if now - touched > self.partial_ttl:
                    path.unlink()
                else:
                    live.append((touched, path))
            except OSError:
                continue
        for path in self.upload_dir.glob("*.lock"):  # left by uploads never finished
            try:
                if now - path.stat().st_mtime > self.partial_ttl:
                    held = _lock_file(path, timeout=0)
                    if held is not None:
                        _unlock_file(held, path, remove=True)
            except OSError:
                continue
        excess = len(live) + 1 - self.max_partial_uploads
        for _, path in sorted(live):
            if excess <= 0:
                break
            lock = self.upload_dir / f"{path.name[:64]}.lock"
            held = _lock_file(lock, timeout=0)
            if held is None:
                continue  # a chunk of it is arriving now
            try:
                path.unlink(missing_ok=True)
                excess -= 1
            finally:
                _unlock_file(held, lock, remove=True)
        return excess <= 0

    def lock_upload(self, bundle_id: str) -> int | None:
        """Hold the upload of ``bundle_id`` against every process sharing ``upload_dir``;
        the lock's file descriptor, or None if another held it past ``busy_timeout``."""
        return _lock_file(self.upload_dir / f"{bundle_id}.lock", self.busy_timeout)

    def unlock_upload(self, bundle_id: str, held: int) -> None:
        """Release; the lock file goes too once no partial upload of the id is left."""
        path = self.upload_dir / f"{bundle_id}.lock"
        _unlock_file(held, path, remove=self.find_partial(bundle_id) is None)


def _lock_file(path: Path, timeout: float) -> int | None:
    """An exclusive ``flock`` on ``path`` (created if need be), or None after ``timeout``.

    A holder may remove the file when done (``_unlock_file``), so a lock taken on a file
    that is no longer at ``path`` is let go and taken again on the new one.
    """
    if sys.platform == "win32":  # pragma: no cover - one process per upload_dir there
        return -1
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
            continue
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)


def _unlock_file(fd: int, path: Path, *, remove: bool) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    try:
        if remove:
            path.unlink(missing_ok=True)  # still held: nobody locks the old file after this
    finally:
        os.close(fd)  # releases the flock


def _flush(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _json_error(status: int, error: str, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, **extra}, status_code=status)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _storage_full(exc: StorageFullError) -> JSONResponse:
    return _json_error(
        507,
        "StorageFullError",
        f"the server's storage is full or failing, nothing was stored: {exc}; "
        "its operator must free space before this can succeed",
    )


def _unsigned(reason: str) -> JSONResponse:
    return JSONResponse(
        {"error": "SignatureError", "reason": reason},
        status_code=401,
        headers={"WWW-Authenticate": "Offsync-Signature"},
    )


def _busy(state: ServerState) -> JSONResponse:
    return JSONResponse(
        {"error": "Busy", "reason": "server saturated, retry later"},
        status_code=503,
        headers={"Retry-After": str(state.retry_after)},
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _report_json(report: ApplyReport, receipt: bytes) -> dict[str, Any]:
    return {
        "status": "applied",
        "id": report.bundle_id.hex(),
        "sender": report.sender.hex(),
        "applied": report.applied,
        "duplicates": report.duplicates,
        "quarantined": report.quarantined,
        "conflicts": len(report.conflicts),
        "receipt": _b64(receipt),
    }


class _SlotResponse(StreamingResponse):
    """A streaming response that gives its in-flight slot back however the stream ends."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content, media_type=BUNDLES_MEDIA_TYPE)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def create_app(
    replica: Replica,
    *,
    upload_dir: str | os.PathLike[str] | None = None,
    max_upload_bytes: int | None = None,
    max_pull_bundle_bytes: int = 16 * 1024 * 1024,
    max_pull_response_bytes: int = 256 * 1024 * 1024,
    max_in_flight: int = 8,
    busy_timeout: float = 10.0,
    retry_after: int = 2,
    replay_window: float = 300.0,
    readable: Readable | None = None,
    max_partial_uploads: int = 1000,
    partial_ttl: float = 7 * 24 * 3600,
) -> Starlette:
    """An ASGI app serving ``replica``.

    ``upload_dir`` keeps partial chunked uploads (keyed by bundle id) so they resume after
    a broken connection or a restart; without it a temporary directory is used, which
    survives broken connections but not restarts. ``max_upload_bytes`` bounds one bundle
    (default: the replica's ``limits.max_bundle_bytes``). ``max_in_flight`` bounds the
    uploads, applies and pulls running at once; beyond it, and when the replica stays
    locked longer than ``busy_timeout`` seconds, the answer is 503 with ``Retry-After:
    retry_after``. A pull must be signed over a challenge issued at most ``replay_window``
    seconds before (by the server's clock; each challenge is accepted once).
    ``readable(site_key, origin_key)`` restricts what a site may pull (default:
    everything the server holds). At most ``max_partial_uploads`` partial uploads are
    kept (beyond, the one untouched longest gives way); one untouched for ``partial_ttl``
    seconds is dropped.
    """
    if upload_dir is None:
        upload_path = Path(tempfile.mkdtemp(prefix="offsync-uploads-"))
    else:
        upload_path = Path(upload_dir)
        upload_path.mkdir(parents=True, exist_ok=True)
    state = ServerState(
        replica,
        upload_dir=upload_path,
        max_upload_bytes=max_upload_bytes or replica.limits.max_bundle_bytes,
        max_pull_bundle_bytes=max_pull_bundle_bytes,
        max_pull_response_bytes=max_pull_response_bytes,
        max_in_flight=max_in_flight,
        busy_timeout=busy_timeout,
        retry_after=retry_after,
        replay_window=replay_window,
        readable=readable,
        max_partial_uploads=max_partial_uploads,
        partial_ttl=partial_ttl,
    )

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "protocol": PROTOCOL,
                "replica": replica.id.hex(),
                "label": replica.identity.label,
                "max_upload_bytes": state.max_upload_bytes,
                "max_pull_bundle_bytes": state.max_pull_bundle_bytes,
                "replay_window_seconds": state.challenges.lifetime_ms / 1000,
            }
        )

    async def challenge(request: Request) -> Response:
        value = state.challenges.issue(_now_ms())
        return JSONResponse(
            {
                "challenge": value.hex(),
                "lifetime_seconds": state.challenges.lifetime_ms / 1000,
            },
            headers=_NO_STORE,
        )

    async def knowledge(request: Request) -> Response:
        try:
            receipt = await anyio.to_thread.run_sync(
                state.run_locked, lambda: replica.receipt().encode()
            )
        except _Busy:
            return _busy(state)
        return Response(
            receipt,
            media_type=RECEIPT_MEDIA_TYPE,
            headers={**_NO_STORE, "Offsync-Max-Upload-Bytes": str(state.max_upload_bytes)},
        )

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi())

    async def bundles(request: Request) -> Response:
        """``/bundles/{id}``: one route for both methods, so a 405 names both in Allow."""
        if request.method == "PUT":
            return await upload(request)
        return await upload_status(request)

    async def upload_status(request: Request) -> Response:
        bundle_id = request.path_params["id"]
        if not _ID.fullmatch(bundle_id):
            return _json_error(400, "BadRequest", "bundle id must be 64 lowercase hex digits")
        if bundle_id in state.done:
            return JSONResponse({"id": bundle_id, "received": None, "complete": True})
        found = await anyio.to_thread.run_sync(state.find_partial, bundle_id)
        if found is None:
            return JSONResponse({"id": bundle_id, "received": 0, "complete": False})
        _, total, size = found
        return JSONResponse({"id": bundle_id, "received": size, "total": total, "complete": False})

    async def upload(request: Request) -> Response:
        bundle_id = request.path_params["id"]
        if not _ID.fullmatch(bundle_id):
            return _json_error(400, "BadRequest", "bundle id must be 64 lowercase hex digits")
        if bundle_id in state.done:
            return await _duplicate(bundle_id)
        if not state.try_acquire():
            return _busy(state)
        try:
            lock, users = state.upload_locks.get(bundle_id, (anyio.Lock(), 0))
            state.upload_locks[bundle_id] = (lock, users + 1)
            try:
                async with lock:
                    if bundle_id in state.done:  # a concurrent upload of it just finished
                        return await _duplicate(bundle_id)
                    return await _upload(request, bundle_id)
            finally:
                lock, users = state.upload_locks[bundle_id]
                if users == 1:
                    del state.upload_locks[bundle_id]
                else:
                    state.upload_locks[bundle_id] = (lock, users - 1)
        except _Refusal as r:
            return _json_error(r.status, r.error, r.reason, **r.extra)
        except _Busy:
            return _busy(state)
        finally:
            state.release()

    async def _duplicate(bundle_id: str) -> Response:
        try:
            receipt = await anyio.to_thread.run_sync(
                state.run_locked, lambda: replica.receipt().encode()
            )
        except _Busy:
            return _busy(state)
        return JSONResponse({"status": "duplicate", "id": bundle_id, "receipt": _b64(receipt)})

    def _declared_length(request: Request) -> int | None:
        value = request.headers.get("content-length")
        if value is None:
            return None
        if not value.isdigit():
            raise _Refusal(400, "BadRequest", "bad Content-Length")
        return int(value)

    def _too_large(size: int) -> _Refusal:
        return _Refusal(
            413,
            "LimitExceededError",
            f"bundle of {size} bytes over this server's limit of {state.max_upload_bytes}",
            limit=state.max_upload_bytes,
        )

    async def _upload(request: Request, bundle_id: str) -> Response:
        content_range = request.headers.get("content-range")
        length = _declared_length(request)
        if content_range is None:
            if length is not None and length > state.max_upload_bytes:
                raise _too_large(length)
            data = bytearray()
            try:
                async for chunk in request.stream():
                    data += chunk
                    if len(data) > state.max_upload_bytes:
                        raise _too_large(len(data))
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is listening
            return await _finish(bundle_id, bytes(data), None)
        m = _RANGE.fullmatch(content_range)
        commit = _COMMIT.fullmatch(content_range)
        if not m and not commit:
            raise _Refusal(
                400,
                "BadRequest",
                "Content-Range must be 'bytes FIRST-LAST/TOTAL' or 'bytes */TOTAL'",
            )
        if m:
            total = int(m.group(3))
        else:
            assert commit is not None
            total = int(commit.group(1))
        if total > state.max_upload_bytes:
            raise _too_large(total)
        # Other workers may serve chunks of this upload from the same upload_dir: the
        # offset check, the append and the apply happen holding its lock file.
        held_lock = await anyio.to_thread.run_sync(state.lock_upload, bundle_id)
        if held_lock is None:
            with state._counter_lock:
                state.refused_busy += 1
            raise _Busy
        try:
            return await _chunk(request, bundle_id, m, total, length)
        finally:
            await anyio.to_thread.run_sync(state.unlock_upload, bundle_id, held_lock)

    async def _chunk(
        request: Request, bundle_id: str, m: re.Match[str] | None, total: int, length: int | None
    ) -> Response:
        """A ``Content-Range`` upload, holding the id's lock file (see ``_upload``)."""
        found = await anyio.to_thread.run_sync(state.find_partial, bundle_id)
        if found is not None and found[1] != total:
            raise _Refusal(409, "Conflict", "an upload of this id with another total is held")
        if found is None:
            if m and not await anyio.to_thread.run_sync(state.room_for_partial):
                raise _Busy
            path, held = state.partial_path(bundle_id, total), 0
        else:
            path, _, held = found
        if m:
            first, last = int(m.group(1)), int(m.group(2))
            if not first <= last < total or (length is not None and length != last - first + 1):
                raise _Refusal(400, "BadRequest", "Content-Range does not fit the body or total")
            if first != held:
                raise _Refusal(
                    409,
                    "Conflict",
                    f"chunk starts at {first} but the server holds {held} bytes: resume there",
                    received=held,
                )
            received = await _receive_chunk(request, path, last - first + 1)
            if received is None:
                return Response(status_code=400)  # the client went away; what came is kept
        else:  # "bytes */TOTAL": apply what is held (an earlier last chunk met a 503)
            received = held
        if received < total:
            return JSONResponse(
                {"status": "incomplete", "id": bundle_id, "received": received, "total": total},
                status_code=202,
            )
        whole = await anyio.to_thread.run_sync(path.read_bytes)
        try:
            return await _finish(bundle_id, whole, path)
        except _Refusal:
            await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
            raise

    async def _receive_chunk(request: Request, path: Path, expected: int) -> int | None:
        """Append the body to the partial file; the new size, or None on a disconnect."""
        fh = await anyio.to_thread.run_sync(lambda: open(path, "ab"))  # noqa: SIM115
        got, buffer, gone = 0, bytearray(), False
        try:
            try:
                async for chunk in request.stream():
                    if got + len(chunk) > expected:
                        chunk = chunk[: expected - got]  # the rest is not ours to keep
                        # (Content-Length mismatch; h11 refuses that anyway.)
                    got += len(chunk)
                    buffer += chunk
                    if len(buffer) >= _WRITE_BUFFER:
                        await anyio.to_thread.run_sync(fh.write, bytes(buffer))
                        buffer.clear()
            except ClientDisconnect:
                gone = True
            # Whatever arrived is kept, so a broken connection resumes where it broke.
            await anyio.to_thread.run_sync(fh.write, bytes(buffer))
            await anyio.to_thread.run_sync(_flush, fh)
        finally:
            size = fh.tell()
            await anyio.to_thread.run_sync(fh.close)
        return None if gone else size

    async def _finish(bundle_id: str, data: bytes, partial: Path | None) -> Response:
        digest = await anyio.to_thread.run_sync(hash32, data)
        if digest.hex() != bundle_id:
            raise _Refusal(
                422,
                "BundleIdMismatch",
                "the uploaded bytes do not hash to the bundle id (corrupted in transit?)",
            )

        def work() -> dict[str, Any]:
            try:
                report = replica.apply(data)
            except RemoteDataError as exc:
                raise _Refusal(422, type(exc).__name__, str(exc)) from exc
            except StorageFullError:
                raise  # 507 (the app's handler); what was received is kept for a retry
            except StorageError as exc:
                raise _Busy from exc
            return _report_json(report, replica.receipt().encode())

        body = await anyio.to_thread.run_sync(state.run_locked, work)
        state.remember_done(bundle_id)
        if partial is not None:
            await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
        return JSONResponse(body)

    async def pull(request: Request) -> Response:
        limit = state.replica.limits.max_header_bytes
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _json_error(413, "LimitExceededError", "pull request too large")
        # The challenge's MAC and age, then the signature, then the body: nothing is
        # recorded for a request that fails any of them, so junk costs no memory.
        try:
            signed = verify_request(
                request.headers,
                server=replica.id,
                endpoint="pull",
                body=bytes(body),
                challenges=state.challenges,
                now_ms=_now_ms(),
            )
            since, max_bytes, encrypt = decode_pull_request(bytes(body), replica.limits)
        except SignatureError as exc:
            return _unsigned(str(exc))
        except RemoteDataError as exc:
            return _json_error(422, type(exc).__name__, str(exc))
        if not state.try_acquire():
            return _busy(state)
        # A preference: never below the floor, since one segment may approach 256 KiB.
        max_bytes = max(min(max_bytes, state.max_pull_bundle_bytes), PULL_FLOOR_BYTES)
        site = signed.site
        recipient = site if encrypt else None

        def start() -> tuple[Iterator[bytes], bytes | None]:
            nonlocal since
            # Only now, authenticated and about to be served, is the challenge spent: in
            # the store, so one captured request is served once by all workers on it.
            if not replica.store.record_nonce(signed.challenge, signed.forget_after, _now_ms()):
                raise _Refusal(401, "SignatureError", "replayed request (challenge already used)")
            if state.readable is not None:
                # What the site may not read is treated as if it held it already.
                hidden = {
                    o: ivs
                    for o, ivs in replica.knowledge().intervals.items()
                    if not state.readable(site, o)
                }
                since = since | Knowledge(hidden)
            packer = replica.iter_pack(since, max_bytes=max_bytes, recipient=recipient, always=True)
            return packer, next(packer, None)

        try:
            packer, first = await anyio.to_thread.run_sync(state.run_locked, start)
        except _Busy:
            state.release()
            return _busy(state)
        except _Refusal as refusal:
            state.release()
            return _unsigned(refusal.reason)
        except BaseException:
            state.release()
            raise
        return _SlotResponse(_frames(first, packer), state.release)

    async def _frames(first: bytes | None, packer: Iterator[bytes]) -> AsyncIterator[bytes]:
        sent = 0
        bundle = first
        try:
            while bundle is not None:
                yield len(bundle).to_bytes(4, "big") + bundle
                sent += len(bundle)
                if sent >= state.max_pull_response_bytes:
                    yield MORE_AVAILABLE.to_bytes(4, "big")
                    return
                bundle = await anyio.to_thread.run_sync(lambda: next(packer, None))
            yield END_OF_STREAM.to_bytes(4, "big")
        finally:
            close = getattr(packer, "close", None)  # iter_pack is a generator
            if close is not None:
                close()

    async def storage_failed(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StorageFullError):
            return _storage_full(exc)
        return _busy(state)  # a store failure that may clear (docs/http.md)

    routes = [
        Route("/", info, methods=["GET"]),
        Route("/knowledge", knowledge, methods=["GET"]),
        Route("/challenge", challenge, methods=["GET"]),
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/bundles/{id}", bundles, methods=["GET", "PUT"]),
        Route("/pull", pull, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={StorageError: storage_failed})
    app.state.offsync = state
    return app


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description served at ``GET /openapi.json`` (and in docs/http.md)."""
    busy = {
        "description": "Saturated or the replica is busy; retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    bundle_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "BLAKE2b-256 of the bundle's bytes, 64 lowercase hex digits",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
    }
    full = _error_response(
        "The server's storage is full or failing: nothing was stored, and retrying will "
        "not help until its operator frees space"
    )
    signed = [
        {
            "name": name,
            "in": "header",
            "required": True,
            "description": description,
            "schema": {"type": "string", "pattern": f"^[0-9a-f]{{{2 * size}}}$"},
        }
        for name, size, description in (
            ("Offsync-Site", 32, "The requesting site's public key, hex"),
            ("Offsync-Challenge", CHALLENGE_BYTES, "A challenge from GET /challenge, hex"),
            ("Offsync-Signature", 64, "ed25519 signature over the request (docs/spec.md)"),
        )
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "offsync replica", "version": PROTOCOL},
        "paths": {
            "/": {
                "get": {
                    "summary": "What this server is: its replica key and limits",
                    "responses": {
                        "200": {
                            "description": "Server description",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Info"}
                                }
                            },
                        }
                    },
                }
            },
            "/knowledge": {
                "get": {
                    "summary": "A fresh receipt: the replica's signed knowledge",
                    "responses": {
                        "200": {
                            "description": "An encoded receipt (docs/spec.md)",
                            "headers": {
                                "Offsync-Max-Upload-Bytes": {
                                    "description": "The largest bundle this server accepts",
                                    "schema": {"type": "integer"},
                                }
                            },
                            "content": {RECEIPT_MEDIA_TYPE: {}},
                        },
                        "503": busy,
                    },
                }
            },
            "/challenge": {
                "get": {
                    "summary": "A fresh single-use challenge to sign a request over",
                    "responses": {
                        "200": {
                            "description": "A challenge, valid for lifetime_seconds",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Challenge"}
                                }
                            },
                        }
                    },
                }
            },
            "/bundles/{id}": {
                "get": {
                    "summary": "How much of an upload the server holds (to resume it)",
                    "parameters": [bundle_id],
                    "responses": {
                        "200": {
                            "description": "Upload status",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/UploadStatus"}
                                }
                            },
                        },
                        "400": _error_response("Malformed bundle id"),
                    },
                },
                "put": {
                    "summary": "Upload a bundle, whole or in Content-Range chunks",
                    "description": (
                        "Idempotent by id. Chunks must start where the server's partial "
                        "upload ends. Once all bytes are held and hash to the id, the bundle "
                        "is verified and applied."
                    ),
                    "parameters": [
                        bundle_id,
                        {
                            "name": "Content-Range",
                            "in": "header",
                            "required": False,
                            "description": (
                                "bytes FIRST-LAST/TOTAL for a chunk, or bytes */TOTAL (empty "
                                "body) to apply the TOTAL bytes the server holds"
                            ),
                            "schema": {"type": "string", "pattern": CONTENT_RANGE_PATTERN},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/octet-stream": {}},
                    },
                    "responses": {
                        "200": {
                            "description": "Applied now, or already applied (duplicate)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/UploadResult"}
                                }
                            },
                        },
                        "202": {
                            "description": "Chunk stored; more to come",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/UploadStatus"}
                                }
                            },
                        },
                        "400": _error_response("Malformed id, Content-Range or length"),
                        "409": _error_response(
                            "Chunk does not start where the server's copy ends (see received)"
                        ),
                        "413": _error_response("Bundle larger than the server accepts"),
                        "422": _error_response(
                            "Bundle refused: bytes do not hash to the id, or the bundle does "
                            "not verify (error names the offsync error class)"
                        ),
                        "503": busy,
                        "507": full,
                    },
                },
            },
            "/pull": {
                "post": {
                    "summary": "Bundles the signing site lacks",
                    "parameters": signed,
                    "requestBody": {
                        "required": True,
                        "description": (
                            "Canonical msgpack map {encrypt: bool, knowledge: <knowledge wire "
                            "form>, max_bytes: int >= 65536}"
                        ),
                        "content": {"application/x-msgpack": {}},
                    },
                    "responses": {
                        "200": {
                            "description": (
                                "Frames of u32 big-endian length + bundle; length 0 ends a "
                                "complete answer, 0xFFFFFFFF one cut short (pull again)"
                            ),
                            "content": {BUNDLES_MEDIA_TYPE: {}},
                        },
                        "401": _error_response(
                            "Unsigned, badly signed, or over a challenge that is not this "
                            "server's, has expired or was used already"
                        ),
                        "413": _error_response("Request body too large"),
                        "422": _error_response("Malformed request body"),
                        "503": busy,
                        "507": full,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": {"description": "OpenAPI 3.1 document"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "reason"],
                    "properties": {
                        "error": {"type": "string"},
                        "reason": {"type": "string"},
                        "received": {"type": "integer"},
                        "limit": {"type": "integer"},
                    },
                },
                "Info": {
                    "type": "object",
                    "properties": {
                        "protocol": {"type": "string"},
                        "replica": {"type": "string"},
                        "label": {"type": "string"},
                        "max_upload_bytes": {"type": "integer"},
                        "max_pull_bundle_bytes": {"type": "integer"},
                        "replay_window_seconds": {"type": "number"},
                    },
                },
                "Challenge": {
                    "type": "object",
                    "required": ["challenge", "lifetime_seconds"],
                    "properties": {
                        "challenge": {"type": "string", "pattern": "^([0-9a-f]{2})+$"},
                        "lifetime_seconds": {"type": "number"},
                    },
                },
                "UploadStatus": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": ["incomplete"]},
                        "received": {"type": ["integer", "null"]},
                        "total": {"type": "integer"},
                        "complete": {"type": "boolean"},
                    },
                },
                "UploadResult": {
                    "type": "object",
                    "required": ["status", "id", "receipt"],
                    "properties": {
                        "status": {"type": "string", "enum": ["applied", "duplicate"]},
                        "id": {"type": "string"},
                        "sender": {"type": "string"},
                        "applied": {"type": "integer"},
                        "duplicates": {"type": "integer"},
                        "quarantined": {"type": "integer"},
                        "conflicts": {"type": "integer"},
                        "receipt": {
                            "type": "string",
                            "description": "The server's fresh receipt, base64",
                        },
                    },
                },
            }
        },
    }
