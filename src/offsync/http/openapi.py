"""The endpoint table, and the OpenAPI 3.1 document made from it.

``ENDPOINTS`` lists every endpoint with what it takes and every answer it gives, the
JSON ones by their body type (``offsync.http.bodies``). The server routes by this table
(so a 405's ``Allow`` names exactly the documented methods), ``openapi()`` builds the
document served at ``GET /openapi.json`` from it, and docs/http.md carries the same
document, written by::

    python -m offsync.http.openapi --docs docs/http.md

(a test keeps the page equal to ``openapi()``; without ``--docs`` the document is
printed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..lane import MAX_LANE_QUERY
from .bodies import (
    ANSWER_BODIES,
    BlobProgress,
    Body,
    ChallengeBody,
    ErrorBody,
    Health,
    ServerInfo,
    UploadProgress,
    UploadResult,
    UploadStatus,
)
from .ranges import CONTENT_RANGE_PATTERN
from .signing import CHALLENGE_BYTES
from .wire import (
    BUNDLE_ID_PATTERN,
    BUNDLES_MEDIA_TYPE,
    GROUPS_MEDIA_TYPE,
    METRICS_MEDIA_TYPE,
    MIN_PULL_BUNDLE_BYTES,
    MSGPACK_MEDIA_TYPE,
    OCTET_STREAM,
    PROTOCOL,
    RECEIPT_MEDIA_TYPE,
)

__all__ = ["ENDPOINTS", "Answer", "Endpoint", "docs_block", "openapi"]


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer of an endpoint: a JSON ``body`` type, or a ``media`` type of bytes."""

    status: int
    description: str
    body: type[Body] | None = None
    media: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description}
        if self.headers:
            out["headers"] = self.headers
        if self.body is not None:
            ref = {"$ref": f"#/components/schemas/{self.body.NAME}"}
            out["content"] = {"application/json": {"schema": ref}}
        elif self.media is not None:
            out["content"] = {self.media: {}}
        return out


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One method of one path; ``name`` is its route in ``offsync.http.routes``."""

    method: str
    path: str
    name: str
    summary: str
    answers: tuple[Answer, ...]
    description: str = ""
    parameters: tuple[dict[str, Any], ...] = ()
    request: dict[str, Any] | None = None

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operationId": self.name, "summary": self.summary}
        if self.description:
            out["description"] = self.description
        if self.parameters:
            out["parameters"] = list(self.parameters)
        if self.request is not None:
            out["requestBody"] = self.request
        out["responses"] = {str(a.status): a.document() for a in self.answers}
        return out


def _error(status: int, description: str) -> Answer:
    return Answer(status, description, ErrorBody)


_BUSY = Answer(
    503,
    "Saturated or the replica is busy; retry after Retry-After seconds",
    ErrorBody,
    headers={"Retry-After": {"schema": {"type": "integer"}}},
)
_FULL = _error(
    507,
    "The server's storage is full or failing: nothing was stored, and retrying will "
    "not help until its operator frees space",
)
_BUNDLE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "BLAKE2b-256 of the bundle's bytes, 64 lowercase hex digits",
    "schema": {"type": "string", "pattern": BUNDLE_ID_PATTERN},
}
_CONTENT_RANGE = {
    "name": "Content-Range",
    "in": "header",
    "required": False,
    "description": (
        "bytes FIRST-LAST/TOTAL for a chunk, or bytes */TOTAL (empty body) to apply the "
        "TOTAL bytes the server holds"
    ),
    "schema": {"type": "string", "pattern": CONTENT_RANGE_PATTERN},
}
_SIGNED = tuple(
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
)

_BLOB_HASH = {
    "name": "hash",
    "in": "path",
    "required": True,
    "description": "BLAKE2b-256 of the blob's bytes (its reference's hash), 64 lowercase hex digits",
    "schema": {"type": "string", "pattern": BUNDLE_ID_PATTERN},
}
_BLOB_ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "post",
        "/blobs",
        "blobs_held",
        "How much the server holds of each of some blobs (to send only what it lacks)",
        (
            Answer(
                200,
                "Canonical msgpack array of [hash, bytes held] for each blob asked that "
                "the server holds whole (bytes = its size) or in part (bytes held from its "
                "start: where an upload resumes); blobs it holds nothing of, or that no "
                "record the site may read references, are left out",
                media=MSGPACK_MEDIA_TYPE,
            ),
            _error(401, "Unsigned, badly signed, or over a challenge not valid here"),
            _error(413, f"More than {MAX_LANE_QUERY} hashes"),
            _error(422, "Not a msgpack array of 32-byte hashes"),
            _BUSY,
        ),
        parameters=_SIGNED,
        request={
            "required": True,
            "description": f"Canonical msgpack array of at most {MAX_LANE_QUERY} bin(32) hashes",
            "content": {MSGPACK_MEDIA_TYPE: {}},
        },
    ),
    Endpoint(
        "put",
        "/blobs/{hash}",
        "blob_put",
        "Upload one chunk of a blob that a record on the server references",
        (
            Answer(200, "The blob is held whole and verified", BlobProgress),
            Answer(
                202, "Chunk stored; more to come (received: where the next starts)", BlobProgress
            ),
            _error(400, "Malformed hash, Content-Range or length, or a total not the blob's size"),
            _error(404, "No visible record on the server references this blob"),
            _error(409, "Chunk does not start where the server's copy ends (see received)"),
            _error(413, "Chunk larger than blob_chunk_bytes (see limit)"),
            _error(
                422,
                "The whole blob does not match its reference (BlobError): dropped whole, "
                "send it again from byte 0",
            ),
            _BUSY,
            _FULL,
        ),
        description=(
            "Chunks start where the server's copy ends (POST /blobs or a 202/409 says "
            "where), so an interrupted upload resumes there. With the last byte the server "
            "verifies size and hash before the blob is visible. bytes */TOTAL (no body) "
            "asks how much is held (and stores an empty blob)."
        ),
        parameters=(_BLOB_HASH, _CONTENT_RANGE),
        request={"required": True, "content": {OCTET_STREAM: {}}},
    ),
    Endpoint(
        "get",
        "/blobs/{hash}",
        "blob_get",
        "A range of a blob the server holds whole",
        (
            Answer(
                206,
                "The bytes asked (fewer at the blob's end), with Content-Range",
                media=OCTET_STREAM,
            ),
            _error(400, "Malformed hash or Range"),
            _error(401, "Unsigned, badly signed, or over a challenge not valid here"),
            _error(404, "Not held whole here, or not readable by the signing site"),
            _error(413, "Range longer than blob_chunk_bytes (see limit)"),
            _error(416, "Range starts beyond the blob's end"),
            _BUSY,
        ),
        description=(
            "Signed: the signed body is the ASCII of 'GET /blobs/{hash} {Range header}' "
            "(offsync.http.signing.blob_get_message)."
        ),
        parameters=(
            _BLOB_HASH,
            {
                "name": "Range",
                "in": "header",
                "required": True,
                "description": "bytes=FIRST-LAST, at most blob_chunk_bytes",
                "schema": {"type": "string", "pattern": "^bytes=[0-9]+-[0-9]+$"},
            },
            *_SIGNED,
        ),
    ),
)

#: Every endpoint of the server, in the order the document lists them.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "get",
        "/",
        "info",
        "What this server is: its replica key and limits",
        (Answer(200, "Server description", ServerInfo),),
    ),
    Endpoint(
        "get",
        "/knowledge",
        "knowledge",
        "A fresh receipt: the replica's signed knowledge",
        (
            Answer(
                200,
                "An encoded receipt (docs/spec.md)",
                media=RECEIPT_MEDIA_TYPE,
                headers={
                    "Offsync-Max-Upload-Bytes": {
                        "description": "The largest bundle this server accepts",
                        "schema": {"type": "integer"},
                    }
                },
            ),
            _BUSY,
        ),
    ),
    Endpoint(
        "get",
        "/challenge",
        "challenge",
        "A fresh single-use challenge to sign a request over",
        (Answer(200, "A challenge, valid for lifetime_seconds", ChallengeBody),),
    ),
    Endpoint(
        "get",
        "/bundles/{id}",
        "upload_status",
        "How much of an upload the server holds (to resume it)",
        (Answer(200, "Upload status", UploadStatus), _error(400, "Malformed bundle id")),
        parameters=(_BUNDLE_ID,),
    ),
    Endpoint(
        "put",
        "/bundles/{id}",
        "upload",
        "Upload a bundle, whole or in Content-Range chunks",
        (
            Answer(200, "Applied now, or already applied (duplicate)", UploadResult),
            Answer(
                202,
                "Chunk stored; more to come (incomplete), or, on a spooling server, the "
                "whole bundle held durably but not applied yet (held: not delivered; ask "
                "again with Content-Range bytes */TOTAL after Retry-After)",
                UploadProgress,
            ),
            _error(400, "Malformed id, Content-Range or length"),
            _error(409, "Chunk does not start where the server's copy ends (see received)"),
            _error(413, "Bundle larger than the server accepts"),
            _error(
                422,
                "Bundle refused: bytes do not hash to the id, or the bundle does not verify "
                "(error names the offsync error class)",
            ),
            _BUSY,
            _FULL,
        ),
        description=(
            "Idempotent by id. Chunks must start where the server's partial upload ends. "
            "Once all bytes are held and hash to the id, the bundle is verified and applied "
            "(a spooling server holds it durably first and applies it in a group commit, "
            "answering 202 held if that takes longer than it waits; the outcome, applied "
            "with a receipt or refused, is the answer to asking again)."
        ),
        parameters=(_BUNDLE_ID, _CONTENT_RANGE),
        request={"required": True, "content": {OCTET_STREAM: {}}},
    ),
    Endpoint(
        "post",
        "/pull",
        "pull",
        "Bundles the signing site lacks",
        (
            Answer(
                200,
                "Frames of u32 big-endian length + bundle; length 0 ends a complete answer, "
                "0xFFFFFFFF one cut short (pull again); the end frame alone when there is "
                "nothing new and receipt_known is the server's current receipt",
                media=BUNDLES_MEDIA_TYPE,
            ),
            Answer(
                409,
                "The site's group digests differ: canonical msgpack array of "
                "[collection, group], sorted; pull again with them in detail",
                media=GROUPS_MEDIA_TYPE,
            ),
            _error(
                401,
                "Unsigned, badly signed, or over a challenge that is not this server's, has "
                "expired or was used already",
            ),
            _error(413, "Request body too large"),
            _error(422, "Malformed request body"),
            _BUSY,
            _FULL,
        ),
        parameters=_SIGNED,
        request={
            "required": True,
            "description": (
                "Canonical msgpack map {detail: [[collection, group]], digests: nil or "
                "[G, [[collection, group, bin(16)]]], encrypt: bool, knowledge: <knowledge "
                f"wire form>, max_bytes: int >= {MIN_PULL_BUNDLE_BYTES}, receipt_known: nil "
                "or bin(32), relays_for: [bin(32)]} (docs/spec-v3.md §15.1)"
            ),
            "content": {MSGPACK_MEDIA_TYPE: {}},
        },
    ),
    Endpoint(
        "get",
        "/openapi.json",
        "spec",
        "This description",
        (Answer(200, "OpenAPI 3.1 document"),),
    ),
    Endpoint(
        "get",
        "/healthz",
        "healthz",
        "Whether the process answers (it touches nothing else)",
        (Answer(200, "Alive", Health),),
    ),
    Endpoint(
        "get",
        "/readyz",
        "readyz",
        "Whether the store is reachable and at this offsync's schema (one short query)",
        (
            Answer(200, "Ready", Health),
            Answer(
                503,
                "The store cannot be reached or is not at this offsync's schema (the "
                "server's log says why); retry after Retry-After seconds",
                ErrorBody,
                headers={"Retry-After": {"schema": {"type": "integer"}}},
            ),
        ),
    ),
    Endpoint(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics (docs/operations.md, 'Metrics')",
        (
            Answer(
                200,
                "The Prometheus text exposition format (its version in the media type's "
                "parameters)",
                media=METRICS_MEDIA_TYPE,
            ),
            _error(
                404,
                "Metrics are off: create_app(metrics=True) or offsync serve --metrics, with "
                "the metrics extra installed",
            ),
        ),
    ),
    *_BLOB_ENDPOINTS,
)


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 description served at ``GET /openapi.json`` (and in docs/http.md)."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method] = endpoint.document()
    return {
        "openapi": "3.1.0",
        "info": {"title": "offsync replica", "version": PROTOCOL},
        "paths": paths,
        "components": {"schemas": {body.NAME: body.schema() for body in ANSWER_BODIES}},
    }


def docs_block() -> str:
    """The document as docs/http.md shows it: a fenced JSON block."""
    return "```json\n" + json.dumps(openapi(), indent=2) + "\n```\n"


_DOCS_HEADING = "## OpenAPI description"


def _write_docs(page: str) -> None:
    """Replace the JSON block under the page's OpenAPI heading with ``docs_block()``."""
    from pathlib import Path

    path = Path(page)
    text = path.read_text()
    heading = text.index(_DOCS_HEADING)
    start = text.index("```json\n", heading)
    end = text.index("\n```\n", start) + len("\n```\n")
    path.write_text(text[:start] + docs_block() + text[end:])


if __name__ == "__main__":  # pragma: no cover - a tool for the docs
    import argparse

    parser = argparse.ArgumentParser(description="Print, or write into a page, the document.")
    parser.add_argument("--docs", metavar="PAGE", help="rewrite the OpenAPI block of PAGE")
    args = parser.parse_args()
    if args.docs:
        _write_docs(args.docs)
    else:
        print(json.dumps(openapi(), indent=2))
