"""The one receive step of a bundle upload, for the direct and the spooled route.

An upload comes whole (no ``Content-Range``, held in memory) or in chunks appended to
a partial file under the id's lock file (``offsync.http.uploads``); once every byte is
here and hashes to the id, the route's ``Finish`` takes it: the direct route applies
it (``offsync.http.routes``), a spooling server holds it (``offsync.http.spoolroutes``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..segment import hash32
from .answers import json_answer
from .bodies import UploadProgress
from .ranges import ContentRange, parse_content_range
from .refusals import Refusal, bad_request, busy, id_mismatch
from .state import ServerState
from .uploads import Append

__all__ = ["INLINE_HASH_BYTES", "Finish", "content_length", "content_range", "off_loop", "receive"]

#: What a route does with a whole upload whose bytes hash to its id: ``(state,
#: bundle_id, data, partial)``, ``partial`` the file its chunks were appended to.
Finish = Callable[[ServerState, str, bytes, Path | None], Awaitable[Response]]

#: Bodies up to this size are hashed on the event loop (blake2b: ≈ 0.2 ms at 256 KiB),
#: larger ones in a worker thread, so that the loop never stalls for long.
INLINE_HASH_BYTES = 256 * 1024

_T = TypeVar("_T")


async def off_loop(data: bytes, work: Callable[[bytes], _T]) -> _T:
    """``work(data)``: on the event loop when ``data`` is small (well under a
    millisecond: not worth a thread hop), else in a worker thread."""
    if len(data) <= INLINE_HASH_BYTES:
        return work(data)
    return await anyio.to_thread.run_sync(work, data)


def content_range(state: ServerState, request: Request) -> ContentRange | None:
    """The upload's ``Content-Range`` within the upload size limit; None: a whole body."""
    header = request.headers.get("content-range")
    if header is None:
        return None
    rng = parse_content_range(header)
    if rng is None:
        raise bad_request("Content-Range must be 'bytes FIRST-LAST/TOTAL' or 'bytes */TOTAL'")
    state.uploads.check_size(rng.total)
    return rng


def content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise bad_request("bad Content-Length")
    return int(value)


async def receive(
    state: ServerState,
    request: Request,
    bundle_id: str,
    rng: ContentRange | None,
    length: int | None,
    finish: Finish,
) -> Response:
    """A whole body, or one range of it. Other workers may serve chunks of this upload
    from the same upload_dir: the offset check, the append and the apply happen holding
    its lock file."""
    if rng is None:
        return await _whole(state, request, bundle_id, length, finish)
    held = await anyio.to_thread.run_sync(state.uploads.lock, bundle_id)
    if held is None:
        raise busy()
    try:
        return await _chunk(state, request, bundle_id, rng, length, finish)
    finally:
        await anyio.to_thread.run_sync(state.uploads.unlock, bundle_id, held)


async def _whole(
    state: ServerState, request: Request, bundle_id: str, length: int | None, finish: Finish
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
    return await _complete(state, bundle_id, bytes(data), None, finish)


async def _chunk(
    state: ServerState,
    request: Request,
    bundle_id: str,
    rng: ContentRange,
    length: int | None,
    finish: Finish,
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
        return json_answer(progress, status=202)
    whole = await anyio.to_thread.run_sync(step.path.read_bytes)
    try:
        return await _complete(state, bundle_id, whole, step.path, finish)
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


async def _complete(
    state: ServerState, bundle_id: str, data: bytes, partial: Path | None, finish: Finish
) -> Response:
    """Every byte is here: check the id, then the route finishes."""
    if (await off_loop(data, hash32)).hex() != bundle_id:
        raise id_mismatch()
    return await finish(state, bundle_id, data, partial)
