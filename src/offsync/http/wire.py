"""Names both sides of the HTTP protocol agree on (docs/http.md)."""

from __future__ import annotations

import re

__all__ = [
    "BUNDLE_ID_PATTERN",
    "BUNDLES_MEDIA_TYPE",
    "GROUPS_MEDIA_TYPE",
    "H_CHALLENGE",
    "H_MAX_UPLOAD",
    "H_SIGNATURE",
    "H_SITE",
    "JSON_MEDIA_TYPE",
    "METRICS_MEDIA_TYPE",
    "MIN_PULL_BUNDLE_BYTES",
    "MSGPACK_MEDIA_TYPE",
    "OCTET_STREAM",
    "PROTOCOL",
    "RECEIPT_MEDIA_TYPE",
    "is_bundle_id",
]

PROTOCOL = "offsync-http/3"
BUNDLES_MEDIA_TYPE = "application/x-offsync-bundles"
RECEIPT_MEDIA_TYPE = "application/x-offsync-receipt"
#: A ``409`` answer to a pull: the groups whose knowledge digests differ (spec-v3 §15.2).
GROUPS_MEDIA_TYPE = "application/x-offsync-groups"
MSGPACK_MEDIA_TYPE = "application/x-msgpack"
JSON_MEDIA_TYPE = "application/json"
OCTET_STREAM = "application/octet-stream"
#: Prometheus' text format (``GET /metrics``; the version is a parameter of the type).
METRICS_MEDIA_TYPE = "text/plain"

#: The headers of a signed request (lower case, as HTTP libraries hand them over).
H_SITE = "offsync-site"
H_CHALLENGE = "offsync-challenge"
H_SIGNATURE = "offsync-signature"
#: The largest bundle a server accepts, announced with its receipt (``GET /knowledge``).
H_MAX_UPLOAD = "offsync-max-upload-bytes"

#: Smallest ``max_bytes`` a pull may ask for.
MIN_PULL_BUNDLE_BYTES = 64 * 1024

#: A bundle id: BLAKE2b-256 of its bytes, lowercase hex. ``[0-9]``, not ``\d`` (any
#: Unicode digit): the OpenAPI document states this pattern, and the server accepts
#: exactly what it matches.
BUNDLE_ID_PATTERN = "^[0-9a-f]{64}$"
_ID = re.compile(r"[0-9a-f]{64}")


def is_bundle_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None
