"""What the routes answer with: JSON bodies, answers no cache may keep, receipts in
base64, and the server's clock in milliseconds."""

from __future__ import annotations

import base64
import time

from starlette.responses import JSONResponse, Response

from .bodies import Body

__all__ = ["NO_STORE", "b64", "json_answer", "now_ms"]

#: Answers that must never come from a cache (a proxy's stale copy is not the server).
NO_STORE = {"Cache-Control": "no-store"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def json_answer(body: Body, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body.to_json(), status_code=status, headers=headers)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
