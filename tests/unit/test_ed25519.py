"""Signatures made and checked in place (libsodium's detached form) are PyNaCl's."""

from __future__ import annotations

import nacl.signing
import pytest

from offsync import ed25519
from offsync.errors import SignatureError
from offsync.identity import Identity, verify_signature

SEED = bytes(range(32))
MESSAGES = [b"", b"x", bytes(range(256)) * 300]


@pytest.mark.parametrize("detached", [True, False])
def test_signatures_are_pynacl_s_and_check_in_place(
    monkeypatch: pytest.MonkeyPatch, detached: bool
) -> None:
    if not detached:
        monkeypatch.setattr(ed25519, "_FUNCTIONS", None)  # another build of PyNaCl
    else:
        assert ed25519.DETACHED  # this one exports the detached functions
    key = nacl.signing.SigningKey(SEED)
    site = Identity(SEED)
    for message in MESSAGES:
        sig = site.sign(message)
        assert sig == key.sign(message).signature
        verify_signature(site.public_key, message, sig)
        framed = message + sig  # a bundle's layout: the signature after what it covers
        verify_signature(site.public_key, framed, framed[len(message) :], len(message))
        with pytest.raises(SignatureError):
            verify_signature(site.public_key, framed + b"!", sig, len(message) + 1)
        with pytest.raises(SignatureError):
            verify_signature(site.public_key, message + b"!", sig)
        with pytest.raises(SignatureError):
            verify_signature(Identity(bytes(32)).public_key, message, sig)
        for bad in (sig[:-1], sig + b"\x00", bytes(64)):
            with pytest.raises(SignatureError):
                verify_signature(site.public_key, message, bad)
        with pytest.raises(SignatureError):
            verify_signature(site.public_key, message, sig, len(message) + 1)
        with pytest.raises(SignatureError):
            verify_signature(site.public_key[:31], message, sig)
        verify_signature(site.public_key, bytearray(message), sig)  # type: ignore[arg-type]
        for wrong in (message.decode("latin-1"), len(message)):
            with pytest.raises(SignatureError):
                verify_signature(site.public_key, wrong, sig)  # type: ignore[arg-type]
