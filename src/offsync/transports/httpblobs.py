"""The client side of the blob lane over HTTP (``offsync.http.blobroutes``): an
``HTTPTransport``'s ``blob_peer()``, a ``BlobPeer`` for ``offsync.sync.blobs``.

Each request is retried like the transport's others (busy, broken link); a refusal
(``PeerRefusedError``: a corrupt blob, one the server's records do not reference)
ends that blob only, and ``sync_blobs`` goes on with the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..blobs import HASH_BYTES, BlobRef
from ..encoding import packb, unpack_strict
from ..errors import RemoteDataError
from ..http.bodies import BlobProgress, ErrorBody
from ..http.client import Retry, media
from ..http.ranges import content_range
from ..http.signing import blob_get_message, sign_request
from ..http.wire import MSGPACK_MEDIA_TYPE, OCTET_STREAM

if TYPE_CHECKING:
    import httpx

    from .http import HTTPTransport

__all__ = ["HTTPBlobPeer"]

_NO_COUNT = "answered a blob chunk without saying how much it holds"


class HTTPBlobPeer:
    """An offsync server's blobs, through one ``HTTPTransport`` (its session, identity,
    retries and server key). ``sent_bytes`` counts the chunk bytes put on the wire."""

    def __init__(self, transport: HTTPTransport) -> None:
        self.transport = transport
        self.chunk_bytes = transport.limits.blob_chunk_bytes
        self.sent_bytes = 0

    def held(self, hashes: list[bytes]) -> dict[bytes, int]:
        t = self.transport
        server = t._server()
        body = packb(hashes)

        def ask() -> httpx.Response:
            headers = sign_request(t.identity, server, "blobs-held", body, t._http.challenge())
            headers["Content-Type"] = MSGPACK_MEDIA_TYPE
            return t._http.request("POST", "blobs", content=body, headers=headers)

        response = t._retrying("asking which blobs the server holds", ask)
        if response.status_code != 200 or media(response) != MSGPACK_MEDIA_TYPE:
            raise t._foreign(f"answered {response.status_code} about blobs", response.status_code)
        try:
            value = unpack_strict(response.content, "held blobs")
        except RemoteDataError as exc:
            raise t._foreign("sent held blobs that are not msgpack") from exc
        asked, out = set(hashes), {}
        for item in value if type(value) is list else [None]:
            if (
                type(item) is not list
                or len(item) != 2
                or type(item[0]) is not bytes
                or len(item[0]) != HASH_BYTES
                or item[0] not in asked
                or type(item[1]) is not int
                or item[1] < 0
            ):
                raise t._foreign("sent held blobs that are not [hash, bytes] pairs asked for")
            out[item[0]] = item[1]
        return out

    def put_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        t = self.transport
        span = content_range(offset, offset + len(data), ref.size).header()

        def put() -> httpx.Response:
            self.sent_bytes += len(data)
            return t._http.request(
                "PUT",
                f"blobs/{ref.hex}",
                allow=frozenset({409}),
                content=data,
                headers={"Content-Type": OCTET_STREAM, "Content-Range": span},
            )

        response = t._retrying("uploading a blob chunk", put)
        answer = t._http.json(response, response.status_code, "the state of a blob")
        received: int | None
        if response.status_code == 409:
            received = t._http.body(ErrorBody, answer, _NO_COUNT, 409).received
        elif response.status_code in (200, 202):
            received = t._http.body(BlobProgress, answer, _NO_COUNT, None).received
        else:
            raise t._foreign(_NO_COUNT, response.status_code)
        if received is None or not 0 <= received <= ref.size:
            raise t._foreign(_NO_COUNT)
        return received

    def get_chunk(self, ref: BlobRef, offset: int, length: int) -> bytes:
        """The bytes asked, read as they stream: more than ``length`` is refused before
        it is held (a server cannot make the client hold more than one chunk)."""
        t = self.transport
        attempt = 0
        while True:
            try:
                return self._get_once(ref, offset, length)
            except Retry as failure:
                attempt += 1
                t._wait(attempt, failure, "fetching a blob chunk")

    def _get_once(self, ref: BlobRef, offset: int, length: int) -> bytes:
        t = self.transport
        server = t._server()
        wanted = f"bytes={offset}-{offset + length - 1}"
        message = blob_get_message(ref.hex, wanted)
        headers = sign_request(t.identity, server, "blob", message, t._http.challenge())
        headers["Range"] = wanted
        with t._http.stream("GET", f"blobs/{ref.hex}", headers=headers) as response:
            if response.status_code != 206 or media(response) != OCTET_STREAM:
                raise t._foreign(f"answered {response.status_code} for a blob range")
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > length:
                    raise t._foreign(f"sent more than the {length} bytes of a blob range asked")
        return bytes(data)
