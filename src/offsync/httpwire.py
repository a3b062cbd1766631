"""The bytes of the HTTP protocol, shared by the server and the client.

``offsync.server`` and ``offsync.transports.http`` both import this module, which uses
no HTTP library, so both sides build the same bytes (docs/http.md is the reference).

Pull responses are a stream of frames: a 4-byte big-endian length, then that many bytes
of one bundle. A length of ``END_OF_STREAM`` ends a complete answer; ``MORE_AVAILABLE``
ends an answer cut at the server's size limit (pull again with the grown knowledge). A
stream that stops without either was broken in transit.

A signed request carries four headers::

    Offsync-Site       the requesting site's public key, hex
    Offsync-Time       its wall clock, milliseconds since the epoch
    Offsync-Nonce      16 random bytes, hex
    Offsync-Signature  ed25519 signature, hex, over request_message(...)

The signed message binds the server's public key (a request for one server cannot be
replayed at another), the endpoint, the time, the nonce and a hash of the body. The
server refuses times outside its replay window and nonces it has already seen within
that window.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping

from .clock import MAX_HLC
from .encoding import packb, unpack_strict
from .errors import BundleFormatError, SignatureError
from .identity import Identity, verify_signature
from .knowledge import Knowledge
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "BUNDLES_MEDIA_TYPE",
    "END_OF_STREAM",
    "MORE_AVAILABLE",
    "NONCE_BYTES",
    "PROTOCOL",
    "RECEIPT_MEDIA_TYPE",
    "REQUEST_DOMAIN",
    "NonceCache",
    "decode_pull_request",
    "encode_pull_request",
    "request_message",
    "sign_request",
    "verify_request",
]

PROTOCOL = "offsync-http/1"
BUNDLES_MEDIA_TYPE = "application/x-offsync-bundles"
RECEIPT_MEDIA_TYPE = "application/x-offsync-receipt"
END_OF_STREAM = 0
MORE_AVAILABLE = 0xFFFFFFFF
#: Smallest ``max_bytes`` a pull may ask for.
MIN_PULL_BUNDLE_BYTES = 64 * 1024
REQUEST_DOMAIN = b"offsync/http-request/v1\x00"
NONCE_BYTES = 16
H_SITE = "offsync-site"
H_TIME = "offsync-time"
H_NONCE = "offsync-nonce"
H_SIGNATURE = "offsync-signature"


def request_message(
    server: bytes, endpoint: str, site: bytes, time_ms: int, nonce: bytes, body: bytes
) -> bytes:
    """The exact bytes a site signs for one request."""
    body_hash = hashlib.blake2b(body, digest_size=32).digest()
    return REQUEST_DOMAIN + packb([server, endpoint, site, time_ms, nonce, body_hash])


def sign_request(
    identity: Identity,
    server: bytes,
    endpoint: str,
    body: bytes,
    *,
    time_ms: int | None = None,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """The headers that authenticate ``body`` sent to ``endpoint`` of ``server``."""
    t = int(time.time() * 1000) if time_ms is None else time_ms
    n = os.urandom(NONCE_BYTES) if nonce is None else nonce
    sig = identity.sign(request_message(server, endpoint, identity.public_key, t, n, body))
    return {
        H_SITE: identity.public_key.hex(),
        H_TIME: str(t),
        H_NONCE: n.hex(),
        H_SIGNATURE: sig.hex(),
    }


class NonceCache:
    """Nonces seen within the replay window, oldest first, bounded in number.

    Only requests whose time lies within the window are accepted, so a nonce need be
    remembered only until its request's time leaves the window. A server restart forgets
    the cache; the window bounds what can be replayed then (pulls are read-only).
    """

    def __init__(self, window_ms: int, max_entries: int = 100_000) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[bytes, bytes], int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def _prune(self, now_ms: int) -> None:
        while self._seen:
            key, expiry = next(iter(self._seen.items()))
            if expiry >= now_ms:
                break
            del self._seen[key]

    def full(self, now_ms: int) -> bool:
        """True when no new nonce can be remembered (the server should answer 503)."""
        self._prune(now_ms)
        return len(self._seen) >= self.max_entries

    def add(self, site: bytes, nonce: bytes, now_ms: int) -> bool:
        """Remember a nonce; False if it was seen already (a replay) or the cache is full."""
        self._prune(now_ms)
        if (site, nonce) in self._seen or len(self._seen) >= self.max_entries:
            return False
        # A request with time t is accepted until now > t + window, and t <= now + window,
        # so now + 2 * window outlives it; and expiries stay in insertion order.
        self._seen[(site, nonce)] = now_ms + 2 * self.window_ms
        return True


_HEX = re.compile(r"(?:[0-9a-f]{2})+")
_MS = re.compile(r"[0-9]{1,19}")


def verify_request(
    headers: Mapping[str, str],
    *,
    server: bytes,
    endpoint: str,
    body: bytes,
    now_ms: int,
    nonces: NonceCache,
) -> bytes:
    """Check a signed request; return the site key or raise ``SignatureError`` saying why."""
    try:
        raw = [headers[H_SITE], headers[H_TIME], headers[H_NONCE], headers[H_SIGNATURE]]
    except KeyError as exc:
        raise SignatureError(
            "request is not signed (Offsync-Site, -Time, -Nonce and -Signature headers)"
        ) from exc
    # Strict forms (docs/spec.md section 14): lowercase hex, decimal ms below 2^63.
    if (
        not (
            _HEX.fullmatch(raw[0])
            and _MS.fullmatch(raw[1])
            and _HEX.fullmatch(raw[2])
            and _HEX.fullmatch(raw[3])
        )
        or int(raw[1]) > MAX_HLC
    ):
        raise SignatureError("signed-request headers are malformed")
    site, nonce, sig = bytes.fromhex(raw[0]), bytes.fromhex(raw[2]), bytes.fromhex(raw[3])
    time_ms = int(raw[1])
    if len(site) != 32 or len(nonce) != NONCE_BYTES or len(sig) != 64:
        raise SignatureError("signed-request headers have the wrong lengths")
    verify_signature(site, request_message(server, endpoint, site, time_ms, nonce, body), sig)
    if abs(now_ms - time_ms) > nonces.window_ms:
        raise SignatureError(
            f"request time is {abs(now_ms - time_ms) // 1000} s away from the server's clock "
            f"(window {nonces.window_ms // 1000} s): check the site's clock"
        )
    if not nonces.add(site, nonce, now_ms):
        raise SignatureError("replayed request (nonce already used)")
    return site


def encode_pull_request(since: Knowledge, max_bytes: int, encrypt: bool) -> bytes:
    """The body of ``POST /pull``: a canonical msgpack map."""
    return packb({"encrypt": encrypt, "knowledge": since.to_wire(), "max_bytes": max_bytes})


def decode_pull_request(
    body: bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[Knowledge, int, bool]:
    """Parse a pull request body (untrusted): ``(knowledge, max_bytes, encrypt)``."""
    value = unpack_strict(body, "pull request")
    if type(value) is not dict or set(value) != {"encrypt", "knowledge", "max_bytes"}:
        raise BundleFormatError("a pull request is a map of encrypt, knowledge and max_bytes")
    max_bytes, encrypt = value["max_bytes"], value["encrypt"]
    if type(max_bytes) is not int or not MIN_PULL_BUNDLE_BYTES <= max_bytes < 1 << 63:
        raise BundleFormatError(f"pull request max_bytes must be at least {MIN_PULL_BUNDLE_BYTES}")
    if type(encrypt) is not bool:
        raise BundleFormatError("pull request encrypt must be a boolean")
    return Knowledge.from_wire(value["knowledge"], limits), max_bytes, encrypt
