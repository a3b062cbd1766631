"""The HTTP client transport: a replica's path to an ``offsync.server`` app.

``HTTPTransport(url, identity)`` talks to a server built by ``offsync.server.create_app``
(docs/http.md). It is made for links that fail: every request has a timeout; busy
answers (503, 429, any 5xx) and broken connections are retried a bounded number of times
with exponential backoff and jitter, waiting at least what ``Retry-After`` says; large
bundles go up in chunks and a broken upload resumes from what the server holds, across
restarts of either side. When it gives up on a condition that may clear it raises
``RetryableTransportError`` (with ``retry_after`` when the server named one); when the
server refuses (a bad bundle, a bad signature, too large) it raises
``PeerRefusedError`` carrying the server's reason; a server whose disk is full (507)
raises ``PeerStorageFullError`` at once.

Nothing is taken on trust from whatever answers at the URL: an upload counts as
delivered only when the answer carries a receipt signed by the server (``server_key``,
else the key learnt from its first receipt) whose knowledge covers what the bundle
carried; pull answers must be frames of bundles sent by that server. Anything else (an
HTML login page, a redirect, JSON without a receipt, another key's receipt: a captive
portal or a proxy) raises ``UnverifiedAnswerError`` and delivers nothing.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offsync.transports.http needs httpx: install the http extra (pip install 'offsync[http]')"
    ) from exc

from ..bundle import peek_header, read_header
from ..errors import (
    PeerRefusedError,
    PeerStorageFullError,
    RemoteDataError,
    RetryableTransportError,
    TransportError,
    UnverifiedAnswerError,
)
from ..httpwire import (
    BUNDLES_MEDIA_TYPE,
    END_OF_STREAM,
    MAX_CHALLENGE_BYTES,
    MIN_CHALLENGE_BYTES,
    MIN_PULL_BUNDLE_BYTES,
    MORE_AVAILABLE,
    RECEIPT_MEDIA_TYPE,
    encode_pull_request,
    sign_request,
)
from ..identity import Identity
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..receipt import Receipt
from ..segment import hash32
from .base import DEFAULT_MAX_BUNDLE, Transport

__all__ = ["HTTPTransport"]

#: Bundles larger than this go up in resumable chunks of this size.
DEFAULT_CHUNK_BYTES = 1024 * 1024
#: A proxy that refuses request bodies as too large (a 413 that is not the server's)
#: makes chunks halve, down to this.
MIN_CHUNK_BYTES = 16 * 1024
_RETRY_STATUSES = frozenset({408, 425, 429})
_JSON = "application/json"
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


class _Retry(Exception):
    """One attempt failed in a way that may clear: wait and try again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def _retry_after(value: str | None) -> float | None:
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


def _media(response: httpx.Response) -> str:
    """The media type of an answer, without parameters, lower case."""
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


class HTTPTransport(Transport):
    """Sync with an offsync server over HTTP.

    ``identity`` signs pull requests (the server decides what this site may read by it).
    ``server_key``, when given, is the server replica's public key: answers signed by
    any other key are refused (without it, the key of the first receipt the server
    gives is the one every later answer must be signed by). ``encrypt`` seals uploaded
    bundles to the server's key; ``pull_encrypted`` asks the server to seal what it
    sends to ours.

    Retries: up to ``max_retries`` more attempts per operation (an upload that makes
    progress starts its count again), waiting ``backoff * 2**n`` seconds (at most
    ``max_backoff``, with jitter) or ``Retry-After`` if longer. A ``Retry-After`` beyond
    ``max_retry_after`` gives up at once. ``sleep`` and ``progress(bundle_id, sent,
    total)`` are hooks for callers (a progress bar; tests that do not want to wait).

    Sizes: ``max_bundle_bytes`` is what ``offsync.sync`` packs to, lowered to the
    server's upload limit once ``knowledge()`` learnt it (and by a 413 that names it);
    pulls ask for bundles of up to the ``max_bundle_bytes`` given here. A 413 from
    something between (a proxy's body limit) halves ``chunk_bytes`` and tries again.
    """

    def __init__(
        self,
        url: str,
        identity: Identity,
        *,
        server_key: bytes | None = None,
        encrypt: bool = False,
        pull_encrypted: bool = False,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        max_retry_after: float = 600.0,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        max_bundle_bytes: int = DEFAULT_MAX_BUNDLE,
        limits: Limits = DEFAULT_LIMITS,
        progress: Callable[[bytes, int, int], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        headers: dict[str, str] | None = None,
    ) -> None:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        self.url = url.rstrip("/")
        self.identity = identity
        self.server_key = server_key
        self.peer = server_key
        self.encrypt = encrypt
        self.recipient = server_key if encrypt else None
        self.pull_encrypted = pull_encrypted
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.chunk_bytes = chunk_bytes
        self._wanted_bundle_bytes = max(max_bundle_bytes, MIN_PULL_BUNDLE_BYTES)
        self.max_bundle_bytes = self._wanted_bundle_bytes
        #: The server's upload limit, once it said it (``GET /knowledge``, a 413).
        self.server_max_upload: int | None = None
        self.limits = limits
        self.progress = progress
        self.sleep = sleep
        #: The newest receipt the server gave us (from /knowledge or an upload answer).
        self.last_receipt: Receipt | None = None
        self._learnt: list[Receipt] = []  # not yet handed over by receipts()
        #: The server's JSON answer to each verified upload of this transport, in order.
        self.uploads: list[dict[str, Any]] = []
        self.retries = 0  # attempts repeated so far, for logs and tests
        self.pulls = 0  # pull requests made (a cut or broken answer is pulled again)
        self._client = httpx.Client(
            base_url=self.url + "/",
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers=headers,
            follow_redirects=False,  # a redirect is a portal's or a proxy's, never ours
        )

    def __repr__(self) -> str:
        return f"<HTTPTransport {self.url}>"

    def close(self) -> None:
        self._client.close()

    # -- requests and retries ----------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One attempt; busy answers and network failures raise _Retry."""
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        self._check(response)
        return response

    def _check(self, response: httpx.Response, allow: frozenset[int] = frozenset()) -> None:
        """Let 2xx (and ``allow``) through for the caller to verify; map the rest."""
        status = response.status_code
        if 200 <= status < 300 or status in allow:
            return
        if 300 <= status < 400:
            where = response.headers.get("location", "")
            raise self._foreign(
                f"answered {status}, a redirect" + (f" to {where[:200]}" if where else ""),
                status,
            )
        if status == 507:
            reason = self._offsync_error(response)
            raise PeerStorageFullError(
                f"{self.url}: the server's storage is full or failing"
                + (f" ({reason[1]})" if reason else "")
                + "; nothing was delivered: its operator must free space, then sync again",
                retry_after=_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Retry(
                f"server answered {status}", _retry_after(response.headers.get("retry-after"))
            )
        self._refused(response)

    def _offsync_error(self, response: httpx.Response) -> tuple[str, str] | None:
        """``(error, reason)`` of an offsync error answer, or None if it is not one."""
        try:
            response.read()
            body = json.loads(response.content) if _media(response) == _JSON else None
        except (ValueError, httpx.HTTPError):
            return None
        if type(body) is not dict:
            return None
        error, reason = body.get("error"), body.get("reason")
        if type(error) is not str or type(reason) is not str:
            return None
        return error, reason

    def _refused(self, response: httpx.Response) -> NoReturn:
        status = response.status_code
        said = self._offsync_error(response)
        if said is None:  # a proxy's or a portal's page: not the server refusing
            raise self._foreign(f"answered {status} with something else than an error", status)
        error, reason = said
        limit = None
        if status == 413:
            try:
                limit = json.loads(response.content).get("limit")
            except ValueError:  # pragma: no cover - parsed once above
                limit = None
        if type(limit) is int and limit > 0:
            self._server_limit(limit)
        raise PeerRefusedError(
            f"{self.url} refused: {error}: {reason} (HTTP {status})",
            status=status,
            error=error,
            reason=reason,
        )

    def _foreign(self, what: str, status: int | None = None) -> UnverifiedAnswerError:
        return UnverifiedAnswerError(
            f"{self.url} {what}: the answer is not from an offsync server (a captive "
            "portal, a proxy or a wrong URL?); nothing was delivered",
            status=status,
        )

    def _json(self, response: httpx.Response, status: int, what: str) -> dict[str, Any]:
        """The JSON object of an answer that must be ``status`` and JSON."""
        if response.status_code != status or _media(response) != _JSON:
            raise self._foreign(
                f"answered {response.status_code} ({_media(response) or 'no type'}) for {what}",
                response.status_code,
            )
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if type(body) is not dict:
            raise self._foreign(f"sent {what} that is not a JSON object", response.status_code)
        return body

    def _wait(self, attempt: int, failure: _Retry, what: str) -> None:
        """Sleep before attempt ``attempt`` (1-based), or give up."""
        after = failure.retry_after
        if attempt > self.max_retries or (after is not None and after > self.max_retry_after):
            raise RetryableTransportError(
                f"{what} at {self.url} failed after {attempt} attempts: {failure.reason}",
                retry_after=after,
            )
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)
        if after is not None:
            delay = max(delay, after)
        self.retries += 1
        self.sleep(delay)

    def _retrying(self, what: str, attempt_once: Callable[[], httpx.Response]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                return attempt_once()
            except _Retry as failure:
                attempt += 1
                self._wait(attempt, failure, what)

    def _server_limit(self, limit: int) -> None:
        """The server accepts bundles of at most ``limit`` bytes: pack to that."""
        self.server_max_upload = limit
        self.max_bundle_bytes = min(self._wanted_bundle_bytes, limit)

    # -- knowledge ---------------------------------------------------------------------

    def knowledge(self) -> Knowledge:
        """What the server holds, from its signed receipt (and its upload limit)."""
        response = self._retrying("reading knowledge", lambda: self._request("GET", "knowledge"))
        if response.status_code != 200 or _media(response) != RECEIPT_MEDIA_TYPE:
            raise self._foreign(
                f"answered {response.status_code} ({_media(response) or 'no type'}) "
                "instead of a receipt",
                response.status_code,
            )
        limit = response.headers.get("offsync-max-upload-bytes", "")
        if limit.isdigit() and int(limit) > 0:
            self._server_limit(int(limit))
        receipt = self._verified_receipt(response.content)
        self._keep(receipt)
        return receipt.knowledge

    def _verified_receipt(self, data: bytes) -> Receipt:
        """A receipt that verifies and is signed by the server (``server_key``, or the
        key learnt from its first receipt, which this one then teaches)."""
        try:
            receipt = Receipt.decode(data, self.limits)
        except RemoteDataError as exc:
            raise self._foreign(f"sent a receipt that does not verify ({exc})") from exc
        expected = self.server_key or self.peer
        if expected is not None and receipt.replica != expected:
            raise UnverifiedAnswerError(
                f"{self.url} answered with a receipt of replica {receipt.replica.hex()[:12]}, "
                f"not the expected {expected.hex()[:12]}: refused as not the server (a wrong "
                "URL or server key, or something answering in its place); nothing was delivered"
            )
        if self.peer is None:
            self.peer = receipt.replica
            if self.encrypt:
                self.recipient = receipt.replica
        return receipt

    def _keep(self, receipt: Receipt) -> None:
        if self.last_receipt is None or receipt.created >= self.last_receipt.created:
            self.last_receipt = receipt
        self._learnt.append(receipt)

    def receipts(self) -> list[Receipt]:
        """The server's receipts from upload answers and ``/knowledge`` not yet handed
        over: the newest per replica (a newer receipt says all an older one did)."""
        newest: dict[bytes, Receipt] = {}
        for r in self._learnt:
            if r.replica not in newest or r.created > newest[r.replica].created:
                newest[r.replica] = r
        self._learnt = []
        return list(newest.values())

    def _server(self) -> bytes:
        if self.peer is None:
            self.knowledge()
        assert self.peer is not None
        return self.peer

    # -- sending -----------------------------------------------------------------------

    def send(self, bundles: Iterable[bytes]) -> int:
        self._server()  # the key answers must be signed by (and bundles sealed to)
        sent = 0
        for bundle in bundles:
            self.upload(bundle)
            sent += 1
        return sent

    def upload(self, bundle: bytes) -> dict[str, Any]:
        """Deliver one bundle; the server's verified answer (status, counts, receipt).

        Raises unless the answer carries a receipt of the server's that covers what the
        bundle carries: only then was it delivered.
        """
        bundle = bytes(bundle)
        bundle_id = hash32(bundle).hex()
        carried = self._carried(bundle)
        self._server()
        while True:
            try:
                if len(bundle) <= self.chunk_bytes:
                    response = self._upload_whole(bundle, bundle_id)
                else:
                    response = self._upload_chunked(bundle, bundle_id)
                return self._delivered(response, bundle_id, carried)
            except UnverifiedAnswerError as exc:
                # A 413 that is not the server's: something between limits bodies.
                if exc.status != 413 or self.chunk_bytes <= MIN_CHUNK_BYTES:
                    raise
                self.chunk_bytes = max(MIN_CHUNK_BYTES, min(self.chunk_bytes, len(bundle)) // 2)

    def _carried(self, bundle: bytes) -> Knowledge | None:
        """The changes a bundle carries by its header (None if it has no readable one:
        the server will say why it refuses it)."""
        try:
            return peek_header(bundle, self.limits).ranges
        except RemoteDataError:
            return None

    def _upload_whole(self, bundle: bytes, bundle_id: str) -> httpx.Response:
        response = self._retrying(
            "uploading a bundle",
            lambda: self._request(
                "PUT",
                f"bundles/{bundle_id}",
                content=bundle,
                headers={"Content-Type": "application/octet-stream"},
            ),
        )
        if self.progress:
            self.progress(bytes.fromhex(bundle_id), len(bundle), len(bundle))
        return response

    def _delivered(
        self, response: httpx.Response, bundle_id: str, carried: Knowledge | None
    ) -> dict[str, Any]:
        """The answer to an upload, if it proves delivery; else UnverifiedAnswerError."""
        body = self._json(response, 200, "the answer to an upload")
        receipt = body.get("receipt")
        if (
            body.get("status") not in ("applied", "duplicate")
            or body.get("id") != bundle_id
            or type(receipt) is not str
        ):
            raise self._foreign("answered an upload without a receipt for it", 200)
        try:
            data = base64.b64decode(receipt, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise self._foreign("answered an upload with a receipt that is not base64") from exc
        verified = self._verified_receipt(data)
        if carried is None:
            raise self._foreign("accepted a bundle that has no readable header", 200)
        if not carried.issubset(verified.knowledge):
            missing = carried.difference(verified.knowledge)
            raise UnverifiedAnswerError(
                f"{self.url} answered the upload of {bundle_id[:16]} with a receipt that "
                f"does not cover {missing.count()} of the changes it carried (a stale answer "
                "from a cache, or a server that did not keep them); not delivered"
            )
        self._keep(verified)
        self.uploads.append(body)
        return body

    def _received(self, response: httpx.Response, status: int, total: int) -> int:
        """The ``received`` count of an upload status or a chunk's answer."""
        return self._count(self._json(response, status, "the state of an upload"), total)

    def _count(self, state: dict[str, Any], total: int) -> int:
        received = state.get("received")
        if type(received) is not int or not 0 <= received <= total:
            raise self._foreign("sent an upload state without a byte count")
        return received

    def _upload_chunked(self, bundle: bytes, bundle_id: str) -> httpx.Response:
        total, attempt, conflicts = len(bundle), 0, 0
        key = bytes.fromhex(bundle_id)
        while True:
            try:
                state = self._json(
                    self._request("GET", f"bundles/{bundle_id}"), 200, "the state of an upload"
                )
                if state.get("complete") is True:
                    # Applied recently: a commit asks for the answer (a worker that does
                    # not remember it says 202 with what it holds, and we go on).
                    response = self._request_chunk(bundle_id, bundle, total, total)
                    if response.status_code != 202:
                        return response
                    offset = self._received(response, 202, total)
                else:
                    offset = self._count(state, total)
                    if state.get("total") not in (None, total):
                        offset = 0  # cannot happen for a true hash; restart rather than fail
                while True:
                    end = min(offset + self.chunk_bytes, total)
                    response = self._request_chunk(bundle_id, bundle, offset, end)
                    if response.status_code == 409:  # another uploader of it got ahead
                        conflicts += 1
                        if conflicts > 100:
                            raise TransportError(
                                f"{self.url}: upload of {bundle_id} keeps conflicting"
                            )
                        offset = self._received(response, 409, total)
                        continue
                    attempt = 0  # progress: a long upload over a bad link gets there
                    if self.progress:
                        self.progress(key, end, total)
                    if response.status_code == 202:
                        offset = self._received(response, 202, total)
                        continue
                    return response
            except _Retry as failure:
                attempt += 1
                self._wait(attempt, failure, "uploading a bundle")

    def _request_chunk(self, bundle_id: str, bundle: bytes, first: int, end: int) -> httpx.Response:
        """PUT ``bundle[first:end]``; with nothing left to send, ask the server to apply."""
        total = len(bundle)
        span = f"bytes {first}-{end - 1}/{total}" if first < end else f"bytes */{total}"
        try:
            response = self._client.put(
                f"bundles/{bundle_id}",
                content=bundle[first:end],
                headers={"Content-Type": "application/octet-stream", "Content-Range": span},
            )
        except httpx.TimeoutException as exc:
            raise _Retry(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        self._check(response, allow=frozenset({409}))
        return response

    # -- receiving ---------------------------------------------------------------------

    def _challenge(self) -> bytes:
        """A fresh challenge from the server, to sign one request over."""
        try:
            response = self._request("GET", "challenge")
        except UnverifiedAnswerError as exc:
            if exc.status != 404:
                raise
            raise UnverifiedAnswerError(
                f"{self.url} has no /challenge: an offsync server older than this client "
                "(offsync-http/1, upgrade it), or not an offsync server at all",
                status=404,
            ) from exc
        body = self._json(response, 200, "a challenge")
        value = body.get("challenge")
        if (
            type(value) is not str
            or not _HEX.fullmatch(value)
            or not MIN_CHALLENGE_BYTES <= len(value) // 2 <= MAX_CHALLENGE_BYTES
        ):
            raise self._foreign("sent a challenge that is not one", 200)
        return bytes.fromhex(value)

    def receive(self, knowledge: Knowledge) -> Iterator[bytes]:
        """Pull what the server holds beyond ``knowledge``, one bundle at a time.

        A broken stream is pulled again from where it broke: the ranges of the bundles
        already handed over are added to ``knowledge`` for the next request. Each
        request is signed over a fresh challenge of the server's.
        """
        since, attempt = knowledge, 0
        server = self._server()
        while True:
            body = encode_pull_request(since, self._wanted_bundle_bytes, self.pull_encrypted)
            before = since
            self.pulls += 1
            try:
                headers = sign_request(self.identity, server, "pull", body, self._challenge())
                headers["Content-Type"] = "application/x-msgpack"
                with self._client.stream("POST", "pull", content=body, headers=headers) as r:
                    self._check(r)
                    if r.status_code != 200 or _media(r) != BUNDLES_MEDIA_TYPE:
                        raise self._foreign(
                            f"answered a pull with {r.status_code} ({_media(r) or 'no type'})",
                            r.status_code,
                        )
                    frames = self._frames(r)
                    first = True
                    for bundle in frames:
                        since = since | self._ranges(bundle, server, first)
                        first = False
                        yield bundle
                    end = frames.end
            except _Retry as failure:
                if since != before:
                    attempt = 0
                attempt += 1
                self._wait(attempt, failure, "pulling")
                continue
            except httpx.TimeoutException as exc:
                attempt += 1
                self._wait(attempt, _Retry(f"timed out ({type(exc).__name__})"), "pulling")
                continue
            except httpx.TransportError as exc:
                if since != before:
                    attempt = 0
                attempt += 1
                self._wait(attempt, _Retry(f"{type(exc).__name__}: {exc}"), "pulling")
                continue
            if end == END_OF_STREAM:
                return
            if since == before:
                raise TransportError(f"{self.url} says more is available but sent nothing new")
            attempt = 0

    def _ranges(self, bundle: bytes, server: bytes, first: bool) -> Knowledge:
        """What a pulled bundle carries. The server sends its own bundles only, the
        first always (it carries the server's receipt): anything else is not its answer."""
        try:
            header, _ = read_header(bundle, self.limits)
        except RemoteDataError as exc:
            if first:
                raise self._foreign(
                    f"answered a pull with a frame that is not a bundle ({exc})"
                ) from exc
            return Knowledge()  # the driver refuses it; it carries nothing we can count
        if header.sender != server:
            raise self._foreign(
                f"answered a pull with a bundle of {header.sender.hex()[:12]}, "
                f"not of the server {server.hex()[:12]}"
            )
        if self.last_receipt is None or header.receipts[0].created >= self.last_receipt.created:
            self.last_receipt = header.receipts[0]
        return header.ranges

    def _frames(self, response: httpx.Response) -> _FrameReader:
        return _FrameReader(response, self.limits.max_bundle_bytes, self.url)


class _FrameReader:
    """Bundles out of a pull response's length-prefixed frames; ``end`` is the last marker."""

    def __init__(self, response: httpx.Response, max_frame: int, url: str) -> None:
        self.response, self.max_frame, self.url = response, max_frame, url
        self.end: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        buffer = bytearray()
        need: int | None = None
        for chunk in self.response.iter_bytes():
            buffer += chunk
            while True:
                if need is None:
                    if len(buffer) < 4:
                        break
                    length = int.from_bytes(buffer[:4], "big")
                    del buffer[:4]
                    if length in (END_OF_STREAM, MORE_AVAILABLE):
                        self.end = length
                        return
                    if length > self.max_frame:
                        raise TransportError(
                            f"{self.url} sent a bundle of {length} bytes, over the limit of "
                            f"{self.max_frame}"
                        )
                    need = length
                if len(buffer) < need:
                    break
                bundle = bytes(buffer[:need])
                del buffer[:need]
                need = None
                yield bundle
        raise _Retry("the pull stream ended early (connection broken?)")
