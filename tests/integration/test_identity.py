"""Identities: keys, signatures, sealed boxes and passphrase-protected key files."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import msgpack
import nacl.public
import nacl.pwhash
import pytest

from offsync.encoding import packb, unpack_strict
from offsync.errors import (
    DecryptionError,
    IdentityError,
    SignatureError,
    UsageError,
    WrongPassphraseError,
)
from offsync.identity import Identity, PublicIdentity, verify_signature
from offsync.keyfiles import read_key_file, write_key_file

# The cheapest argon2id cost libsodium allows, so key-file tests stay fast.
FAST = {
    "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
    "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
}
SEED = bytes(range(32))


def test_generate_gives_distinct_identities() -> None:
    a, b = Identity.generate(label="a"), Identity.generate(label="b")
    assert a.public_key != b.public_key
    assert len(a.public_key) == 32
    assert a.label == "a"
    assert a.public == PublicIdentity(a.public_key, "a")
    assert a.short_id == a.public_key[:6].hex() == a.public.short_id


def test_seed_determines_the_keys() -> None:
    a, b = Identity(SEED), Identity(SEED)
    assert a.public_key == b.public_key
    assert a.sign(b"m") == b.sign(b"m")  # ed25519 is deterministic
    with pytest.raises(ValueError):
        Identity(b"short")
    with pytest.raises(ValueError):
        PublicIdentity(b"x" * 31)


def test_sign_and_verify() -> None:
    ident = Identity(SEED)
    sig = ident.sign(b"message")
    assert len(sig) == 64
    verify_signature(ident.public_key, b"message", sig)
    with pytest.raises(SignatureError):
        verify_signature(ident.public_key, b"messagE", sig)
    with pytest.raises(SignatureError):
        verify_signature(Identity.generate().public_key, b"message", sig)
    with pytest.raises(SignatureError):
        verify_signature(ident.public_key, b"message", sig[:-1])
    with pytest.raises(SignatureError):
        verify_signature(b"short", b"message", sig)


def test_sealed_box_to_the_derived_key() -> None:
    ident = Identity.generate()
    box = nacl.public.SealedBox(nacl.public.PublicKey(ident.public.box_public_key))
    assert ident.unseal(box.encrypt(b"secret")) == b"secret"
    other = Identity.generate()
    with pytest.raises(DecryptionError):
        other.unseal(box.encrypt(b"secret"))


def test_key_file_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate(label="kec-saradan")
    path = tmp_path / "site.key"
    ident.save(path, "correct horse", **FAST)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert not (tmp_path / "site.key.tmp").exists()
    loaded = Identity.load(path, "correct horse")
    assert loaded.public_key == ident.public_key
    assert loaded.label == "kec-saradan"
    assert loaded.sign(b"x") == ident.sign(b"x")
    # bytes passphrases work the same
    assert Identity.from_bytes(ident.to_bytes(b"pw", **FAST), "pw").public_key == ident.public_key
    # the seed never appears in the file
    assert bytes(ident._signing_key) not in path.read_bytes()


def test_key_files_are_written_outside_the_core(tmp_path: Path) -> None:
    """``offsync.keyfiles`` moves the core's sealed bytes to and from a file; a
    passphrase the core refuses leaves no file, not even a temporary one."""
    ident = Identity.generate(label="kab")
    path = tmp_path / "kab.key"
    write_key_file(path, ident.to_bytes("pw", **FAST))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Identity.from_bytes(read_key_file(path), "pw").public_key == ident.public_key
    with pytest.raises(UsageError):
        ident.save(tmp_path / "bad.key", 3.5, **FAST)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kab.key"]


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    Identity.generate().save(path, "right", **FAST)
    with pytest.raises(WrongPassphraseError):
        Identity.load(path, "wrong")


def _doc(ident: Identity) -> dict[str, object]:
    doc = unpack_strict(ident.to_bytes("pw", **FAST), "key file")
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",
        lambda data: b"\x00" * 64,
        lambda data: data + b"\x00",  # trailing bytes
        lambda data: msgpack.packb([1, 2, 3]),
    ],
)
def test_damaged_file_is_an_identity_error(damage: Callable[[bytes], bytes]) -> None:
    data = Identity.generate().to_bytes("pw", **FAST)
    with pytest.raises(IdentityError):
        Identity.from_bytes(damage(data), "pw")


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("format", "something-else", IdentityError),
        ("version", 2, IdentityError),
        ("kdf", "scrypt", IdentityError),
        ("salt", b"short", IdentityError),
        ("opslimit", 1000, IdentityError),  # an unreasonable cost is refused up front
        ("memlimit", 1 << 40, IdentityError),
        ("public_key", b"\x00" * 32, IdentityError),
    ],
)
def test_altered_fields_are_refused(name: str, value: object, error: type[Exception]) -> None:
    doc = _doc(Identity.generate())
    doc[name] = value
    with pytest.raises(error):
        Identity.from_bytes(packb(doc), "pw")


def test_flipped_ciphertext_is_refused() -> None:
    doc = _doc(Identity.generate())
    sealed = doc["box"]
    assert isinstance(sealed, bytes)
    box = bytearray(sealed)
    box[-1] ^= 1
    doc["box"] = bytes(box)
    with pytest.raises(WrongPassphraseError):
        Identity.from_bytes(packb(doc), "pw")


def test_missing_field_is_refused() -> None:
    doc = _doc(Identity.generate())
    del doc["salt"]
    with pytest.raises(IdentityError):
        Identity.from_bytes(packb(doc), "pw")
