"""Signed HTTP requests: strict header forms, checked before anything else is done."""

from __future__ import annotations

import pytest

from offsync import Identity
from offsync.errors import SignatureError
from offsync.httpwire import (
    H_NONCE,
    H_SIGNATURE,
    H_SITE,
    H_TIME,
    NonceCache,
    sign_request,
    verify_request,
)

SITE = Identity(b"\x01" * 32, label="site")
SERVER = Identity(b"\x02" * 32, label="centre").public_key
NOW = 1_700_000_000_000


def _verify(headers: dict[str, str]) -> bytes:
    return verify_request(
        headers, server=SERVER, endpoint="/pull", body=b"x", now_ms=NOW, nonces=NonceCache(60_000)
    )


def test_a_well_formed_request_verifies() -> None:
    assert _verify(sign_request(SITE, SERVER, "/pull", b"x", time_ms=NOW)) == SITE.public_key


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (H_TIME, str(1 << 64)),  # once an OverflowError (a 500) before the signature check
        (H_TIME, str(1 << 63)),
        (H_TIME, "+1700000000000"),
        (H_TIME, "1_700_000_000_000"),
        (H_TIME, " 1700000000000"),
        (H_TIME, "-1"),
        (H_TIME, ""),
        (H_SITE, "AB" * 32),
        (H_NONCE, "zz"),
        (H_SIGNATURE, "ab cd"),
    ],
)
def test_malformed_headers_are_refused_as_signature_errors(header: str, value: str) -> None:
    headers = sign_request(SITE, SERVER, "/pull", b"x", time_ms=NOW)
    headers[header] = value
    with pytest.raises(SignatureError):
        _verify(headers)


def test_missing_header_is_refused() -> None:
    headers = sign_request(SITE, SERVER, "/pull", b"x", time_ms=NOW)
    del headers[H_NONCE]
    with pytest.raises(SignatureError, match="not signed"):
        _verify(headers)
