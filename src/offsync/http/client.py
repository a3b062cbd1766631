"""The client's side of httpx: link failures and the server's answers mapped once.

``Session`` wraps an ``httpx.Client``. Every request goes through ``request`` or
``stream``, where httpx's failures of the link become ``Retry`` (``mapped_failures``:
httpx's own ``map_httpcore_exceptions`` idea, one mapping instead of one per call) and
any answer that is not a success becomes the offsync error it means (``check``):

* 3xx: a redirect, a portal's or a proxy's, never ours: ``UnverifiedAnswerError``
* 507: the server's disk is full: ``PeerStorageFullError``, at once
* 5xx, 408, 425, 429: ``Retry``, waiting at least what ``Retry-After`` says
* other 4xx with an offsync error body: ``PeerRefusedError`` (a 413 teaches the limit)
* other 4xx: not an offsync answer: ``UnverifiedAnswerError``

so ``offsync.transports.http`` deals only in answers it verifies and offsync errors.
``challenge`` and ``frames`` read the two answers a pull needs: a fresh challenge, and
the frames of the pull's answer (``offsync.http.frames.FrameDecoder``) as they arrive.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offsync.transports.http needs httpx: install the http extra (pip install 'offsync[http]')"
    ) from exc

from ..errors import (
    LimitExceededError,
    PeerRefusedError,
    PeerStorageFullError,
    RemoteDataError,
    TransportError,
    UnverifiedAnswerError,
)
from ..logs import event as log_event
from .bodies import Body, ChallengeBody, ErrorBody
from .frames import BundleFrame, EndOfAnswer, FrameDecoder
from .signing import parse_challenge
from .wire import JSON_MEDIA_TYPE

__all__ = ["Retry", "Session", "mapped_failures", "media", "retry_after"]

B = TypeVar("B", bound=Body)
_RETRY_STATUSES = frozenset({408, 425, 429})
#: What servers answered (refusals, 503s, 507s, answers that are not a server's).
LOGGER = logging.getLogger("offsync.client")


def _no_userinfo(url: str) -> str:
    """A URL as logs may show it: without a user name or password in it."""
    return re.sub(r"//[^/@]*@", "//", url)


class Retry(Exception):
    """One attempt failed in a way that may clear: wait and try again. Never leaves the
    transport, which gives up with ``RetryableTransportError``."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


@contextmanager
def mapped_failures() -> Iterator[None]:
    """httpx's failures of the link (timeouts, refused or broken connections), as
    ``Retry``; everything else passes through."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Retry(f"timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise Retry(f"{type(exc).__name__}: {exc}") from exc


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def media(response: httpx.Response) -> str:
    """The media type of an answer, without parameters, lower case."""
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


class Session:
    """Requests to one server (``url``), with failures and refusals mapped.

    ``on_limit(n)`` is told when the server says (in a 413) that it accepts bundles of
    at most ``n`` bytes.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        connect_timeout: float,
        headers: dict[str, str] | None,
        on_limit: Callable[[int], None],
    ) -> None:
        self.url = url
        self.on_limit = on_limit
        self.client = httpx.Client(
            base_url=url + "/",
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers=headers,
            follow_redirects=False,  # a redirect is a portal's or a proxy's, never ours
        )

    def close(self) -> None:
        self.client.close()

    def request(
        self, method: str, path: str, *, allow: frozenset[int] = frozenset(), **kwargs: Any
    ) -> httpx.Response:
        """One attempt; a success (or a status in ``allow``) for the caller to verify."""
        with mapped_failures():
            response = self.client.request(method, path, **kwargs)
        self.check(response, allow)
        return response

    @contextmanager
    def stream(
        self, method: str, path: str, *, allow: frozenset[int] = frozenset(), **kwargs: Any
    ) -> Iterator[httpx.Response]:
        """A streamed success (or a status in ``allow``); failures while reading it are
        mapped too."""
        with mapped_failures(), self.client.stream(method, path, **kwargs) as response:
            self.check(response, allow)
            yield response

    # -- answers -----------------------------------------------------------------------

    def check(self, response: httpx.Response, allow: frozenset[int] = frozenset()) -> None:
        """Let 2xx (and ``allow``) through for the caller to verify; map the rest."""
        status = response.status_code
        if 200 <= status < 300 or status in allow:
            return
        server = _no_userinfo(self.url)
        if 300 <= status < 400:
            where = response.headers.get("location", "")
            log_event(LOGGER, logging.WARNING, "peer.foreign", server=server, status=status)
            raise self.foreign(
                f"answered {status}, a redirect" + (f" to {where[:200]}" if where else ""),
                status,
            )
        if status == 507:
            said = self.error_body(response)
            log_event(
                LOGGER,
                logging.ERROR,
                "peer.storage_full",
                server=server,
                status=status,
                reason=said.reason if said else None,
            )
            raise PeerStorageFullError(
                f"{self.url}: the server's storage is full or failing"
                + (f" ({said.reason})" if said else "")
                + "; nothing was delivered: its operator must free space, then sync again",
                retry_after=retry_after(response.headers.get("retry-after")),
            )
        if status >= 500 or status in _RETRY_STATUSES:
            wait = retry_after(response.headers.get("retry-after"))
            log_event(
                LOGGER, logging.WARNING, "peer.busy", server=server, status=status, retry_after=wait
            )
            raise Retry(f"server answered {status}", wait)
        self.refused(response)

    def error_body(self, response: httpx.Response) -> ErrorBody | None:
        """The offsync error an answer carries, or None if it is not one."""
        try:
            response.read()
            value = json.loads(response.content) if media(response) == JSON_MEDIA_TYPE else None
            return ErrorBody.from_json(value)
        except (ValueError, httpx.HTTPError, RemoteDataError):
            return None

    def refused(self, response: httpx.Response) -> NoReturn:
        status = response.status_code
        said = self.error_body(response)
        server = _no_userinfo(self.url)
        if said is None:  # a proxy's or a portal's page: not the server refusing
            log_event(LOGGER, logging.WARNING, "peer.foreign", server=server, status=status)
            raise self.foreign(f"answered {status} with something else than an error", status)
        log_event(
            LOGGER,
            logging.WARNING,
            "peer.refused",
            server=server,
            status=status,
            error=said.error,
            reason=said.reason,
        )
        if status == 413 and said.limit is not None and said.limit > 0:
            self.on_limit(said.limit)
        raise PeerRefusedError(
            f"{self.url} refused: {said.error}: {said.reason} (HTTP {status})",
            status=status,
            error=said.error,
            reason=said.reason,
        )

    def foreign(self, what: str, status: int | None = None) -> UnverifiedAnswerError:
        """The error for an answer that is not the server's."""
        return UnverifiedAnswerError(
            f"{self.url} {what}: the answer is not from an offsync server (a captive "
            "portal, a proxy or a wrong URL?); nothing was delivered",
            status=status,
        )

    def json(self, response: httpx.Response, status: int, what: str) -> dict[str, Any]:
        """The JSON object of an answer that must be ``status`` and JSON."""
        if response.status_code != status or media(response) != JSON_MEDIA_TYPE:
            raise self.foreign(
                f"answered {response.status_code} ({media(response) or 'no type'}) for {what}",
                response.status_code,
            )
        try:
            value = json.loads(response.content)
        except ValueError:
            value = None
        if type(value) is not dict:
            raise self.foreign(f"sent {what} that is not a JSON object", response.status_code)
        return value

    def body(self, kind: type[B], value: dict[str, Any], invalid: str, status: int | None) -> B:
        """``value`` read as a ``kind`` body; if it is not one, ``invalid`` says what the
        server did (an ``UnverifiedAnswerError``)."""
        try:
            return kind.from_json(value)
        except RemoteDataError as exc:
            raise self.foreign(invalid, status) from exc

    # -- what the protocol reads -------------------------------------------------------

    def challenge(self) -> bytes:
        """A fresh challenge from the server, to sign one request over."""
        try:
            response = self.request("GET", "challenge")
        except UnverifiedAnswerError as exc:
            if exc.status != 404:
                raise
            raise UnverifiedAnswerError(
                f"{self.url} has no /challenge: an offsync server older than this client "
                "(offsync-http/1, upgrade it), or not an offsync server at all",
                status=404,
            ) from exc
        invalid = "sent a challenge that is not one"
        body = self.body(ChallengeBody, self.json(response, 200, "a challenge"), invalid, 200)
        challenge = parse_challenge(body.challenge)
        if challenge is None:
            raise self.foreign(invalid, 200)
        return challenge

    def read_bounded(self, response: httpx.Response, limit: int = 4 * 1024 * 1024) -> bytes:
        """A streamed answer's body, at most ``limit`` bytes (more is not the server's
        answer: an ``UnverifiedAnswerError``)."""
        data = bytearray()
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > limit:
                raise self.foreign(f"sent an answer over {limit} bytes", response.status_code)
        return bytes(data)

    def frames(
        self, response: httpx.Response, max_frame: int
    ) -> Iterator[BundleFrame | EndOfAnswer]:
        """The events of a pull answer, ending with its end marker; ``Retry`` if the
        stream stops before it (a broken connection)."""
        decoder = FrameDecoder(max_frame)
        for chunk in response.iter_bytes():
            try:
                events = list(decoder.events(chunk))
            except LimitExceededError as exc:
                raise TransportError(f"{self.url} sent {exc}") from exc
            for event in events:
                yield event
                if isinstance(event, EndOfAnswer):
                    return
        raise Retry("the pull stream ended early (connection broken?)")
