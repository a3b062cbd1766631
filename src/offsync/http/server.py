"""The HTTP face of a replica: an ASGI app built on Starlette (``create_app``).

The app routes by the endpoint table (``offsync.http.openapi.ENDPOINTS``) to one small
function per endpoint (``offsync.http.routes``) and answers every refusal in one place
(``answer``): a ``Refusal`` raised by a route, and a store failure met anywhere
(``StorageFullError`` is 507, any other ``StorageError`` 503: docs/http.md).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..errors import StorageError
from ..replica import Replica
from .metrics import Metrics
from .observe import Observer
from .openapi import ENDPOINTS
from .readers import Policy, ReadScopes, readers
from .refusals import Refusal, refusal_for
from .routes import ROUTES, site_of
from .state import ServerState

__all__ = ["ReadScopes", "ServerState", "answer", "create_app"]

Handler = Callable[[ServerState, Request], Awaitable[Response]]


def create_app(
    replica: Replica,
    *,
    upload_dir: str | os.PathLike[str] | None = None,
    max_upload_bytes: int | None = None,
    max_pull_bundle_bytes: int = 16 * 1024 * 1024,
    max_pull_response_bytes: int = 256 * 1024 * 1024,
    max_in_flight: int = 8,
    admission_wait: float = 5.0,
    max_waiting: int = 256,
    busy_timeout: float = 10.0,
    retry_after: int = 2,
    replay_window: float = 300.0,
    readable: Policy | ReadScopes | None = "auto",
    reference: Iterable[str] | None = None,
    max_partial_uploads: int = 1000,
    partial_ttl: float = 7 * 24 * 3600,
    metrics: bool = False,
    site_labels: Mapping[bytes, str] | None = None,
    spool: int = 0,
) -> Starlette:
    """An ASGI app serving ``replica``.

    ``upload_dir`` keeps partial chunked uploads (keyed by bundle id) so they resume after
    a broken connection or a restart; without it a temporary directory is used, which
    survives broken connections but not restarts. ``max_upload_bytes`` bounds one bundle
    (default: the replica's ``limits.max_bundle_bytes``). ``max_in_flight`` bounds the
    uploads, applies and pulls running at once; beyond it up to ``max_waiting`` requests
    wait their turn, each at most ``admission_wait`` seconds. Beyond those, and when the
    replica stays locked longer than ``busy_timeout`` seconds, the answer is 503 with
    ``Retry-After: retry_after`` (docs/scale.md, "Admission"). A pull must be signed over
    a challenge issued at most ``replay_window`` seconds before (by the server's clock;
    each challenge is accepted once).
    ``readable`` says what a site may pull: ``"auto"`` (the default) is ``"certified"``
    in trust mode (a site gets exactly its certified read scope, plus ``_trust`` and the
    ``reference`` collections, default the replica's; a key that may read nothing is
    answered 403) and ``"everything"`` in open mode; ``"everything"`` (``None`` too)
    serves every key everything; or a function ``readable(site_key) -> Scope``
    (``offsync.http.readers``). At most
    ``max_partial_uploads`` partial uploads are kept (beyond, the one untouched longest
    gives way); one untouched for ``partial_ttl`` seconds is dropped.

    What the server does is logged to the logger ``offsync.server`` (docs/operations.md,
    "Logs"). ``metrics=True`` serves Prometheus metrics at ``GET /metrics`` (the
    ``metrics`` extra; ``ImportError`` naming it without); ``site_labels`` names sites
    in logs and gives them a last-contact series of their own, as a certificate does in
    trust mode (any other key is counted in one series: docs/operations.md, "Metrics").

    ``spool`` (a replica on the PostgreSQL store only): hold each whole upload durably
    in the store's upload spool and answer it 202 (held) at once; a background applier
    applies up to ``spool`` held bundles per transaction, and the uploader learns the
    outcome by asking again (``offsync.http.spool``, docs/scale.md). Its threads stop
    when the app's lifespan ends (or ``app.state.offsync.close()``).
    """
    observer = Observer(replica, metrics=Metrics() if metrics else None, site_labels=site_labels)
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
        readable=readers(replica, readable, reference),
        max_partial_uploads=max_partial_uploads,
        partial_ttl=partial_ttl,
        observer=observer,
        admission_wait=admission_wait,
        max_waiting=max_waiting,
    )
    observer.started(
        max_in_flight,
        admission_wait=admission_wait,
        max_waiting=max_waiting,
        upload_dir=str(upload_path),
    )

    if spool:
        _start_spool(state, replica, spool)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = Starlette(routes=_routes(state), exception_handlers=_handlers(state), lifespan=lifespan)
    app.state.offsync = state
    return app


def _start_spool(state: ServerState, replica: Replica, group: int) -> None:
    from ..replica.spooling import replica_beside, spool_store
    from .spool import Applier, SpoolSettings, SpoolWriter

    settings = SpoolSettings(group=group)
    writer_db = spool_store(replica)  # UsageError unless the store is PostgreSQL
    applier = Applier(replica_beside(replica), settings)
    state.spooling(SpoolWriter(writer_db, settings, on_spooled=applier.wake), applier)


def answer(state: ServerState, refusal: Refusal) -> Response:
    """The response to a refusal; a 503 says when to retry, and is counted."""
    headers = dict(refusal.headers)
    if refusal.status == 503:
        state.count_busy()
        headers["Retry-After"] = str(state.retry_after)
    return JSONResponse(refusal.body.to_json(), status_code=refusal.status, headers=headers)


def _handlers(state: ServerState) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Refusals raised by routes, and store failures met anywhere, answered alike."""

    def told(request: Request, refusal: Refusal) -> Response:
        state.observe.refused(refusal, request.method, request.url.path, site_of(request))
        return answer(state, refusal)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return told(request, exc)

    async def storage_failed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StorageError)
        refusal = refusal_for(exc)
        assert refusal is not None  # every StorageError has its answer
        return told(request, refusal)

    async def failed(request: Request, exc: Exception) -> Response:
        # Starlette raises the error again after this answer, and uvicorn logs it.
        state.observe.failed(exc, request.method, request.url.path)
        return PlainTextResponse("Internal Server Error", status_code=500)

    return {Refusal: refused, StorageError: storage_failed, Exception: failed}


def _routes(state: ServerState) -> list[Route]:
    """One route per path of the endpoint table, dispatching on the method, so that a
    405 names every documented method of the path in ``Allow``."""
    by_path: dict[str, dict[str, Handler]] = {}
    for endpoint in ENDPOINTS:
        by_path.setdefault(endpoint.path, {})[endpoint.method.upper()] = ROUTES[endpoint.name]
    return [
        Route(path, _dispatch(state, handlers), methods=list(handlers))
        for path, handlers in by_path.items()
    ]


def _dispatch(
    state: ServerState, handlers: dict[str, Handler]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # Starlette lets HEAD through where GET is allowed: it is answered as GET.
        handler = handlers.get(request.method) or handlers["GET"]
        return await handler(state, request)

    return endpoint
