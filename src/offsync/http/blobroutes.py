"""The server's blob lane (``offsync.lane``; docs/http.md, "Blobs").

Three endpoints, beside the bundle ones:

* ``POST /blobs`` (signed): of up to ``MAX_LANE_QUERY`` hashes, how many bytes
  the server holds of each (its size when whole, the bytes held from its start when a
  transfer was cut: where it resumes, like tus's ``Upload-Offset``).
* ``PUT /blobs/{hash}``: one chunk at an offset (``Content-Range``), at most
  ``blob_chunk_bytes``, starting where the server's copy ends (409 says where). The
  last byte makes the server verify the whole blob; one that does not match its
  reference is dropped whole (422). Not signed, like bundle uploads: the server takes
  only blobs that its visible records reference (their origins signed the hashes) and
  refuses every other hash (404), so a stranger cannot fill its disk with blobs.
* ``GET /blobs/{hash}`` (signed, ``Range: bytes=FIRST-LAST``): a chunk of a blob held
  whole, to a site whose read scope holds a visible record that references it.

A signed request from a key that may read nothing here (trust mode: no certificate in
force) is answered ``403``; a blob no record in the site's scope refers to is as if
not held (``404``, and no byte count in ``POST /blobs``).

Each request asks the store's index of references about its hashes alone
(``Replica.blob_entries``: one indexed query), so that a centre of a million records
neither scans them per request nor once per bundle it applies.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from ..blobs import BlobRef
from ..encoding import packb, unpack_strict
from ..errors import OffsyncError, RemoteDataError, SignatureError
from ..lane import MAX_LANE_QUERY, check_hashes
from ..readable import readable_blobs
from ..scope import Scope
from .answers import NO_STORE, now_ms
from .bodies import BlobProgress, ErrorBody
from .ranges import ChunkRange, CommitRange, ContentRange, parse_content_range
from .refusals import (
    Refusal,
    bad_request,
    conflict,
    forbidden,
    not_found,
    refusal_for,
    too_large,
    unauthorized,
)
from .signing import SignedRequest, blob_get_message, verify_request
from .state import ServerState
from .wire import MSGPACK_MEDIA_TYPE, OCTET_STREAM, is_bundle_id

__all__ = ["BLOB_ROUTES", "MAX_HELD_BODY"]

#: The largest body of ``POST /blobs``: MAX_LANE_QUERY hashes of 32 bytes, framed.
MAX_HELD_BODY = MAX_LANE_QUERY * 34 + 16
_RANGE = re.compile(r"bytes=([0-9]{1,19})-([0-9]{1,19})")

Entry = tuple[BlobRef, frozenset[bytes]]


def _entries(state: ServerState, hashes: list[bytes]) -> dict[bytes, Entry]:
    """Of ``hashes``, the blobs visible records reference (call holding the lock)."""
    return state.replica.blob_entries(hashes)


def _scope_of(state: ServerState, site: bytes) -> Scope:
    """What ``site`` may read here; ``403`` when that is nothing."""
    scope = state.read_scope(site)
    if not scope:
        raise forbidden(site)
    return scope


def _digest(request: Request) -> bytes:
    value: str = request.path_params["hash"]
    if not is_bundle_id(value):
        raise bad_request("a blob hash is 64 lowercase hex digits")
    return bytes.fromhex(value)


def _verify(state: ServerState, request: Request, endpoint: str, body: bytes) -> SignedRequest:
    try:
        return verify_request(
            request.headers,
            server=state.replica.id,
            endpoint=endpoint,
            body=body,
            challenges=state.challenges,
            now_ms=now_ms(),
        )
    except SignatureError as exc:
        raise unauthorized(str(exc)) from exc


def _spend(state: ServerState, signed: SignedRequest) -> None:
    """Record the challenge as used (holding the lock): one request per challenge."""
    if not state.replica.record_nonce(signed.challenge, signed.forget_after, now_ms()):
        raise unauthorized("replayed request (challenge already used)")


def _refusal(exc: OffsyncError) -> Refusal | OffsyncError:
    return refusal_for(exc) or exc


async def _body(request: Request, limit: int) -> bytes | None:
    """The body, refused past ``limit`` bytes; None if the client went away."""
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                raise too_large(f"body over {limit} bytes", limit)
    except ClientDisconnect:
        return None
    return bytes(data)


# -- POST /blobs ------------------------------------------------------------------


async def blobs_held(state: ServerState, request: Request) -> Response:
    body = await _body(request, MAX_HELD_BODY)
    if body is None:
        return Response(status_code=400)
    signed = _verify(state, request, "blobs-held", body)
    try:
        hashes = check_hashes(unpack_strict(body, "blob hashes"))
    except RemoteDataError as exc:
        raise _refusal(exc) from exc
    request.scope["offsync.site"] = signed.site

    def held() -> list[list[Any]]:
        _spend(state, signed)
        readable = readable_blobs(state.replica, hashes, _scope_of(state, signed.site))
        return [[h, n] for h, n in sorted(state.replica.held_blobs(readable).items())]

    async with state.slot():
        answer = await state.locked(held)
    return Response(packb(answer), media_type=MSGPACK_MEDIA_TYPE, headers=NO_STORE)


# -- PUT /blobs/{hash} -----------------------------------------------------------------


def _put_range(request: Request, chunk_limit: int) -> ContentRange:
    header = request.headers.get("content-range")
    rng = parse_content_range(header) if header is not None else None
    if rng is None:
        raise bad_request("Content-Range must be 'bytes FIRST-LAST/TOTAL' or 'bytes */TOTAL'")
    length = request.headers.get("content-length")
    declared = int(length) if length is not None and length.isdigit() else None
    if isinstance(rng, ChunkRange):
        if rng.size > chunk_limit:
            raise too_large(f"a blob chunk is at most {chunk_limit} bytes", chunk_limit)
        if not rng.fits(declared):
            raise bad_request("Content-Range does not match the body or lies outside the blob")
    elif declared not in (None, 0):
        raise bad_request("bytes */TOTAL carries no body")
    return rng


async def blob_put(state: ServerState, request: Request) -> Response:
    """One chunk of a blob a visible record references, at the offset held."""
    digest = _digest(request)
    rng = _put_range(request, state.replica.limits.blob_chunk_bytes)
    size = rng.size if isinstance(rng, ChunkRange) else 0
    async with state.slot():
        data = await _body(request, size)
        if data is None:
            return Response(status_code=400)  # the client went away; nothing kept of this
        if len(data) != size:
            raise bad_request(f"the body is {len(data)} bytes, not the {size} of Content-Range")
        progress = await state.locked(lambda: _take_chunk(state, digest, rng, data))
    status = 200 if progress.status == "complete" else 202
    return JSONResponse(progress.to_json(), status_code=status, headers=NO_STORE)


def _take_chunk(state: ServerState, digest: bytes, rng: ContentRange, data: bytes) -> BlobProgress:
    replica = state.replica
    entry = _entries(state, [digest]).get(digest)
    if entry is None:
        raise not_found(f"no record here references blob {digest.hex()[:16]}")
    ref = entry[0]
    if rng.total != ref.size:
        raise bad_request(f"blob {ref.hex[:16]} is {ref.size} bytes, not {rng.total}")
    held = replica.held_blobs([digest]).get(digest, 0)
    try:
        if replica.has_blob(ref):
            held = ref.size
        elif isinstance(rng, CommitRange):
            if ref.size == 0:
                held = replica.receive_blob_chunk(ref, 0, b"")
        elif rng.first != held:
            raise conflict(f"the server holds {held} bytes of this blob", received=held)
        else:
            held = replica.receive_blob_chunk(ref, rng.first, data)
    except OffsyncError as exc:
        raise _refusal(exc) from exc
    done = held >= ref.size and replica.has_blob(ref)
    return BlobProgress(
        status="complete" if done else "incomplete", hash=ref.hex, received=held, size=ref.size
    )


# -- GET /blobs/{hash} -----------------------------------------------------------------


async def blob_get(state: ServerState, request: Request) -> Response:
    """A signed request for a range of a blob held whole: 206 with the bytes."""
    digest = _digest(request)
    header = request.headers.get("range", "")
    m = _RANGE.fullmatch(header)
    if m is None:
        raise bad_request("Range must be 'bytes=FIRST-LAST'")
    first, last = int(m.group(1)), int(m.group(2))
    limit = state.replica.limits.blob_chunk_bytes
    if last < first:
        raise bad_request("Range: LAST before FIRST")
    if last - first + 1 > limit:
        raise too_large(f"a blob chunk is at most {limit} bytes", limit)
    signed = _verify(state, request, "blob", blob_get_message(digest.hex(), header))
    request.scope["offsync.site"] = signed.site

    def read() -> tuple[bytes, int]:
        _spend(state, signed)
        scope = _scope_of(state, signed.site)
        entry = _entries(state, [digest]).get(digest)
        if entry is None or not readable_blobs(state.replica, [digest], scope):
            raise not_found(f"no blob {digest.hex()[:16]} here")
        ref = entry[0]
        if not state.replica.has_blob(ref):
            raise not_found(f"blob {digest.hex()[:16]} is not held here (yet)")
        if first >= ref.size:
            raise Refusal(
                416, ErrorBody(error="RangeNotSatisfiable", reason=f"the blob is {ref.size} bytes")
            )
        return state.replica.read_blob_chunk(ref, first, last - first + 1), ref.size

    async with state.slot():
        data, size = await state.locked(read)
    span = f"bytes {first}-{first + len(data) - 1}/{size}"
    return Response(
        data, status_code=206, media_type=OCTET_STREAM, headers={**NO_STORE, "Content-Range": span}
    )


#: The lane's routes, by their names in ``openapi.ENDPOINTS``.
BLOB_ROUTES = {"blobs_held": blobs_held, "blob_put": blob_put, "blob_get": blob_get}
