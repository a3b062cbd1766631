"""The bytes of the HTTP protocol: kept for importers, the code is in ``offsync.http``.

Sans-IO: no HTTP library, no clock. The names below were defined here before the HTTP
protocol became one package: signed requests and challenges (``offsync.http.signing``),
the pull request body (``offsync.http.bodies``), pull answer frames
(``offsync.http.frames``) and the protocol's names (``offsync.http.wire``).
"""

from __future__ import annotations

from .http.bodies import decode_pull_request, encode_pull_request
from .http.frames import END_OF_STREAM, MORE_AVAILABLE
from .http.signing import (
    CHALLENGE_BYTES,
    CHALLENGE_KEY_DOMAIN,
    MAX_CHALLENGE_BYTES,
    MIN_CHALLENGE_BYTES,
    REQUEST_DOMAIN,
    Challenges,
    SignedRequest,
    challenge_key,
    request_message,
    sign_request,
    verify_request,
)
from .http.wire import (
    BUNDLES_MEDIA_TYPE,
    H_CHALLENGE,
    H_SIGNATURE,
    H_SITE,
    MIN_PULL_BUNDLE_BYTES,
    PROTOCOL,
    RECEIPT_MEDIA_TYPE,
)

__all__ = [
    "BUNDLES_MEDIA_TYPE",
    "CHALLENGE_BYTES",
    "CHALLENGE_KEY_DOMAIN",
    "END_OF_STREAM",
    "H_CHALLENGE",
    "H_SIGNATURE",
    "H_SITE",
    "MAX_CHALLENGE_BYTES",
    "MIN_CHALLENGE_BYTES",
    "MIN_PULL_BUNDLE_BYTES",
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
