"""The server's routes: one small function per endpoint of ``openapi.ENDPOINTS``.

Each takes the app's ``ServerState`` and the request and returns a response; whatever
it refuses it raises as a ``Refusal`` (``offsync.http.refusals``), which the app answers
in one place. Blocking work (SQLite, hashing large uploads, packing, files) runs in
worker threads, never on the event loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..bundle import BundleHeader, peek_header, read_header
from ..errors import RemoteDataError, SignatureError, StorageError
from ..segment import hash32
from .answers import NO_STORE, b64, json_answer, now_ms
from .blobroutes import BLOB_ROUTES
from .bodies import ChallengeBody, Health, ServerInfo, UploadResult
from .frames import encode_frame, end_frame
from .openapi import openapi
from .pull import (
    GROUPS_MEDIA_TYPE,
    PullRequest,
    differing_groups,
    effective_knowledge,
    encode_groups,
)
from .receive import content_length, content_range, receive
from .refusals import (
    bad_request,
    not_found,
    not_ready,
    refusal_for,
    too_large,
    unauthorized,
    unprocessable,
)
from .signing import SignedRequest, verify_request
from .spoolroutes import spooled_status, spooled_upload
from .state import ServerState
from .told import Told
from .uploads import Uploader
from .wire import BUNDLES_MEDIA_TYPE, H_MAX_UPLOAD, PROTOCOL, RECEIPT_MEDIA_TYPE, is_bundle_id

__all__ = ["ROUTES", "site_of"]

#: Pulls are packed into bundles of at least this size, whatever the client asks.
PULL_FLOOR_BYTES = 1024 * 1024


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
    return json_answer(
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
    value = state.challenges.issue(now_ms())
    body = ChallengeBody(
        challenge=value.hex(), lifetime_seconds=state.challenges.lifetime_ms / 1000
    )
    return json_answer(body, headers=NO_STORE)


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
    return json_answer(Health(status="alive"), headers=NO_STORE)


async def readyz(state: ServerState, request: Request) -> Response:
    """Ready: the store answers a short query on a connection of its own (no slot, no
    wait for the replica, which may be busy applying a large bundle)."""
    try:
        await anyio.to_thread.run_sync(state.replica.probe)
    except StorageError as exc:
        state.observe.not_ready(exc)
        raise not_ready() from exc
    return json_answer(Health(status="ready"), headers=NO_STORE)


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
        spooled = await spooled_status(state, bundle_id)
        if spooled is not None:
            return spooled
    return json_answer(await anyio.to_thread.run_sync(state.uploads.status, bundle_id))


async def upload(state: ServerState, request: Request) -> Response:
    """A whole bundle, or one ``Content-Range`` chunk of it; idempotent by id. A
    spooling server holds it instead (``offsync.http.spoolroutes``)."""
    bundle_id = _bundle_id(request)
    if state.spool is not None:
        return await spooled_upload(state, request, bundle_id)
    if bundle_id in state.done:
        return await _duplicate(state, bundle_id)
    async with state.slot(), state.upload_lock(bundle_id):
        if bundle_id in state.done:  # a concurrent upload of it just finished
            return await _duplicate(state, bundle_id)
        length = content_length(request)
        return await receive(
            state, request, bundle_id, content_range(state, request), length, _finish
        )


async def _duplicate(state: ServerState, bundle_id: str) -> Response:
    # Remembered as done after its apply committed: a receipt built now covers it,
    # bounded by its uploader as the first answer was (never every origin held).
    uploader = state.done.get(bundle_id)
    if uploader is not None:
        receipt = await state.locked(lambda: state.receipt_for_uploader(uploader))
    else:
        receipt = await state.receipt_for(state.applies)
    state.observe.duplicate(bundle_id)
    return json_answer(UploadResult(status="duplicate", id=bundle_id, receipt=b64(receipt)))


async def _finish(
    state: ServerState, bundle_id: str, data: bytes, partial: Path | None
) -> Response:
    """Every byte is here and hashes to the id: apply, answer with a receipt built after
    the bundle's commit (``ServerState.receipt_after``: one built for a later apply
    serves)."""
    body, ticket, receipt, uploader = await state.locked(lambda: _apply(state, data))
    state.remember_done(bundle_id, uploader)  # a retry, should the receipt fail, is a duplicate
    if partial is not None:
        await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
    if receipt is None:
        receipt = await state.receipt_for(ticket)
    return json_answer(dataclasses.replace(body, receipt=b64(receipt)))


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
    """A signed request with the site's knowledge (or its group digests): the bundles
    it lacks, as frames; ``409`` with the groups whose digests differ (spec-v3 §15.2);
    the end frame alone when there is nothing new and its receipt is current (§15.3)."""
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
            now_ms=now_ms(),
        )
        asked = PullRequest.decode(body, state.replica.limits)
    except SignatureError as exc:
        raise unauthorized(str(exc)) from exc
    except RemoteDataError as exc:
        raise unprocessable(exc) from exc
    request.scope[_SITE] = signed.site
    await state.acquire()
    # A preference: never below the floor, since one segment may approach 256 KiB.
    max_bytes = max(min(asked.max_bytes, state.max_pull_bundle_bytes), PULL_FLOOR_BYTES)
    try:
        started = await state.locked(lambda: _start_pull(state, signed, asked, max_bytes))
    except BaseException:
        state.release()
        raise
    state.observe.contact(signed.site)
    if isinstance(started, bytes):
        state.release()
        state.observe.digests_differ(signed.site)
        return Response(started, status_code=409, media_type=GROUPS_MEDIA_TYPE)
    packer, first, told = started
    return _SlotResponse(_frames(state, signed.site, first, packer, told), state.release)


async def _pull_body(state: ServerState, request: Request) -> bytes:
    limit = state.replica.limits.max_header_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large("pull request too large")
    return bytes(body)


def _start_pull(
    state: ServerState, signed: SignedRequest, asked: PullRequest, max_bytes: int
) -> bytes | tuple[Iterator[bytes], bytes | None, Told]:
    """Spend the challenge, then settle the digests (the ``409`` body if some groups
    differ) or start packing (holding the replica's lock)."""
    replica = state.replica
    # Only now, authenticated and about to be served, is the challenge spent: in the
    # store, so one captured request is served once by all workers on it.
    if not replica.record_nonce(signed.challenge, signed.forget_after, now_ms()):
        raise unauthorized("replayed request (challenge already used)")
    site = signed.site
    readable = state.readable
    held = replica.knowledge()
    mine = held
    if readable is not None:
        mine = held.restrict_origins(o for o in held.origins() if readable(site, o))
    groups = differing_groups(asked, mine)
    if groups:
        return encode_groups(groups)
    since = effective_knowledge(asked, mine)
    # Nothing new and the site's receipt of us still the whole truth: no bundle at all.
    # The site holds our last receipt and we hold the same of its streams: the replica
    # decides (``quiet``) whether it has anything to send or new to say (receipts to
    # pass on, from the centre, say); else a bundle goes, with a fresh receipt.
    quiet = state.told.still_true(site, asked.receipt_known, asked.relays_for, held)
    origins = state.told.origins(site, asked.relays_for)
    told = Told(b"", origins, held.restrict_origins(origins))
    # What the site may not read is treated as if it held it already (``readable``); its
    # answer's receipts are bounded by what it stated it holds.
    packer = replica.iter_pack(
        since,
        max_bytes=max_bytes,
        recipient=site if asked.encrypt else None,
        always=not quiet,
        quiet=quiet,
        receiver=site,
        stated=asked.knowledge,
        readable=None if readable is None else lambda origin: readable(site, origin),
    )
    return packer, next(packer, None), told


async def _frames(
    state: ServerState, site: bytes, first: bytes | None, packer: Iterator[bytes], told: Told
) -> AsyncIterator[bytes]:
    sent = count = 0
    bundle = first
    headers: list[BundleHeader] = []
    if first is not None:
        receipt = read_header(first, state.replica.limits)[0].receipts[0].encode()
        state.told.remember(site, dataclasses.replace(told, receipt=hash32(receipt)))
    try:
        while bundle is not None:
            yield encode_frame(bundle)
            headers.append(peek_header(bundle))  # made just now by the replica
            sent += len(bundle)
            count += 1
            state.observe.sent(len(bundle))
            if sent >= state.max_pull_response_bytes:
                yield end_frame(more=True)
                state.observe.pulled(site, count, sent, complete=False)
                return
            bundle = await anyio.to_thread.run_sync(next, packer, None)
        yield end_frame(more=False)
        if headers:  # what the replica's ``quiet`` need not say to this site again
            await anyio.to_thread.run_sync(state.replica.told, site, headers)
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
