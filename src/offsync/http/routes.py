"""The server's routes: one small function per endpoint of ``openapi.ENDPOINTS``.

Each takes the app's ``ServerState`` and the request and returns a response; whatever
it refuses it raises as a ``Refusal`` (``offsync.http.refusals``), which the app answers
in one place. Blocking work (SQLite, hashing large uploads, packing, files) runs in
worker threads, never on the event loop.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..bundle import read_header
from ..errors import RemoteDataError, SignatureError, StorageError
from ..knowledge import Knowledge
from ..segment import hash32
from ..stores import pgspool
from ..stores.pgspool import Spooled
from .blobroutes import BLOB_ROUTES
from .bodies import (
    Body,
    ChallengeBody,
    ErrorBody,
    Health,
    ServerInfo,
    UploadProgress,
    UploadResult,
    UploadStatus,
    decode_pull_request,
)
from .frames import encode_frame, end_frame
from .openapi import openapi
from .ranges import ChunkRange, ContentRange, parse_content_range
from .refusals import (
    Refusal,
    bad_request,
    busy,
    id_mismatch,
    not_found,
    not_ready,
    refusal_for,
    too_large,
    unauthorized,
    unprocessable,
)
from .signing import SignedRequest, verify_request
from .state import ServerState
from .uploads import Append, Uploader
from .wire import BUNDLES_MEDIA_TYPE, H_MAX_UPLOAD, PROTOCOL, RECEIPT_MEDIA_TYPE, is_bundle_id

__all__ = ["ROUTES", "site_of"]

#: Answers that must never come from a cache (a proxy's stale copy is not the server).
NO_STORE = {"Cache-Control": "no-store"}
#: Pulls are packed into bundles of at least this size, whatever the client asks.
PULL_FLOOR_BYTES = 1024 * 1024


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _json(body: Body, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body.to_json(), status_code=status, headers=headers)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


#: Where a route leaves the key of the site a request is from, once it is verified, so
#: that the refusal of the request names it (``site_of``).
_SITE = "offsync.site"


def site_of(request: Request) -> bytes | None:
    """The verified site a request is from, if a route has learnt it."""
    site = request.scope.get(_SITE)
    return site if isinstance(site, bytes) else None


def _bundle_id(request: Request) -> str:
    bundle_id: str = request.path_params["id"]
    if not is_bundle_id(bundle_id):
        raise bad_request("bundle id must be 64 lowercase hex digits")
    return bundle_id


# -- what the server is ----------------------------------------------------------------


async def info(state: ServerState, request: Request) -> Response:
    return _json(
        ServerInfo(
            protocol=PROTOCOL,
            replica=state.replica.id.hex(),
            label=state.replica.identity.label,
            max_upload_bytes=state.max_upload_bytes,
            max_pull_bundle_bytes=state.max_pull_bundle_bytes,
            replay_window_seconds=state.challenges.lifetime_ms / 1000,
        )
    )


async def challenge(state: ServerState, request: Request) -> Response:
    value = state.challenges.issue(_now_ms())
    body = ChallengeBody(
        challenge=value.hex(), lifetime_seconds=state.challenges.lifetime_ms / 1000
    )
    return _json(body, headers=NO_STORE)


async def knowledge(state: ServerState, request: Request) -> Response:
    receipt = await state.locked(state.receipt)
    return Response(
        receipt,
        media_type=RECEIPT_MEDIA_TYPE,
        headers={**NO_STORE, H_MAX_UPLOAD: str(state.max_upload_bytes)},
    )


async def spec(state: ServerState, request: Request) -> Response:
    return JSONResponse(openapi())


# -- health and metrics ----------------------------------------------------------------


async def healthz(state: ServerState, request: Request) -> Response:
    """Alive: the process answers. Touches no store, takes no slot."""
    return _json(Health(status="alive"), headers=NO_STORE)


async def readyz(state: ServerState, request: Request) -> Response:
    """Ready: the store answers a short query on a connection of its own (no slot, no
    wait for the replica, which may be busy applying a large bundle)."""
    try:
        await anyio.to_thread.run_sync(state.replica.probe)
    except StorageError as exc:
        state.observe.not_ready(exc)
        raise not_ready() from exc
    return _json(Health(status="ready"), headers=NO_STORE)


async def metrics(state: ServerState, request: Request) -> Response:
    collected = state.observe.metrics
    if collected is None:
        raise not_found(
            "metrics are off: start the server with --metrics (create_app(metrics=True)), "
            "with the metrics extra installed"
        )
    body, media = await anyio.to_thread.run_sync(collected.render)
    return Response(body, headers={**NO_STORE, "Content-Type": media})


# -- uploads ---------------------------------------------------------------------------


async def upload_status(state: ServerState, request: Request) -> Response:
    bundle_id = _bundle_id(request)
    if state.spool is not None:
        found, _ = await state.spool.lookup(bytes.fromhex(bundle_id))
        if found is not None:  # whole and spooled: a commit (bytes */TOTAL) says the rest
            return _json(UploadStatus(id=bundle_id, received=None, complete=True))
    return _json(await anyio.to_thread.run_sync(state.uploads.status, bundle_id))


async def upload(state: ServerState, request: Request) -> Response:
    """A whole bundle, or one ``Content-Range`` chunk of it; idempotent by id."""
    bundle_id = _bundle_id(request)
    if state.spool is not None:
        return await _spooled_upload(state, request, bundle_id)
    if bundle_id in state.done:
        return await _duplicate(state, bundle_id)
    async with state.slot(), state.upload_lock(bundle_id):
        if bundle_id in state.done:  # a concurrent upload of it just finished
            return await _duplicate(state, bundle_id)
        length = _content_length(request)
        return await _receive(state, request, bundle_id, _content_range(state, request), length)


def _content_range(state: ServerState, request: Request) -> ContentRange | None:
    """The upload's ``Content-Range`` within the upload size limit; None: a whole body."""
    header = request.headers.get("content-range")
    if header is None:
        return None
    rng = parse_content_range(header)
    if rng is None:
        raise bad_request("Content-Range must be 'bytes FIRST-LAST/TOTAL' or 'bytes */TOTAL'")
    state.uploads.check_size(rng.total)
    return rng


async def _receive(
    state: ServerState,
    request: Request,
    bundle_id: str,
    rng: ContentRange | None,
    length: int | None,
) -> Response:
    """A whole body, or one range of it. Other workers may serve chunks of this upload
    from the same upload_dir: the offset check, the append and the apply happen holding
    its lock file."""
    if rng is None:
        return await _whole(state, request, bundle_id, length)
    held = await anyio.to_thread.run_sync(state.uploads.lock, bundle_id)
    if held is None:
        raise busy()
    try:
        return await _chunk(state, request, bundle_id, rng, length)
    finally:
        await anyio.to_thread.run_sync(state.uploads.unlock, bundle_id, held)


async def _spooled_upload(state: ServerState, request: Request, bundle_id: str) -> Response:
    """An upload to a spooling server: held durably and answered 202 at once, applied
    by the spool's appliers in group commits; asked again, the answer says what became
    of it (``offsync.http.spool``, docs/scale.md)."""
    spool, applier = state.spool, state.applier
    assert spool is not None and applier is not None
    rng = _content_range(state, request)
    if rng is not None and not isinstance(rng, ChunkRange):
        # A commit asks what became of a bundle: the spool knows, if it holds it.
        found, seen = await spool.lookup(bytes.fromhex(bundle_id))
        if found is not None:
            return await _spool_answer(state, bundle_id, found, seen, rng.total)
    if applier.held >= state.spool_max_held:
        raise busy()  # the appliers are this far behind: truly saturated
    async with state.upload_lock(bundle_id):
        return await _receive(state, request, bundle_id, rng, _content_length(request))


async def _spool_answer(
    state: ServerState,
    bundle_id: str,
    found: Spooled,
    seen: float,
    total: int,
    uploader: Uploader | None = None,
) -> Response:
    """What the spool says of an upload, as the answer to it. A held bundle is waited
    for (``hold`` seconds): in a flood the appliers usually get to it by then, and the
    upload is answered once, applied, instead of asked after again. ``uploader``: the
    bundle's sender and ranges when its bytes came with this request (its receipt is
    then bounded by them; a commit asking after a held bundle has no bytes, and the
    spool keeps none once applied, so that answer states everything)."""
    assert state.spool is not None
    fresh = found.new
    if found.state == pgspool.HELD and state.spool_hold > 0:
        found, seen = await state.spool.wait(bytes.fromhex(bundle_id), state.spool_hold)
    if found.state == pgspool.APPLIED:
        # Seen applied by a query that had returned at ``seen``: any receipt whose
        # build started after that states it. Requests answered by the same query
        # share one.
        if uploader is not None:  # built now: after ``seen``, so it states the bundle
            receipt = await state.locked(lambda: state.receipt_for_uploader(uploader))
        else:
            receipt = await state.receipt_since(seen)
        if not fresh:
            state.observe.duplicate(bundle_id)
        status: Literal["applied", "duplicate"] = "applied" if fresh else "duplicate"
        return _json(UploadResult(status=status, id=bundle_id, receipt=_b64(receipt)))
    if found.state == pgspool.REFUSED:
        raise Refusal(
            found.status or 422,
            ErrorBody(error=found.error or "RemoteDataError", reason=found.reason or "refused"),
        )
    held = UploadProgress(status="held", id=bundle_id, received=total, total=total)
    return _json(held, status=202, headers={"Retry-After": str(state.spool_retry_after)})


async def _duplicate(state: ServerState, bundle_id: str) -> Response:
    # Remembered as done after its apply committed: a receipt built now covers it,
    # bounded by its uploader as the first answer was (never every origin held).
    uploader = state.done.get(bundle_id)
    if uploader is not None:
        receipt = await state.locked(lambda: state.receipt_for_uploader(uploader))
    else:
        receipt = await state.receipt_for(state.applies)
    state.observe.duplicate(bundle_id)
    return _json(UploadResult(status="duplicate", id=bundle_id, receipt=_b64(receipt)))


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise bad_request("bad Content-Length")
    return int(value)


async def _whole(
    state: ServerState, request: Request, bundle_id: str, length: int | None
) -> Response:
    """An upload in one body (no ``Content-Range``), held in memory."""
    if length is not None:
        state.uploads.check_size(length)
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            state.observe.received(len(chunk))
            state.uploads.check_size(len(data))
    except ClientDisconnect:
        state.observe.disconnected(bundle_id)
        return Response(status_code=400)  # nobody is listening
    return await _finish(state, bundle_id, bytes(data), None)


async def _chunk(
    state: ServerState, request: Request, bundle_id: str, rng: ContentRange, length: int | None
) -> Response:
    """A ``Content-Range`` request, holding the id's lock file."""
    step = await anyio.to_thread.run_sync(state.uploads.plan, bundle_id, rng, length)
    if isinstance(step, Append):
        received = await _append(state, request, step)
        if received is None:
            state.observe.disconnected(bundle_id)
            return Response(status_code=400)  # the client went away; what came is kept
    else:  # "bytes */TOTAL": apply what is held (an earlier last chunk met a 503)
        received = step.received
    state.observe.chunk(bundle_id, received, rng.total)
    if received < rng.total:
        progress = UploadProgress(id=bundle_id, received=received, total=rng.total)
        return _json(progress, status=202)
    whole = await anyio.to_thread.run_sync(step.path.read_bytes)
    try:
        return await _finish(state, bundle_id, whole, step.path)
    except Refusal as refusal:
        if refusal.final:  # refused bytes are dropped; a busy or full server keeps them
            await anyio.to_thread.run_sync(lambda: step.path.unlink(missing_ok=True))
        raise


async def _append(state: ServerState, request: Request, step: Append) -> int | None:
    """Append the body to the partial file; the new size, or None on a disconnect."""
    appender = await anyio.to_thread.run_sync(state.uploads.appender, step)
    gone = False
    try:
        try:
            async for chunk in request.stream():
                state.observe.received(len(chunk))
                if appender.take(chunk):
                    await anyio.to_thread.run_sync(appender.flush)
        except ClientDisconnect:
            gone = True  # whatever arrived is kept: a broken connection resumes there
    finally:
        size = await anyio.to_thread.run_sync(appender.close)
    return None if gone else size


#: Bodies up to this size are hashed on the event loop (blake2b: ≈ 0.2 ms at 256 KiB),
#: larger ones in a worker thread, so that the loop never stalls for long.
INLINE_HASH_BYTES = 256 * 1024


async def _finish(
    state: ServerState, bundle_id: str, data: bytes, partial: Path | None
) -> Response:
    """Every byte is here: check the id, apply, answer with a receipt built after the
    bundle's commit (``ServerState.receipt_after``: one built for a later apply serves)."""
    if len(data) <= INLINE_HASH_BYTES:  # well under a millisecond: not worth a thread hop
        digest = hash32(data)
    else:
        digest = await anyio.to_thread.run_sync(hash32, data)
    if digest.hex() != bundle_id:
        raise id_mismatch()
    if state.spool is not None:
        # The bundle's own signature, before it is held: junk and forgeries are refused
        # now and never take spool space (what a bundle carries is checked when it is
        # applied, and a refusal then is the answer to asking again).
        limits = state.replica.limits
        try:
            if len(data) <= INLINE_HASH_BYTES:
                read = read_header(data, limits)
            else:
                read = await anyio.to_thread.run_sync(read_header, data, limits)
        except RemoteDataError as exc:
            raise refusal_for(exc) or unprocessable(exc) from exc
        found, seen = await state.spool.put(digest, data)
        if partial is not None:  # held in the spool now, durably
            await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
        uploader = (read[0].sender, read[0].ranges)
        return await _spool_answer(state, bundle_id, found, seen, len(data), uploader)
    body, ticket, receipt, uploader = await state.locked(lambda: _apply(state, data))
    state.remember_done(bundle_id, uploader)  # a retry, should the receipt fail, is a duplicate
    if partial is not None:
        await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
    if receipt is None:
        receipt = await state.receipt_for(ticket)
    return _json(dataclasses.replace(body, receipt=_b64(receipt)))


def _apply(state: ServerState, data: bytes) -> tuple[UploadResult, int, bytes | None, Uploader]:
    """Apply (holding the replica's lock); the answer without its receipt yet, the
    ticket ``receipt_after`` takes, the receipt if it was built now
    (``ServerState.receipt_now``), and who sent what (for a duplicate's answer)."""
    replica = state.replica
    started = time.perf_counter()
    try:
        report = replica.apply(data)
    except (RemoteDataError, StorageError) as exc:
        # A full disk keeps what was received for a retry; so does a store that failed.
        raise refusal_for(exc) or exc from exc
    state.observe.applied(report, len(data), time.perf_counter() - started)
    result = UploadResult(
        status="applied",
        id=report.bundle_id.hex(),
        sender=report.sender.hex(),
        applied=report.applied,
        duplicates=report.duplicates,
        quarantined=report.quarantined,
        conflicts=len(report.conflicts),
        receipt="",
    )
    ticket = state.applied()
    # Bounded by the uploader's needs (docs/spec.md §6): its origin, what the bundle
    # carried, what its receipts said it holds; never every origin the centre holds.
    uploader = (report.sender, report.ranges)
    return result, ticket, state.receipt_for_uploader(uploader), uploader


# -- pulls -----------------------------------------------------------------------------


async def pull(state: ServerState, request: Request) -> Response:
    """A signed request with the site's knowledge: the bundles it lacks, as frames."""
    body = await _pull_body(state, request)
    # The challenge's MAC and age, then the signature, then the body: nothing is
    # recorded for a request that fails any of them, so junk costs no memory.
    try:
        signed = verify_request(
            request.headers,
            server=state.replica.id,
            endpoint="pull",
            body=body,
            challenges=state.challenges,
            now_ms=_now_ms(),
        )
        since, max_bytes, encrypt = decode_pull_request(body, state.replica.limits)
    except SignatureError as exc:
        raise unauthorized(str(exc)) from exc
    except RemoteDataError as exc:
        raise unprocessable(exc) from exc
    request.scope[_SITE] = signed.site
    await state.acquire()
    # A preference: never below the floor, since one segment may approach 256 KiB.
    max_bytes = max(min(max_bytes, state.max_pull_bundle_bytes), PULL_FLOOR_BYTES)
    try:
        packer, first = await state.locked(
            lambda: _start_pull(state, signed, since, max_bytes, encrypt)
        )
    except BaseException:
        state.release()
        raise
    state.observe.contact(signed.site)
    return _SlotResponse(_frames(state, signed.site, first, packer), state.release)


async def _pull_body(state: ServerState, request: Request) -> bytes:
    limit = state.replica.limits.max_header_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large("pull request too large")
    return bytes(body)


def _start_pull(
    state: ServerState, signed: SignedRequest, since: Knowledge, max_bytes: int, encrypt: bool
) -> tuple[Iterator[bytes], bytes | None]:
    """Spend the challenge, then start packing (holding the replica's lock)."""
    replica = state.replica
    # Only now, authenticated and about to be served, is the challenge spent: in the
    # store, so one captured request is served once by all workers on it.
    if not replica.record_nonce(signed.challenge, signed.forget_after, _now_ms()):
        raise unauthorized("replayed request (challenge already used)")
    site = signed.site
    readable = state.readable
    # What the site may not read is treated as if it held it already (``readable``); its
    # answer's receipts are bounded by what it stated it holds.
    packer = replica.iter_pack(
        since,
        max_bytes=max_bytes,
        recipient=site if encrypt else None,
        always=True,
        receiver=site,
        stated=since,
        readable=None if readable is None else lambda origin: readable(site, origin),
    )
    return packer, next(packer, None)


async def _frames(
    state: ServerState, site: bytes, first: bytes | None, packer: Iterator[bytes]
) -> AsyncIterator[bytes]:
    sent = count = 0
    bundle = first
    try:
        while bundle is not None:
            yield encode_frame(bundle)
            sent += len(bundle)
            count += 1
            state.observe.sent(len(bundle))
            if sent >= state.max_pull_response_bytes:
                yield end_frame(more=True)
                state.observe.pulled(site, count, sent, complete=False)
                return
            bundle = await anyio.to_thread.run_sync(next, packer, None)
        yield end_frame(more=False)
        state.observe.pulled(site, count, sent, complete=True)
    except Exception as exc:
        state.observe.pull_broken(site, exc)
        raise
    finally:
        close = getattr(packer, "close", None)  # iter_pack is a generator
        if close is not None:
            close()


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


#: The route of each endpoint, by its name in ``openapi.ENDPOINTS``.
ROUTES: dict[str, Callable[[ServerState, Request], Awaitable[Response]]] = {
    "info": info,
    "knowledge": knowledge,
    "challenge": challenge,
    "spec": spec,
    "healthz": healthz,
    "readyz": readyz,
    "metrics": metrics,
    "upload_status": upload_status,
    "upload": upload,
    "pull": pull,
    **BLOB_ROUTES,
}
