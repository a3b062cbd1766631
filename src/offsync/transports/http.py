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

The protocol is ``offsync.http``'s: answers are read as its typed bodies, pull answers
with its ``FrameDecoder``, requests signed with its ``signing``; httpx's failures and
the server's refusals are mapped once, in ``offsync.http.client``.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..bundle import peek_header, read_header
from ..errors import (
    RemoteDataError,
    RetryableTransportError,
    TransportError,
    UnverifiedAnswerError,
    UsageError,
)
from ..http.bodies import (
    ErrorBody,
    UploadProgress,
    UploadResult,
    UploadStatus,
)
from ..http.client import Retry, Session, media, retry_after
from ..http.frames import EndOfAnswer
from ..http.pull import DIGEST_THRESHOLD_STREAMS, GROUPS_MEDIA_TYPE, PullRequest, decode_groups
from ..http.ranges import content_range
from ..http.signing import sign_request
from ..http.wire import (
    BUNDLES_MEDIA_TYPE,
    H_MAX_UPLOAD,
    JSON_MEDIA_TYPE,
    MIN_PULL_BUNDLE_BYTES,
    MSGPACK_MEDIA_TYPE,
    OCTET_STREAM,
    RECEIPT_MEDIA_TYPE,
)
from ..identity import Identity
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS, Limits
from ..receipt import Receipt
from ..segment import hash32
from .base import DEFAULT_MAX_BUNDLE, Transport

if TYPE_CHECKING:
    import httpx  # imported by offsync.http.client, which names the extra if it is missing

    from .httpblobs import HTTPBlobPeer

__all__ = ["HTTPTransport"]

#: Bundles larger than this go up in resumable chunks of this size.
DEFAULT_CHUNK_BYTES = 1024 * 1024
#: A proxy that refuses request bodies as too large (a 413 that is not the server's)
#: makes chunks halve, down to this.
MIN_CHUNK_BYTES = 16 * 1024


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

    receipt_in_pull = True

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
        relays_for: Iterable[bytes] = (),
    ) -> None:
        if chunk_bytes < 1:
            raise UsageError("chunk_bytes must be positive")
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
        #: The hash of the receipt of the last pull answer: its ``receipt_known``.
        self._pulled_receipt: bytes | None = None
        #: The last pull was answered with nothing: the server's receipt we hold is
        #: current (``offsync.sync`` then does not ask ``/knowledge``).
        self.receipt_current = False
        #: The server's JSON answer to each verified upload of this transport, in order.
        self.uploads: list[dict[str, Any]] = []
        self.retries = 0  # attempts repeated so far, for logs and tests
        self.pulls = 0  # pull requests made (a cut or broken answer is pulled again)
        self.digest_rounds = 0  # 409s answered with detail (the digest exchange)
        #: The sites this site relays for (spec-v3 §9.1), sent with each pull so that the
        #: server's receipt states their streams too.
        self.relays_for: tuple[bytes, ...] = tuple(sorted(set(relays_for)))
        #: Send group digests instead of knowledge that names more streams than this
        #: (``offsync.http.pull``); None: always send knowledge whole.
        self.digest_threshold: int | None = DIGEST_THRESHOLD_STREAMS
        self._http = Session(
            self.url,
            timeout=timeout,
            connect_timeout=connect_timeout,
            headers=headers,
            on_limit=self._server_limit,
        )

    def __repr__(self) -> str:
        return f"<HTTPTransport {self.url}>"

    def close(self) -> None:
        self._http.close()

    # -- retries -----------------------------------------------------------------------

    def _wait(self, attempt: int, failure: Retry, what: str) -> None:
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
            except Retry as failure:
                attempt += 1
                self._wait(attempt, failure, what)

    def _server_limit(self, limit: int) -> None:
        """The server accepts bundles of at most ``limit`` bytes: pack to that."""
        self.server_max_upload = limit
        self.max_bundle_bytes = min(self._wanted_bundle_bytes, limit)

    def _foreign(self, what: str, status: int | None = None) -> UnverifiedAnswerError:
        return self._http.foreign(what, status)

    # -- knowledge ---------------------------------------------------------------------

    def knowledge(self) -> Knowledge:
        """What the server holds, from its signed receipt (and its upload limit)."""
        response = self._retrying(
            "reading knowledge", lambda: self._http.request("GET", "knowledge")
        )
        if response.status_code != 200 or media(response) != RECEIPT_MEDIA_TYPE:
            raise self._foreign(
                f"answered {response.status_code} ({media(response) or 'no type'}) "
                "instead of a receipt",
                response.status_code,
            )
        limit = response.headers.get(H_MAX_UPLOAD, "")
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

    def blob_peer(self) -> HTTPBlobPeer:
        """The server's blobs, for the lane that runs after the bundle round."""
        from .httpblobs import HTTPBlobPeer

        return HTTPBlobPeer(self)

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
        forgotten = 0
        while True:
            try:
                if len(bundle) <= self.chunk_bytes:
                    response = self._upload_whole(bundle, bundle_id)
                else:
                    response = self._upload_chunked(bundle, bundle_id)
                answered = self._until_applied(response, bundle, bundle_id)
                if answered is None:  # the server no longer holds it: upload it again
                    forgotten += 1
                    if forgotten > 3:
                        raise TransportError(f"{self.url} keeps forgetting upload {bundle_id}")
                    continue
                return self._delivered(answered, bundle_id, carried)
            except UnverifiedAnswerError as exc:
                # A 413 that is not the server's: something between limits bodies.
                if exc.status != 413 or self.chunk_bytes <= MIN_CHUNK_BYTES:
                    raise
                self.chunk_bytes = max(MIN_CHUNK_BYTES, min(self.chunk_bytes, len(bundle)) // 2)

    def _until_applied(
        self, response: httpx.Response, bundle: bytes, bundle_id: str
    ) -> httpx.Response | None:
        """A spooling server answers 202 ``held``: the bundle is held durably but not
        applied, so not delivered. Ask again (``bytes */TOTAL``, no body) after its
        Retry-After until it answers applied (with a receipt) or refuses; None if it
        says it holds less than the bundle (it forgot it: upload again)."""
        asked, total = 0, len(bundle)
        while response.status_code == 202:
            answer = self._http.json(response, 202, "the state of an upload")
            progress = self._http.body(UploadProgress, answer, _NO_COUNT, None)
            if progress.status != "held" or progress.id != bundle_id:
                return None
            asked += 1
            if asked > MAX_HELD_ASKS:
                raise RetryableTransportError(
                    f"{self.url} holds bundle {bundle_id[:16]} but has not applied it after "
                    f"{MAX_HELD_ASKS} asks; it stays held there: sync again later"
                )
            wait = retry_after(response.headers.get("retry-after"))
            self.sleep(min(self.max_retry_after, 1.0 if wait is None else wait))
            response = self._retrying(
                "asking after a held upload",
                lambda: self._request_chunk(bundle_id, bundle, total, total),
            )
        return response

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
            lambda: self._http.request(
                "PUT",
                f"bundles/{bundle_id}",
                content=bundle,
                headers={"Content-Type": OCTET_STREAM},
            ),
        )
        if self.progress:
            self.progress(bytes.fromhex(bundle_id), len(bundle), len(bundle))
        return response

    def _delivered(
        self, response: httpx.Response, bundle_id: str, carried: Knowledge | None
    ) -> dict[str, Any]:
        """The answer to an upload, if it proves delivery; else UnverifiedAnswerError."""
        answer = self._http.json(response, 200, "the answer to an upload")
        without = "answered an upload without a receipt for it"
        result = self._http.body(UploadResult, answer, without, 200)
        if result.id != bundle_id:
            raise self._foreign(without, 200)
        try:
            data = base64.b64decode(result.receipt, validate=True)
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
        self.uploads.append(answer)
        return answer

    def _received(self, response: httpx.Response, status: int, total: int) -> int:
        """The ``received`` count of a chunk's answer (202, or 409: resume there)."""
        answer = self._http.json(response, status, "the state of an upload")
        received: int | None
        if status == 202:
            received = self._http.body(UploadProgress, answer, _NO_COUNT, None).received
        else:  # 409: another uploader got ahead; the refusal says where to go on
            received = self._http.body(ErrorBody, answer, _NO_COUNT, None).received
        return self._count(received, total)

    def _count(self, received: int | None, total: int) -> int:
        if received is None or not 0 <= received <= total:
            raise self._foreign(_NO_COUNT)
        return received

    def _upload_chunked(self, bundle: bytes, bundle_id: str) -> httpx.Response:
        total, attempt, conflicts = len(bundle), 0, 0
        key = bytes.fromhex(bundle_id)
        while True:
            try:
                offset = self._resume_at(bundle, bundle_id)
                if not isinstance(offset, int):
                    return offset  # the server had it all: its answer
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
                    if response.status_code == 202 and not _held(response):
                        offset = self._received(response, 202, total)
                        continue
                    return response
            except Retry as failure:
                attempt += 1
                self._wait(attempt, failure, "uploading a bundle")

    def _resume_at(self, bundle: bytes, bundle_id: str) -> int | httpx.Response:
        """Where the server's copy of an upload ends (or its answer, if it holds all)."""
        total = len(bundle)
        answer = self._http.json(
            self._http.request("GET", f"bundles/{bundle_id}"), 200, "the state of an upload"
        )
        state = self._http.body(UploadStatus, answer, _NO_COUNT, None)
        if state.complete:
            # Applied recently: a commit asks for the answer (a worker that does not
            # remember it says 202 with what it holds, and we go on).
            response = self._request_chunk(bundle_id, bundle, total, total)
            if response.status_code != 202 or _held(response):
                return response
            return self._received(response, 202, total)
        offset = self._count(state.received, total)
        if state.total not in (None, total):
            offset = 0  # cannot happen for a true hash; restart rather than fail
        return offset

    def _request_chunk(self, bundle_id: str, bundle: bytes, first: int, end: int) -> httpx.Response:
        """PUT ``bundle[first:end]``; with nothing left to send, ask the server to apply."""
        span = content_range(first, end, len(bundle)).header()
        return self._http.request(
            "PUT",
            f"bundles/{bundle_id}",
            allow=frozenset({409}),
            content=bundle[first:end],
            headers={"Content-Type": OCTET_STREAM, "Content-Range": span},
        )

    # -- receiving ---------------------------------------------------------------------

    def receive(self, knowledge: Knowledge) -> Iterator[bytes]:
        """Pull what the server holds beyond ``knowledge``, one bundle at a time.

        A broken stream is pulled again from where it broke: the ranges of the bundles
        already handed over are added to ``knowledge`` for the next request. Each
        request is signed over a fresh challenge of the server's.
        """
        since, attempt = knowledge, 0
        server = self._server()
        self.receipt_current = False
        known, received = self._pulled_receipt, 0
        while True:
            before, more = since, None
            self.pulls += 1
            try:
                with self._pull(server, since) as answer:
                    first = True
                    for event in self._http.frames(answer, self.limits.max_bundle_bytes):
                        if isinstance(event, EndOfAnswer):
                            more = event.more
                            break
                        since = since | self._ranges(event.data, server, first)
                        first = False
                        received += 1
                        yield event.data
            except Retry as failure:
                if since != before:
                    attempt = 0  # progress: what is left gets its attempts again
                attempt += 1
                self._wait(attempt, failure, "pulling")
                continue
            assert more is not None  # _frames ends with the end marker or raises
            if not more:
                # No bundle for a pull that named our last receipt of the server: it is
                # still the whole truth (spec-v3 §15.3), no need to ask /knowledge.
                self.receipt_current = received == 0 and known is not None
                return
            if since == before:
                raise TransportError(f"{self.url} says more is available but sent nothing new")
            attempt = 0

    @contextmanager
    def _pull(self, server: bytes, since: Knowledge) -> Iterator[httpx.Response]:
        """A pull request for what lies beyond ``since``, signed; its answer's stream.

        A site with much knowledge sends group digests first (``offsync.http.pull``);
        a ``409`` lists the groups that differ, and the request is sent again (over a
        fresh challenge) with those groups' knowledge in detail."""
        known = self._pulled_receipt
        asked = PullRequest.make(
            since,
            self._wanted_bundle_bytes,
            encrypt=self.pull_encrypted,
            receipt_known=known,
            relays_for=self.relays_for,
            digests=self.digest_threshold is not None
            and since.stream_count() > self.digest_threshold,
        )
        while True:
            body = asked.encode()
            headers = sign_request(self.identity, server, "pull", body, self._http.challenge())
            headers["Content-Type"] = MSGPACK_MEDIA_TYPE
            with self._http.stream(
                "POST", "pull", allow=frozenset({409}), content=body, headers=headers
            ) as r:
                if r.status_code == 409 and asked.digests is not None and not asked.detail:
                    if media(r) != GROUPS_MEDIA_TYPE:
                        raise self._foreign(f"answered a pull with 409 ({media(r) or 'no type'})")
                    try:
                        groups = decode_groups(
                            self._http.read_bounded(r, self.limits.max_header_bytes), self.limits
                        )
                    except RemoteDataError as exc:
                        raise self._foreign(f"answered a pull with bad groups ({exc})") from exc
                    self.digest_rounds += 1
                    asked = asked.with_detail(since, groups)
                    continue
                if r.status_code != 200 or media(r) != BUNDLES_MEDIA_TYPE:
                    raise self._foreign(
                        f"answered a pull with {r.status_code} ({media(r) or 'no type'})",
                        r.status_code,
                    )
                yield r
                return

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
        if first:
            # What the server remembers it told us (``receipt_known`` of the next pull).
            self._pulled_receipt = hash32(header.receipts[0].encode())
        if self.last_receipt is None or header.receipts[0].created >= self.last_receipt.created:
            self.last_receipt = header.receipts[0]
        return header.ranges


_NO_COUNT = "sent an upload state without a byte count"
#: Times an upload held by a spooling server is asked after before giving up for now.
MAX_HELD_ASKS = 600


def _held(response: httpx.Response) -> bool:
    """A 202 that says the whole bundle is held (a spooling server), not a chunk's."""
    if media(response) != JSON_MEDIA_TYPE:
        return False
    try:
        return bool(json.loads(response.content).get("status") == "held")
    except (ValueError, AttributeError):
        return False
