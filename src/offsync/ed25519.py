"""Ed25519 signatures over large messages without copying them.

PyNaCl signs and verifies in libsodium's combined form only: signing returns the
signature followed by a copy of the message (copied again into a ``SignedMessage``),
verifying needs signature and message joined in one new buffer and returns the
message copied out. For a bundle that is three or four copies of it held at once: of
everything applying a 16 MiB bundle of ID-card recordings held, most (issue 14, the
courier backlog). libsodium's detached functions take the message where it lies and
PyNaCl's extension module exports them, so they are called through ``ctypes`` on that
library, already loaded and initialised. Where they are not found (another build of
PyNaCl), the combined functions are used: the same signatures, more memory.
"""

from __future__ import annotations

import ctypes
from typing import Any

import nacl.bindings
import nacl.exceptions

from .errors import IdentityError

__all__ = ["DETACHED", "secret_key", "sign", "verify"]

SIGNATURE_BYTES = 64


def _detached() -> tuple[Any, Any] | None:
    try:
        import nacl._sodium as sodium  # PyNaCl's extension module: libsodium

        lib = ctypes.CDLL(sodium.__file__)
        sign, verify = lib.crypto_sign_detached, lib.crypto_sign_verify_detached
    except (ImportError, OSError, AttributeError):
        return None
    # crypto_sign_detached(sig, siglen_p, m, mlen, sk); ..._verify_detached(sig, m, mlen, pk)
    c_bytes, c_len = ctypes.c_char_p, ctypes.c_ulonglong
    sign.argtypes = [c_bytes, ctypes.c_void_p, c_bytes, c_len, c_bytes]
    sign.restype = ctypes.c_int
    verify.argtypes = [c_bytes, c_bytes, c_len, c_bytes]
    verify.restype = ctypes.c_int
    return sign, verify


_FUNCTIONS = _detached()
#: Whether signing and verifying take the message in place (libsodium's detached form).
DETACHED = _FUNCTIONS is not None


def secret_key(seed: bytes) -> bytes:
    """libsodium's 64-byte signing key (seed and public key) for a 32-byte seed."""
    return nacl.bindings.crypto_sign_seed_keypair(seed)[1]


def sign(secret: bytes, message: bytes) -> bytes:
    """The signature of ``message`` by ``secret`` (``secret_key``)."""
    if _FUNCTIONS is None:
        return nacl.bindings.crypto_sign(message, secret)[:SIGNATURE_BYTES]
    out = ctypes.create_string_buffer(SIGNATURE_BYTES)
    if _FUNCTIONS[0](out, None, message, len(message), secret) != 0:
        raise IdentityError("libsodium failed to sign")  # it never does (ref10)
    return out.raw


def verify(public_key: bytes, message: bytes, signature: bytes, length: int) -> bool:
    """Whether ``signature`` is ``public_key``'s over the first ``length`` bytes of
    ``message`` (32-, 64-byte bytes and 0 <= length <= len(message): checked by the
    caller)."""
    if _FUNCTIONS is None:
        signed = signature + (message if length == len(message) else message[:length])
        try:
            nacl.bindings.crypto_sign_open(signed, public_key)
        except nacl.exceptions.BadSignatureError:
            return False
        return True
    return bool(_FUNCTIONS[1](signature, message, length, public_key) == 0)
