"""Site identities: an ed25519 signing key, and the X25519 key derived from it.

The public ed25519 key (32 bytes) *is* the site's identity. Its X25519 key for
receiving encrypted bundles is derived from the same seed (the birational map that
libsodium provides), so a site has one public key to distribute and certify.
Key files are the seed sealed with a key stretched from a passphrase by argon2id
(``to_bytes``/``from_bytes``); ``offsync.keyfiles`` writes and reads the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from . import ed25519
from .encoding import packb
from .errors import (
    DecryptionError,
    IdentityError,
    RemoteDataError,
    SignatureError,
    UsageError,
    WrongPassphraseError,
)
from .unpack import unpack

__all__ = ["HasPublicKey", "Identity", "PublicIdentity", "SiteRef", "key_of", "verify_signature"]

KEY_FILE_MAGIC = "offsync-identity"
KEY_FILE_VERSION = 1


class HasPublicKey(Protocol):
    """Anything that names a site by its key: an Identity, a PublicIdentity, a Replica."""

    @property
    def public_key(self) -> bytes: ...


#: How the API lets callers name a site: its 32-byte key, or an object that has one.
SiteRef = bytes | HasPublicKey


def key_of(site: SiteRef) -> bytes:
    """The 32-byte key of a site named either way; ``UsageError`` for anything else."""
    key = site if isinstance(site, bytes) else getattr(site, "public_key", None)
    if type(key) is not bytes or len(key) != 32:
        raise UsageError("a site key is 32 bytes")
    return key


def verify_signature(
    public_key: bytes, message: bytes, signature: bytes, length: int | None = None
) -> None:
    """Raise ``SignatureError`` unless ``signature`` is ``public_key``'s over ``message``,
    or over its first ``length`` bytes (a bundle's: checked where it lies, not copied)."""
    if type(message) is not bytes:
        if not isinstance(message, bytearray | memoryview):
            raise SignatureError("signature does not verify")
        message = bytes(message)
    n = len(message) if length is None else length
    if not (
        type(public_key) is bytes
        and len(public_key) == 32
        and type(signature) is bytes
        and len(signature) == ed25519.SIGNATURE_BYTES
        and 0 <= n <= len(message)
        and ed25519.verify(public_key, message, signature, n)
    ):
        raise SignatureError("signature does not verify")


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """What others know of a site: its public key and a label."""

    public_key: bytes
    label: str = ""

    def __post_init__(self) -> None:
        if type(self.public_key) is not bytes or len(self.public_key) != 32:
            raise UsageError("a public key is 32 bytes")
        if type(self.label) is not str:
            raise UsageError("a label is a str")

    @property
    def box_public_key(self) -> bytes:
        """The X25519 key that bundles for this site are encrypted to."""
        return bytes(nacl.signing.VerifyKey(self.public_key).to_curve25519_public_key())

    @property
    def short_id(self) -> str:
        return self.public_key[:6].hex()


class Identity:
    """A site's secret keys. ``Identity.generate(label=...)`` makes a new one."""

    __slots__ = ("_box_key", "_secret", "_signing_key", "label")

    def __init__(self, seed: bytes, label: str = "") -> None:
        if type(seed) is not bytes or len(seed) != 32:
            raise UsageError("an identity seed is 32 bytes")
        if type(label) is not str:
            raise UsageError("a label is a str")
        self._signing_key = nacl.signing.SigningKey(seed)
        self._secret = ed25519.secret_key(seed)
        self._box_key = self._signing_key.to_curve25519_private_key()
        self.label = label

    @classmethod
    def generate(cls, label: str = "") -> Identity:
        return cls(os.urandom(32), label)

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def public(self) -> PublicIdentity:
        return PublicIdentity(self.public_key, self.label)

    @property
    def short_id(self) -> str:
        return self.public_key[:6].hex()

    def sign(self, message: bytes) -> bytes:
        if type(message) is not bytes:
            raise UsageError("only bytes are signed")
        return ed25519.sign(self._secret, message)

    def unseal(self, ciphertext: bytes) -> bytes:
        """Open a sealed box addressed to this identity; ``DecryptionError`` if it is not
        one, is for someone else, or was tampered with."""
        if type(ciphertext) is not bytes:
            raise DecryptionError("a sealed box is bytes")
        try:
            return bytes(nacl.public.SealedBox(self._box_key).decrypt(ciphertext))
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, TypeError) as exc:
            raise DecryptionError("encrypted data does not open") from exc

    def __repr__(self) -> str:
        return f"<Identity {self.label!r} {self.short_id}>"

    # -- key files ---------------------------------------------------------------------

    def to_bytes(
        self,
        passphrase: str | bytes,
        *,
        opslimit: int = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE,
        memlimit: int = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE,
    ) -> bytes:
        """The identity as an encrypted key file (msgpack; see docs/spec.md)."""
        pw = _passphrase(passphrase)
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, pw, salt, opslimit=opslimit, memlimit=memlimit
        )
        sealed = bytes(nacl.secret.SecretBox(key).encrypt(bytes(self._signing_key)))
        return packb(
            {
                "box": sealed,
                "format": KEY_FILE_MAGIC,
                "kdf": "argon2id",
                "label": self.label,
                "memlimit": memlimit,
                "opslimit": opslimit,
                "public_key": self.public_key,
                "salt": salt,
                "version": KEY_FILE_VERSION,
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes, passphrase: str | bytes) -> Identity:
        pw = _passphrase(passphrase)
        try:
            doc = unpack(data, "key file", max_depth=1)
        except RemoteDataError as exc:
            raise IdentityError("not an offsync key file") from exc
        if (
            not isinstance(doc, dict)
            or doc.get("format") != KEY_FILE_MAGIC
            or doc.get("version") != KEY_FILE_VERSION
            or doc.get("kdf") != "argon2id"
        ):
            raise IdentityError("not an offsync key file (or a newer version)")
        salt, sealed = doc.get("salt"), doc.get("box")
        opslimit, memlimit = doc.get("opslimit"), doc.get("memlimit")
        label = doc.get("label", "")
        if not (
            type(salt) is bytes
            and type(sealed) is bytes
            and type(opslimit) is int
            and type(memlimit) is int
            and type(label) is str
        ):
            raise IdentityError("key file is missing fields")
        if memlimit > 1 << 32 or opslimit > 64:
            raise IdentityError("key file asks for an unreasonable key derivation cost")
        try:
            key = nacl.pwhash.argon2id.kdf(
                nacl.secret.SecretBox.KEY_SIZE, pw, salt, opslimit=opslimit, memlimit=memlimit
            )
            seed = nacl.secret.SecretBox(key).decrypt(sealed)
        except nacl.exceptions.CryptoError as exc:
            raise WrongPassphraseError("wrong passphrase, or the key file was altered") from exc
        except (TypeError, ValueError, nacl.exceptions.ValueError) as exc:
            raise IdentityError("key file is damaged") from exc
        if len(seed) != 32:
            raise IdentityError("key file holds no identity seed")
        ident = cls(bytes(seed), label)
        if ident.public_key != doc.get("public_key"):
            raise IdentityError("key file's public key does not match its secret key")
        return ident

    def save(self, path: str | os.PathLike[str], passphrase: str | bytes, **kdf: int) -> None:
        """Write the encrypted key file atomically, readable by its owner only.

        The bytes are made here (``to_bytes``); the file is written by
        ``offsync.keyfiles``, outside the sans-IO core, imported only when called."""
        from .keyfiles import write_key_file

        write_key_file(path, self.to_bytes(passphrase, **kdf))

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str | bytes) -> Identity:
        """The identity in the key file at ``path`` (read by ``offsync.keyfiles``)."""
        from .keyfiles import read_key_file

        return cls.from_bytes(read_key_file(path), passphrase)


def _passphrase(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, bytes):
        return passphrase
    if not isinstance(passphrase, str):
        raise UsageError("a passphrase is a str or bytes")
    try:
        return passphrase.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate, say
        raise UsageError("a passphrase must be encodable as UTF-8") from exc
