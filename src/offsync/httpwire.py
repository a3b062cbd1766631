"""The bytes of the HTTP protocol, shared by the server and the client.

``offsync.server`` and ``offsync.transports.http`` both import this module, which uses
no HTTP library and reads no clock (times are passed in), so both sides build the same
bytes (docs/http.md is the reference, docs/spec.md section 14 fixes the bytes).

Pull responses are a stream of frames: a 4-byte big-endian length, then that many bytes
of one bundle. A length of ``END_OF_STREAM`` ends a complete answer; ``MORE_AVAILABLE``
ends an answer cut at the server's size limit (pull again with the grown knowledge). A
stream that stops without either was broken in transit.

A signed request answers a challenge the server issued (``GET /challenge``) and carries
three headers::

    Offsync-Site       the requesting site's public key, hex
    Offsync-Challenge  the server's challenge, hex, as it was handed out
    Offsync-Signature  ed25519 signature, hex, over request_message(...)

The signed message binds the server's public key (a request for one server cannot be
replayed at another), the endpoint, the challenge and a hash of the body. Replay
protection rests on the server alone, never on the site's wall clock (field PCs are
days off): a challenge carries the server's own time and a MAC under a key only the
server can derive (``challenge_key``), so any worker of a deployment checks its age by
its own clock without storing anything; the server records a challenge as used only
once the request's signature verified, in its store (``Store.record_nonce``), so it is
single-use across every worker that shares the store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .encoding import packb, unpack_strict
from .errors import BundleFormatError, SignatureError
from .identity import Identity, verify_signature
from .knowledge import Knowledge
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "BUNDLES_MEDIA_TYPE",
    "CHALLENGE_BYTES",
    "END_OF_STREAM",
    "MAX_CHALLENGE_BYTES",
    "MIN_CHALLENGE_BYTES",
    "MORE_AVAILABLE",
    "PROTOCOL",
    "RECEIPT_MEDIA_TYPE",
    "REQUEST_DOMAIN",
    "Challenges",
    "SignedRequest",
    "challenge_key",
    "decode_pull_request",
    "encode_pull_request",
    "request_message",
    "sign_request",
    "verify_request",
]

PROTOCOL = "offsync-http/2"
BUNDLES_MEDIA_TYPE = "application/x-offsync-bundles"
RECEIPT_MEDIA_TYPE = "application/x-offsync-receipt"
END_OF_STREAM = 0
MORE_AVAILABLE = 0xFFFFFFFF
#: Smallest ``max_bytes`` a pull may ask for.
MIN_PULL_BUNDLE_BYTES = 64 * 1024
REQUEST_DOMAIN = b"offsync/http-request/v2\x00"
#: Signed (deterministically) by the server's key to derive its challenge MAC key.
CHALLENGE_KEY_DOMAIN = b"offsync/http-challenge-key/v1\x00"
#: A challenge of this server: issued ms (8 bytes) || random (16) || MAC (16).
CHALLENGE_BYTES = 40
#: What a client accepts as a challenge (opaque to it; another server may differ).
MIN_CHALLENGE_BYTES, MAX_CHALLENGE_BYTES = 16, 64
_RANDOM_BYTES = 16
_MAC_BYTES = 16
_MAC_PERSON = b"offsync-chal/v1"
H_SITE = "offsync-site"
H_CHALLENGE = "offsync-challenge"
H_SIGNATURE = "offsync-signature"


def request_message(
    server: bytes, endpoint: str, site: bytes, challenge: bytes, body: bytes
) -> bytes:
    """The exact bytes a site signs for one request."""
    body_hash = hashlib.blake2b(body, digest_size=32).digest()
    return REQUEST_DOMAIN + packb([server, endpoint, site, challenge, body_hash])


def sign_request(
    identity: Identity, server: bytes, endpoint: str, body: bytes, challenge: bytes
) -> dict[str, str]:
    """The headers that authenticate ``body`` sent to ``endpoint`` of ``server``, in
    answer to ``challenge`` (from the server's ``GET /challenge``)."""
    sig = identity.sign(request_message(server, endpoint, identity.public_key, challenge, body))
    return {
        H_SITE: identity.public_key.hex(),
        H_CHALLENGE: challenge.hex(),
        H_SIGNATURE: sig.hex(),
    }


def challenge_key(identity: Identity) -> bytes:
    """The MAC key of a server's challenges, derived from its identity.

    Ed25519 signatures are deterministic, so every process holding the server's key
    derives the same secret (the workers of a centre check each other's challenges),
    nobody without it can, and no secret is kept at rest or raced for at first start.
    The signed message is never published.
    """
    return hashlib.blake2b(identity.sign(CHALLENGE_KEY_DOMAIN), digest_size=32).digest()


class Challenges:
    """Issues and checks one server's challenges; pure (the caller passes the time).

    A challenge is valid for ``lifetime_ms`` after it was issued, by the clock of the
    worker that checks it (workers of one deployment must agree on the time within the
    lifetime; sites' clocks do not matter). ``check`` does not make it single-use: the
    server records it (``Store.record_nonce``) once the request is authenticated, until
    ``forget_after`` of it.
    """

    def __init__(self, key: bytes, server: bytes, lifetime_ms: int) -> None:
        if len(key) != 32 or lifetime_ms < 1:
            raise ValueError("a challenge key is 32 bytes and the lifetime positive")
        self._key, self.server, self.lifetime_ms = key, server, lifetime_ms

    def _mac(self, issued_and_random: bytes) -> bytes:
        return hashlib.blake2b(
            self.server + issued_and_random,
            key=self._key,
            digest_size=_MAC_BYTES,
            person=_MAC_PERSON,
        ).digest()

    def issue(self, now_ms: int, random: bytes | None = None) -> bytes:
        """A fresh challenge stamped with ``now_ms``."""
        head = max(0, now_ms).to_bytes(8, "big") + (random or os.urandom(_RANDOM_BYTES))
        return head + self._mac(head)

    def check(self, challenge: bytes, now_ms: int) -> int:
        """Raise ``SignatureError`` unless ``challenge`` is ours and fresh; return the
        time after which a record of its use may be forgotten."""
        if len(challenge) != CHALLENGE_BYTES:
            raise SignatureError("not a challenge of this server: fetch one (GET /challenge)")
        head, mac = challenge[:-_MAC_BYTES], challenge[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(head)):
            raise SignatureError(
                "not a challenge of this server (or its key changed): fetch one (GET /challenge)"
            )
        issued = int.from_bytes(head[:8], "big")
        if now_ms - issued > self.lifetime_ms:
            raise SignatureError(
                f"challenge expired ({(now_ms - issued) // 1000} s old, lifetime "
                f"{self.lifetime_ms // 1000} s): fetch a new one"
            )
        if issued - now_ms > self.lifetime_ms:
            raise SignatureError(
                "challenge issued in the future: the server's workers disagree on the time"
            )
        # Any worker accepts it until issued + lifetime by its own clock; a record kept a
        # lifetime longer outlives that at every worker within a lifetime of this one.
        return issued + 2 * self.lifetime_ms


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """An authenticated request: who signed it and the challenge it used."""

    site: bytes
    challenge: bytes
    #: When the record of the challenge's use may be forgotten (server ms).
    forget_after: int


_HEX = re.compile(r"(?:[0-9a-f]{2})+")


def verify_request(
    headers: Mapping[str, str],
    *,
    server: bytes,
    endpoint: str,
    body: bytes,
    challenges: Challenges,
    now_ms: int,
) -> SignedRequest:
    """Check a signed request's form, challenge and signature, cheapest first; raise
    ``SignatureError`` saying why. Records nothing: the caller records the challenge
    as used (``Store.record_nonce``) once it decided to serve the request."""
    try:
        raw = [headers[H_SITE], headers[H_CHALLENGE], headers[H_SIGNATURE]]
    except KeyError as exc:
        raise SignatureError(
            "request is not signed (Offsync-Site, -Challenge and -Signature headers; "
            "fetch a challenge with GET /challenge)"
        ) from exc
    # Strict forms (docs/spec.md section 14): lowercase hex of the right lengths.
    if not all(_HEX.fullmatch(v) for v in raw):
        raise SignatureError("signed-request headers are malformed")
    site, challenge, sig = (bytes.fromhex(v) for v in raw)
    if len(site) != 32 or len(sig) != 64:
        raise SignatureError("signed-request headers have the wrong lengths")
    forget_after = challenges.check(challenge, now_ms)
    verify_signature(site, request_message(server, endpoint, site, challenge, body), sig)
    return SignedRequest(site, challenge, forget_after)


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
