"""The upload routes of a spooling server (``create_app(..., spool=...)``; docs/scale.md).

An upload is held durably in the spool and answered 202 at once; the spool's appliers
apply held bundles in group commits. Asked again (a commit, ``bytes */TOTAL``, or the
upload's status), the answer says what became of it: still held, applied (with a
receipt), or refused. The body is received by the same step as a direct upload
(``offsync.http.receive``); only what is done with it once whole differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from ..bundle import read_header
from ..errors import RemoteDataError
from ..stores import pgspool
from ..stores.pgspool import Spooled
from .answers import b64, json_answer
from .bodies import ErrorBody, UploadProgress, UploadResult, UploadStatus
from .ranges import ChunkRange
from .receive import content_length, content_range, off_loop, receive
from .refusals import Refusal, busy, refusal_for, unprocessable
from .state import ServerState
from .uploads import Uploader

__all__ = ["spooled_status", "spooled_upload"]


async def spooled_status(state: ServerState, bundle_id: str) -> Response | None:
    """The status of an upload the spool holds whole; None when it holds none."""
    assert state.spool is not None
    found, _ = await state.spool.lookup(bytes.fromhex(bundle_id))
    if found is None:
        return None
    # Whole and spooled: a commit (bytes */TOTAL) says the rest.
    return json_answer(UploadStatus(id=bundle_id, received=None, complete=True))


async def spooled_upload(state: ServerState, request: Request, bundle_id: str) -> Response:
    """An upload to a spooling server: held durably and answered 202 at once, applied
    by the spool's appliers in group commits; asked again, the answer says what became
    of it (``offsync.http.spool``, docs/scale.md)."""
    spool, applier = state.spool, state.applier
    assert spool is not None and applier is not None
    rng = content_range(state, request)
    if rng is not None and not isinstance(rng, ChunkRange):
        # A commit asks what became of a bundle: the spool knows, if it holds it.
        found, seen = await spool.lookup(bytes.fromhex(bundle_id))
        if found is not None:
            return await _answer(state, bundle_id, found, seen, rng.total)
    if applier.held >= state.spool_max_held:
        raise busy()  # the appliers are this far behind: truly saturated
    async with state.upload_lock(bundle_id):
        return await receive(state, request, bundle_id, rng, content_length(request), _hold)


async def _hold(state: ServerState, bundle_id: str, data: bytes, partial: Path | None) -> Response:
    """Hold a whole upload in the spool, after checking the bundle's own signature:
    junk and forgeries are refused now and never take spool space (what a bundle
    carries is checked when it is applied, and a refusal then is the answer to asking
    again)."""
    assert state.spool is not None
    try:
        read = await off_loop(data, lambda whole: read_header(whole, state.replica.limits))
    except RemoteDataError as exc:
        raise refusal_for(exc) or unprocessable(exc) from exc
    found, seen = await state.spool.put(bytes.fromhex(bundle_id), data)
    if partial is not None:  # held in the spool now, durably
        await anyio.to_thread.run_sync(lambda: partial.unlink(missing_ok=True))
    header = read[0]
    return await _answer(state, bundle_id, found, seen, len(data), (header.sender, header.ranges))


async def _answer(
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
        return json_answer(UploadResult(status=status, id=bundle_id, receipt=b64(receipt)))
    if found.state == pgspool.REFUSED:
        raise Refusal(
            found.status or 422,
            ErrorBody(error=found.error or "RemoteDataError", reason=found.reason or "refused"),
        )
    held = UploadProgress(status="held", id=bundle_id, received=total, total=total)
    return json_answer(held, status=202, headers={"Retry-After": str(state.spool_retry_after)})
