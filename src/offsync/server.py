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

Signed requests answer a challenge the server issued (``offsync.http.signing``): replay
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

The app lives in the ``offsync.http`` package (``server``, ``routes``, ``uploads``,
``refusals``, ``openapi``); this module is its public face.
"""

from __future__ import annotations

try:
    import anyio  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offsync.server needs Starlette: install the http extra (pip install 'offsync[http]')"
    ) from exc

from .http.openapi import openapi
from .http.ranges import CONTENT_RANGE_PATTERN
from .http.server import ReadScopes, ServerState, create_app

__all__ = ["CONTENT_RANGE_PATTERN", "ReadScopes", "ServerState", "create_app", "openapi"]
