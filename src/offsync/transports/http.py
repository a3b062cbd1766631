"""The HTTP client transport: a replica's path to an ``offsync.server`` app.

``HTTPTransport(url, identity)`` talks to a server built by ``offsync.server.create_app``
(docs/http.md). It is made for links that fail: every request has a timeout; busy
answers (503, 429, any 5xx) and broken connections are retried a bounded number of times
with exponential backoff and jitter, waiting at least what ``Retry-After`` says; large
bundles go up in chunks and a broken upload resumes from what the server holds, across
restarts of either side. When it gives up on a condition that may clear it raises
``RetryableTransportError`` (with ``retry_after`` when the server named one); when the
server refuses (a bad bundle, a bad signature, too large) it raises
``PeerRefusedError`` carrying the server's reason.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "offsync.transports.http needs httpx: install the http extra (pip install 'offsync[http]')"
    ) from exc

from ..bundle import read_header
from ..errors import (
    PeerRefusedError,
    RemoteDataError,
    RetryableTransportError,
    TransportError,
)
from ..httpwire import (
    END_OF_STREAM,
    MIN_PULL_BUNDLE_BYTES,
    MORE_AVAILABLE,
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
_RETRY_STATUSES = frozenset({408, 425, 429})


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


class HTTPTransport(Transport):
    """Sync with an offsync server over HTTP.

    ``identity`` signs pull requests (the server decides what this site may read by it).
    ``server_key``, when given, is the server replica's public key: answers signed by
    any other key are refused. ``encrypt`` seals uploaded bundles to the server's key;
    ``pull_encrypted`` asks the server to seal what it sends to ours.

    Retries: up to ``max_retries`` more attempts per operation (an upload that makes
    progress starts its count again), waiting ``backoff * 2**n`` seconds (at most
    ``max_backoff``, with jitter) or ``Retry-After`` if longer. A ``Retry-After`` beyond
    ``max_retry_after`` gives up at once. ``sleep`` and ``progress(bundle_id, sent,
    total)`` are hooks for callers (a progress bar; tests that do not want to wait).
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
        self.max_bundle_bytes = max(max_bundle_bytes, MIN_PULL_BUNDLE_BYTES)
        self.limits = limits
        self.progress = progress
        self.sleep = sleep
        #: The newest receipt the server gave us (from /knowledge or an upload answer).
        self.last_receipt: Receipt | None = None
        self._learnt: list[Receipt] = []  # not yet handed over by receipts()
        #: The server's JSON answer to each upload of this transport, in order.
        self.uploads: list[dict[str, Any]] = []
        self.retries = 0  # attempts repeated so far, for logs and tests
        self.pulls = 0  # pull requests made (a cut or broken answer is pulled again)
        self._client = httpx.Client(
            base_url=self.url + "/",
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            headers=headers,
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
        status = response.status_code
        if status < 400 or status in allow:
            return
        if status >= 500 or status in _RETRY_STATUSES:
            raise _Retry(
                f"server answered {status}", _retry_after(response.headers.get("retry-after"))
            )
        self._refused(response)

    def _refused(self, response: httpx.Response) -> NoReturn:
        try:
            response.read()
            body = response.json()
            error, reason = str(body["error"]), str(body["reason"])
        except Exception:
            error, reason = "HTTP", response.text[:200] if response.is_closed else ""
        raise PeerRefusedError(
            f"{self.url} refused: {error}: {reason} (HTTP {response.status_code})",
            status=response.status_code,
            error=error,
            reason=reason,
        )

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

    # -- knowledge ---------------------------------------------------------------------

    def knowledge(self) -> Knowledge:
        """What the server holds, from its signed receipt."""
        response = self._retrying("reading knowledge", lambda: self._request("GET", "knowledge"))
        receipt = self._take_receipt(response.content)
        return receipt.knowledge

    def _take_receipt(self, data: bytes) -> Receipt:
        try:
            receipt = Receipt.decode(data, self.limits)
        except RemoteDataError as exc:
            raise TransportError(f"{self.url} sent a bad receipt: {exc}") from exc
        if self.server_key is not None and receipt.replica != self.server_key:
            raise TransportError(
                f"{self.url} is replica {receipt.replica.hex()[:12]}, "
                f"not the expected {self.server_key.hex()[:12]}"
            )
        if self.peer is None:
            self.peer = receipt.replica
            if self.encrypt:
                self.recipient = receipt.replica
        if self.last_receipt is None or receipt.created >= self.last_receipt.created:
            self.last_receipt = receipt
        self._learnt.append(receipt)
        return receipt

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
        if self.encrypt:
            self._server()  # learn the key bundles are sealed to before they are packed
        sent = 0
        for bundle in bundles:
            self.upload(bundle)
            sent += 1
        return sent

    def upload(self, bundle: bytes) -> dict[str, Any]:
        """Deliver one bundle; the server's answer (status, counts, its fresh receipt)."""
        bundle = bytes(bundle)
        bundle_id = hash32(bundle).hex()
        if len(bundle) <= self.chunk_bytes:
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
            return self._answer(response)
        return self._upload_chunked(bundle, bundle_id)

    def _answer(self, response: httpx.Response) -> dict[str, Any]:
        body: dict[str, Any] = response.json()
        if "receipt" in body:
            import base64

            self._take_receipt(base64.b64decode(body["receipt"]))
        self.uploads.append(body)
        return body

    def _upload_chunked(self, bundle: bytes, bundle_id: str) -> dict[str, Any]:
        total, attempt, conflicts = len(bundle), 0, 0
        key = bytes.fromhex(bundle_id)
        while True:
            try:
                status = self._request("GET", f"bundles/{bundle_id}").json()
                if status.get("complete"):
                    return self._answer(self._request("PUT", f"bundles/{bundle_id}", content=b""))
                offset = int(status.get("received") or 0)
                if status.get("total") not in (None, total):
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
                        offset = int(response.json().get("received", 0))
                        continue
                    attempt = 0  # progress: a long upload over a bad link gets there
                    if self.progress:
                        self.progress(key, end, total)
                    if response.status_code == 202:
                        offset = int(response.json()["received"])
                        continue
                    return self._answer(response)
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

    def receive(self, knowledge: Knowledge) -> Iterator[bytes]:
        """Pull what the server holds beyond ``knowledge``, one bundle at a time.

        A broken stream is pulled again from where it broke: the ranges of the bundles
        already handed over are added to ``knowledge`` for the next request.
        """
        since, attempt = knowledge, 0
        server = self._server()
        while True:
            body = encode_pull_request(since, self.max_bundle_bytes, self.pull_encrypted)
            headers = sign_request(self.identity, server, "pull", body)
            headers["Content-Type"] = "application/x-msgpack"
            before = since
            self.pulls += 1
            try:
                with self._client.stream("POST", "pull", content=body, headers=headers) as r:
                    self._check(r)
                    frames = self._frames(r)
                    for bundle in frames:
                        since = since | self._ranges(bundle)
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

    def _ranges(self, bundle: bytes) -> Knowledge:
        try:
            header, _ = read_header(bundle, self.limits)
        except RemoteDataError:
            return Knowledge()  # the driver refuses it; it carries nothing we can count
        if header.sender == self.peer and (
            self.last_receipt is None or header.receipts[0].created >= self.last_receipt.created
        ):
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
