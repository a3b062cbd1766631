"""Every error answer of the server: its status, JSON body and headers, in one place.

Code that meets a problem while serving a request raises a ``Refusal`` built here; the
app turns any refusal into a response at one spot (``offsync.http.server``), so no
route decides a status inline. Offsync errors met while serving are mapped by one table,
``refusal_for`` (h11's ``error_status_hint``; ``offsync.cli.exits.classify`` does the
same for exit codes).

``Refusal`` is deliberately not in offsync's error tree (``offsync.errors``): it never
leaves the app. It is the server's answer, not an error of the library's caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import OffsyncError, RemoteDataError, StorageError, StorageFullError
from .bodies import ErrorBody

__all__ = [
    "BUSY_REASON",
    "Refusal",
    "bad_request",
    "busy",
    "conflict",
    "forbidden",
    "id_mismatch",
    "not_found",
    "not_ready",
    "refusal_for",
    "storage_full",
    "too_large",
    "unauthorized",
    "unprocessable",
]

BUSY_REASON = "server saturated, retry later"


class Refusal(Exception):
    """An error answer: ``status``, the JSON ``body`` and extra ``headers``."""

    def __init__(self, status: int, body: ErrorBody, headers: Mapping[str, str] | None = None):
        super().__init__(body.reason)
        self.status, self.body, self.headers = status, body, dict(headers or {})

    @property
    def final(self) -> bool:
        """What was sent is refused (4xx): the same bytes again will not do, so a
        partial upload of them is dropped. A busy or full server (5xx) keeps them."""
        return 400 <= self.status < 500

    def __repr__(self) -> str:
        return f"Refusal({self.status}, {self.body!r})"


def bad_request(reason: str) -> Refusal:
    return Refusal(400, ErrorBody(error="BadRequest", reason=reason))


def unauthorized(reason: str) -> Refusal:
    """A signed request that is unsigned, badly signed or over a spent challenge."""
    return Refusal(
        401,
        ErrorBody(error="SignatureError", reason=reason),
        {"WWW-Authenticate": "Offsync-Signature"},
    )


def forbidden(site: bytes) -> Refusal:
    """A well-signed request from a key that may read nothing here now: unknown to the
    trust store, expired, revoked or replaced (docs/http.md, "Who may read")."""
    return Refusal(
        403,
        ErrorBody(
            error="NotCertified",
            reason=f"key {site.hex()[:16]} may read nothing here: no certificate in force"
            " (unknown, expired, revoked or replaced); ask an authority to certify it",
        ),
    )


def not_found(reason: str) -> Refusal:
    return Refusal(404, ErrorBody(error="NotFound", reason=reason))


def not_ready() -> Refusal:
    """The store cannot be reached or is not migrated (``GET /readyz``): the log says
    why; the answer does not (it may name hosts and schemas)."""
    return Refusal(
        503,
        ErrorBody(
            error="NotReady",
            reason="the store cannot be reached or is not at this offsync's schema; "
            "the server's log says why",
        ),
    )


def conflict(reason: str, received: int | None = None) -> Refusal:
    return Refusal(409, ErrorBody(error="Conflict", reason=reason, received=received))


def too_large(reason: str, limit: int | None = None) -> Refusal:
    return Refusal(413, ErrorBody(error="LimitExceededError", reason=reason, limit=limit))


def id_mismatch() -> Refusal:
    return Refusal(
        422,
        ErrorBody(
            error="BundleIdMismatch",
            reason="the uploaded bytes do not hash to the bundle id (corrupted in transit?)",
        ),
    )


def unprocessable(exc: OffsyncError) -> Refusal:
    """Refused input: the body names the offsync error class."""
    return Refusal(422, ErrorBody(error=type(exc).__name__, reason=str(exc)))


def busy(exc: OffsyncError | None = None) -> Refusal:
    """Saturated, or the replica stayed busy: retry (the app adds ``Retry-After``)."""
    return Refusal(503, ErrorBody(error="Busy", reason=BUSY_REASON))


def storage_full(exc: OffsyncError) -> Refusal:
    """507, not 503: retrying in seconds will not help; an operator must act."""
    return Refusal(
        507,
        ErrorBody(
            error="StorageFullError",
            reason=f"the server's storage is full or failing, nothing was stored: {exc}; "
            "its operator must free space before this can succeed",
        ),
    )


#: The offsync errors a request may meet, most specific first, and their answers:
#: a store that failed in a way that may clear is a busy server (docs/http.md).
ANSWERS: tuple[tuple[type[OffsyncError], Callable[[OffsyncError], Refusal]], ...] = (
    (StorageFullError, storage_full),
    (StorageError, busy),
    (RemoteDataError, unprocessable),
)


def refusal_for(exc: OffsyncError) -> Refusal | None:
    """The answer to an offsync error met while serving; None for one that is a bug
    of the server (the app answers 500)."""
    for kind, answer in ANSWERS:
        if isinstance(exc, kind):
            return answer(exc)
    return None
