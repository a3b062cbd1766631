"""Signed requests over the server's challenges (docs/spec.md §15.1).

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

from ..encoding import packb
from ..errors import SignatureError, UsageError
from ..identity import Identity, verify_signature
from .wire import H_CHALLENGE, H_SIGNATURE, H_SITE

__all__ = [
    "CHALLENGE_BYTES",
    "CHALLENGE_KEY_DOMAIN",
    "MAX_CHALLENGE_BYTES",
    "MIN_CHALLENGE_BYTES",
    "REQUEST_DOMAIN",
    "Challenges",
    "SignedRequest",
    "blob_get_message",
    "challenge_key",
    "parse_challenge",
    "request_message",
    "sign_request",
    "verify_request",
]

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


def request_message(
    server: bytes, endpoint: str, site: bytes, challenge: bytes, body: bytes
) -> bytes:
    """The exact bytes a site signs for one request."""
    body_hash = hashlib.blake2b(body, digest_size=32).digest()
    return REQUEST_DOMAIN + packb([server, endpoint, site, challenge, body_hash])


def blob_get_message(digest_hex: str, range_header: str) -> bytes:
    """What a ``GET /blobs/{hash}`` signs as its body: the blob and the range asked
    (a GET has no body; this binds the signature to what is read)."""
    return f"GET /blobs/{digest_hex} {range_header}".encode("ascii")


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
            raise UsageError("a challenge key is 32 bytes and the lifetime positive")
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
    # Strict forms (docs/spec.md §15.1): lowercase hex of the right lengths.
    if not all(_HEX.fullmatch(v) for v in raw):
        raise SignatureError("signed-request headers are malformed")
    site, challenge, sig = (bytes.fromhex(v) for v in raw)
    if len(site) != 32 or len(sig) != 64:
        raise SignatureError("signed-request headers have the wrong lengths")
    forget_after = challenges.check(challenge, now_ms)
    verify_signature(site, request_message(server, endpoint, site, challenge, body), sig)
    return SignedRequest(site, challenge, forget_after)


def parse_challenge(value: object) -> bytes | None:
    """A challenge as a client receives it (hex of 16 to 64 bytes), or None."""
    if type(value) is not str or not _HEX.fullmatch(value):
        return None
    if not MIN_CHALLENGE_BYTES <= len(value) // 2 <= MAX_CHALLENGE_BYTES:
        return None
    return bytes.fromhex(value)
