"""Attestation tokens of version 2 (format 3): a QR-sized signed token for one change.

Version 2 adds the record's partition prefix, after ``key``: a change id is unique
only within its stream, so the token names the stream, and ``delivered`` looks the
change up in a (stream-keyed) receipt (docs/spec.md §14.3). Wire form::

    msgpack [2, origin(32), seq, hlc, collection, key, prefix, fields_digest(16), signature(64)]

signed over ``b"offsync/attest/v2\\0" + msgpack([2, origin, seq, hlc, collection, key,
prefix, fields_digest])``. The text form is ``OFS2:`` and the token in base64url
without padding (version 1's texts start ``OFS1:``, so a reader tells them apart
before decoding anything). This module is sans-IO.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from .change import Change, ChangeId, canonical_fields
from .clock import MAX_HLC, hlc_millis
from .encoding import packb
from .errors import (
    BundleFormatError,
    ExpiredCertificateError,
    LimitExceededError,
    RevokedKeyError,
    ScopeError,
    SignatureError,
    UnknownSignerError,
    UsageError,
)
from .identity import Identity, verify_signature
from .receipt import Receipt
from .scope import MAX_COLLECTION_BYTES, MAX_PREFIX_BYTES, Partition, Stream, new_partition
from .unpack import unpack

if TYPE_CHECKING:
    from .replica import Replica

__all__ = [
    "ATTEST_DOMAIN",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_TEXT",
    "TEXT_PREFIX",
    "TOKEN_VERSION",
    "Attestation",
    "TrustCheck",
    "attest",
    "delivered",
    "fields_digest",
    "from_text",
    "issue_attestation",
    "read_attestation",
    "to_text",
    "verify_attestation",
]

ATTEST_DOMAIN = b"offsync/attest/v2\x00"
TOKEN_VERSION = 2
#: Tokens longer than this are refused unread (a QR code holds under 3 KB anyway).
MAX_TOKEN_BYTES = 1024
#: Texts longer than this are refused unread (1024 bytes are 1366 characters).
MAX_TOKEN_TEXT = 2048
TEXT_PREFIX = "OFS2:"


def fields_digest(fields: bytes | None) -> bytes:
    """BLAKE2b-128, personalised ``offsync/attest``, of canonical field bytes (empty
    input for a delete)."""
    return hashlib.blake2b(fields or b"", digest_size=16, person=b"offsync/attest").digest()


@dataclass(frozen=True, slots=True)
class Attestation:
    """A verified token's content."""

    origin: bytes
    seq: int
    hlc: int
    collection: str
    key: str
    prefix: str
    fields_digest: bytes
    signature: bytes

    @property
    def change_id(self) -> ChangeId:
        return ChangeId(self.origin, self.seq)

    @property
    def partition(self) -> Partition:
        return new_partition(self.collection, self.prefix)

    @property
    def stream(self) -> Stream:
        return Stream(self.origin, self.partition)

    @property
    def recorded_ms(self) -> int:
        """When the site recorded it, ms since the epoch (by the site's clock)."""
        return hlc_millis(self.hlc)

    def matches(self, fields: Mapping[str, Any] | None) -> bool:
        """Whether ``fields`` (None: a delete) are exactly the attested ones."""
        encoded = None if fields is None else canonical_fields(fields)
        return hmac.compare_digest(fields_digest(encoded), self.fields_digest)

    def _body(self) -> list[Any]:
        """The token's items before its signature: what is signed, and what is sent."""
        return [
            TOKEN_VERSION,
            self.origin,
            self.seq,
            self.hlc,
            self.collection,
            self.key,
            self.prefix,
            self.fields_digest,
        ]

    def _signed(self) -> bytes:
        return ATTEST_DOMAIN + packb(self._body())

    def encode(self) -> bytes:
        return packb([*self._body(), self.signature])


def issue_attestation(identity: Identity, change: Change) -> bytes:
    """A token for ``change``, which ``identity`` wrote (not an erased put)."""
    if not isinstance(change, Change) or not isinstance(identity, Identity):
        raise UsageError("a site attests a v3 Change with its Identity")
    if change.origin != identity.public_key:
        raise UsageError("a site attests only changes it wrote itself")
    if change.is_erased:
        raise UsageError("an erased change cannot be attested")
    unsigned = Attestation(
        change.origin,
        change.seq,
        change.hlc,
        change.collection,
        change.key,
        change.prefix,
        fields_digest(change.fields),
        bytes(64),
    )
    token = replace(unsigned, signature=identity.sign(unsigned._signed())).encode()
    if len(token) > MAX_TOKEN_BYTES:
        raise UsageError(f"the token would be over {MAX_TOKEN_BYTES} bytes (a key that long?)")
    return token


def _well_formed(value: list[Any]) -> bool:
    _, origin, seq, hlc, collection, key, prefix, digest, sig = value
    return (
        type(origin) is bytes
        and len(origin) == 32
        and type(seq) is int
        and 1 <= seq <= MAX_HLC
        and type(hlc) is int
        and 0 <= hlc <= MAX_HLC
        and type(collection) is str
        and 0 < len(collection.encode()) <= MAX_COLLECTION_BYTES
        and type(key) is str
        and key != ""
        and type(prefix) is str
        and len(prefix.encode()) <= MAX_PREFIX_BYTES
        and key.startswith(prefix)
        and type(digest) is bytes
        and len(digest) == 16
        and type(sig) is bytes
        and len(sig) == 64
    )


def attest(replica: Replica, collection: str, key: str, change_id: ChangeId | None = None) -> bytes:
    """A token for this replica's change to ``collection/key`` (default: its latest)."""
    own = [c for c in replica.record_changes(collection, key) if c.origin == replica.id]
    if change_id is not None:
        own = [c for c in own if c.id == change_id]
    if not own:
        raise UsageError("this site has no such change of that record to attest")
    latest = max(own, key=lambda c: c.seq)
    # The store keeps a change's record, not its partition: the rule gives the prefix.
    prefix = replica.rule.partition_of(latest.collection, latest.key).prefix
    return issue_attestation(replica.identity, latest._replace(prefix=prefix))


def read_attestation(token: bytes) -> Attestation:
    """Parse a token and check its signature (not yet whether the signer is trusted)."""
    if type(token) is not bytes:
        raise BundleFormatError("a token is bytes")
    if len(token) > MAX_TOKEN_BYTES:
        raise LimitExceededError(f"token longer than {MAX_TOKEN_BYTES} bytes")
    value = unpack(token, "token", max_depth=1)
    if type(value) is not list or len(value) != 9 or value[0] != TOKEN_VERSION:
        raise BundleFormatError("not an offsync attestation of version 2")
    if type(value[0]) is not int or not _well_formed(value):
        raise BundleFormatError("attestation fields have the wrong types")
    att = Attestation(*value[1:])
    if att.encode() != token:
        raise BundleFormatError("attestation is not canonically encoded")
    verify_signature(att.origin, att._signed(), att.signature)
    return att


class TrustCheck(Protocol):
    """What ``verify_attestation`` asks a trust store: the reason the change would be
    refused (docs/spec.md §13.5), or None."""

    def check(self, origin: bytes, seq: int, hlc: int, collection: str, key: str) -> str | None: ...


_TRUST_ERRORS: dict[str, type[UnknownSignerError] | type[ScopeError]] = {
    "trust: unknown signer": UnknownSignerError,
    "trust: key revoked": RevokedKeyError,
    "trust: key replaced by a newer key": RevokedKeyError,
    "validity: certificate expired": ExpiredCertificateError,
    "validity: certificate not yet valid": ExpiredCertificateError,
}


def verify_attestation(
    token: bytes,
    trust: TrustCheck | None,
    *,
    fields: Mapping[str, Any] | None = None,
    deleted: bool = False,
) -> Attestation:
    """Verify a token offline; returns its content or raises.

    With a trust store: the signer must have been certified for that record at the
    recorded time and not revoked (``UnknownSignerError``, ``RevokedKeyError``,
    ``ExpiredCertificateError``, ``ScopeError``). ``trust=None`` checks the signature
    only. With ``fields`` (or ``deleted=True``), they must be the attested ones
    (``SignatureError`` otherwise).
    """
    att = read_attestation(token)
    if trust is not None:
        reason = trust.check(att.origin, att.seq, att.hlc, att.collection, att.key)
        if reason is not None:
            error = _TRUST_ERRORS.get(reason, ScopeError)
            raise error(f"attestation refused: {reason}")
    if (fields is not None or deleted) and not att.matches(None if deleted else fields):
        raise SignatureError("the fields shown are not the attested ones")
    return att


def delivered(token: bytes, receipt: Receipt | bytes, *, centre: bytes) -> bool:
    """Whether ``centre``'s signed receipt shows it holds the attested change: its
    knowledge of the token's stream contains the token's seq.

    Raises ``SignatureError`` for a forged token or receipt and
    ``UnknownSignerError`` when the receipt is not the centre's. A partial receipt
    that does not state the stream answers False: ask for a newer one.
    """
    att = read_attestation(token)
    if isinstance(receipt, bytes):
        receipt = Receipt.decode(receipt)
    elif isinstance(receipt, Receipt):
        receipt.verify()
    else:
        raise UsageError("a receipt is a v3 Receipt or its encoded bytes")
    if receipt.replica != centre:
        raise UnknownSignerError("the receipt is not the centre's")
    return receipt.knowledge.contains(att.stream, att.seq)


def to_text(token: bytes) -> str:
    """A text form for QR codes and forms: ``OFS2:`` + base64url without padding."""
    return TEXT_PREFIX + base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def from_text(text: str) -> bytes:
    """The token of a text made by ``to_text``; ``BundleFormatError`` for anything else
    (``LimitExceededError`` for a text over ``MAX_TOKEN_TEXT`` characters)."""
    if type(text) is not str or not text.startswith(TEXT_PREFIX):
        raise BundleFormatError("not an offsync attestation text of version 2")
    if len(text) > MAX_TOKEN_TEXT:
        raise LimitExceededError(f"attestation text longer than {MAX_TOKEN_TEXT} characters")
    body = text[len(TEXT_PREFIX) :]
    if "=" in body or len(body) % 4 == 1:
        raise BundleFormatError("attestation text is not unpadded base64url")
    try:
        token = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleFormatError("attestation text is not base64url") from exc
    if to_text(token) != text:  # unused low bits of the last character
        raise BundleFormatError("attestation text is not canonical base64url")
    return token
