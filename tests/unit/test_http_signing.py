"""Signed HTTP requests: strict header forms and the server's challenges, checked before
anything else is done, with no clock of the site's involved."""

from __future__ import annotations

import pytest

from offsync import Identity
from offsync.errors import SignatureError
from offsync.http.signing import (
    CHALLENGE_BYTES,
    Challenges,
    challenge_key,
    parse_challenge,
    sign_request,
    verify_request,
)
from offsync.http.wire import H_CHALLENGE, H_SIGNATURE, H_SITE

SITE = Identity(b"\x01" * 32, label="site")
CENTRE = Identity(b"\x02" * 32, label="centre")
SERVER = CENTRE.public_key
NOW = 1_700_000_000_000
LIFETIME = 60_000
CHALLENGES = Challenges(challenge_key(CENTRE), SERVER, LIFETIME)


def _verify(headers: dict[str, str], now_ms: int = NOW, body: bytes = b"x") -> bytes:
    signed = verify_request(
        headers, server=SERVER, endpoint="pull", body=body, challenges=CHALLENGES, now_ms=now_ms
    )
    return signed.site


def _signed(
    issued: int = NOW, body: bytes = b"x", challenges: Challenges = CHALLENGES
) -> dict[str, str]:
    return sign_request(SITE, SERVER, "pull", body, challenges.issue(issued))


def test_a_well_formed_request_verifies() -> None:
    challenge = CHALLENGES.issue(NOW)
    assert len(challenge) == CHALLENGE_BYTES
    signed = verify_request(
        sign_request(SITE, SERVER, "pull", b"x", challenge),
        server=SERVER,
        endpoint="pull",
        body=b"x",
        challenges=CHALLENGES,
        now_ms=NOW + 1000,
    )
    assert (signed.site, signed.challenge) == (SITE.public_key, challenge)
    # Recorded as used until every worker (clocks within a lifetime) stops accepting it.
    assert signed.forget_after == NOW + 2 * LIFETIME


def test_the_challenge_key_is_the_servers_own_and_stable() -> None:
    """Every worker holding the centre's key derives the same MAC key; nobody else can."""
    assert challenge_key(CENTRE) == challenge_key(Identity(b"\x02" * 32))
    assert challenge_key(CENTRE) != challenge_key(SITE)


@pytest.mark.parametrize("age", [0, LIFETIME, -LIFETIME])
def test_a_challenge_is_good_for_its_lifetime_by_the_servers_clock(age: int) -> None:
    assert _verify(_signed(issued=NOW - age)) == SITE.public_key


@pytest.mark.parametrize(
    ("age", "words"), [(LIFETIME + 1, "expired"), (-LIFETIME - 1, "in the future")]
)
def test_a_challenge_outside_its_lifetime_is_refused(age: int, words: str) -> None:
    with pytest.raises(SignatureError, match=words):
        _verify(_signed(issued=NOW - age))


def test_a_challenge_of_another_server_or_forged_is_refused() -> None:
    other = Challenges(challenge_key(SITE), SERVER, LIFETIME)
    with pytest.raises(SignatureError, match="not a challenge of this server"):
        _verify(_signed(challenges=other))
    headers = _signed()
    forged = bytearray(bytes.fromhex(headers[H_CHALLENGE]))
    forged[3] ^= 1  # a later issue time, say
    headers[H_CHALLENGE] = bytes(forged).hex()
    with pytest.raises(SignatureError, match="not a challenge of this server"):
        _verify(headers)


def test_the_signature_covers_body_endpoint_server_and_challenge() -> None:
    with pytest.raises(SignatureError):
        _verify(_signed(body=b"x"), body=b"y")
    challenge = CHALLENGES.issue(NOW)
    for headers in (
        sign_request(SITE, SERVER, "knowledge", b"x", challenge),
        sign_request(SITE, SITE.public_key, "pull", b"x", challenge),
    ):
        with pytest.raises(SignatureError):
            _verify(headers)
    swapped = sign_request(SITE, SERVER, "pull", b"x", challenge)
    swapped[H_CHALLENGE] = CHALLENGES.issue(NOW).hex()  # a valid challenge, not the signed one
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(swapped)


def test_verifying_records_nothing() -> None:
    """Single use is the store's (``Store.record_nonce``, after authorisation)."""
    headers = _signed()
    assert _verify(headers) == _verify(headers) == SITE.public_key


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (H_SITE, "AB" * 32),
        (H_SITE, "ab" * 31),
        (H_CHALLENGE, "zz"),
        (H_CHALLENGE, ""),
        (H_CHALLENGE, "ab" * CHALLENGE_BYTES + "a"),
        (H_CHALLENGE, "ab" * (CHALLENGE_BYTES - 1)),
        (H_SIGNATURE, "ab cd"),
        (H_SIGNATURE, "ab" * 63),
    ],
)
def test_malformed_headers_are_refused_as_signature_errors(header: str, value: str) -> None:
    headers = _signed()
    headers[header] = value
    with pytest.raises(SignatureError):
        _verify(headers)


@pytest.mark.parametrize("header", [H_SITE, H_CHALLENGE, H_SIGNATURE])
def test_missing_header_is_refused(header: str) -> None:
    headers = _signed()
    del headers[header]
    with pytest.raises(SignatureError, match="not signed"):
        _verify(headers)


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("ab" * 16, True),
        ("ab" * 64, True),
        ("ab" * CHALLENGE_BYTES, True),
        ("ab" * 15, False),
        ("ab" * 65, False),
        ("AB" * 20, False),
        ("abc", False),
        ("", False),
        (40, False),
        (None, False),
    ],
)
def test_a_client_takes_any_challenge_of_16_to_64_hex_bytes(value: object, taken: bool) -> None:
    """Opaque to the client (another server may differ), but bounded and well formed."""
    got = parse_challenge(value)
    assert (got is not None) == taken
    if taken:
        assert got == bytes.fromhex(str(value))
