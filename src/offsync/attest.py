"""Offline attestations: a QR-sized signed token for one recorded change.

A vaccination post that is offline for weeks hands out provisional cards. The token
printed on a card says "site S recorded change (S, seq) of ``collection/key`` at time
T, with fields whose digest is D", signed by S. Anyone holding the trust store can
check it offline: the signature, that S was certified to write that record at T and
not revoked, and (given the fields printed on the card) that they are the recorded
ones. Later, the centre's receipt (a signed knowledge statement that relays pass on)
proves the change reached the centre: ``delivered(token, receipt, centre=...)``.

Wire form (about 150-200 bytes; always under ``MAX_TOKEN_BYTES``)::

    msgpack [1, origin(32), seq, hlc, collection, key, fields_digest(16), signature(64)]

signed over ``b"offsync/attest/v1\\0" + msgpack([1, origin, seq, hlc, collection, key,
fields_digest])``. The fields digest is BLAKE2b-128 of the change's canonical fields
(empty for a delete). ``to_text``/``from_text`` give a base64url form for QR codes.
This module is sans-IO.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .change import Change, ChangeId
from .clock import MAX_HLC, hlc_millis
from .encoding import canonical_fields, packb
from .errors import (
    BundleFormatError,
    LimitExceededError,
    SignatureError,
    UnknownSignerError,
    UsageError,
)
from .identity import Identity, verify_signature
from .receipt import Receipt
from .status import error_class
from .trust import TrustStore
from .unpack import unpack

if TYPE_CHECKING:
    from .replica import Replica

__all__ = [
    "MAX_TOKEN_BYTES",
    "Attestation",
    "attest",
    "delivered",
    "from_text",
    "issue_attestation",
    "read_attestation",
    "to_text",
    "verify_attestation",
]

ATTEST_DOMAIN = b"offsync/attest/v1\x00"
TOKEN_VERSION = 1
#: Tokens longer than this are refused unread (a QR code holds under 3 KB anyway).
MAX_TOKEN_BYTES = 1024
TEXT_PREFIX = "OFS1:"


def fields_digest(fields: bytes | None) -> bytes:
    """BLAKE2b-128 of canonical field bytes (empty input for a delete)."""
    return hashlib.blake2b(fields or b"", digest_size=16, person=b"offsync/attest").digest()


@dataclass(frozen=True, slots=True)
class Attestation:
    """A verified token's content."""

    origin: bytes
    seq: int
    hlc: int
    collection: str
    key: str
    fields_digest: bytes
    signature: bytes

    @property
    def change_id(self) -> ChangeId:
        return ChangeId(self.origin, self.seq)

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
            self.fields_digest,
        ]

    def _signed(self) -> bytes:
        return ATTEST_DOMAIN + packb(self._body())

    def encode(self) -> bytes:
        return packb([*self._body(), self.signature])


def issue_attestation(identity: Identity, change: Change) -> bytes:
    """A token for ``change``, which ``identity`` wrote."""
    if not isinstance(change, Change) or not isinstance(identity, Identity):
        raise UsageError("a site attests a Change with its Identity")
    if change.origin != identity.public_key:
        raise UsageError("a site attests only changes it wrote itself")
    unsigned = Attestation(
        change.origin,
        change.seq,
        change.hlc,
        change.collection,
        change.key,
        fields_digest(change.fields),
        bytes(64),
    )
    return replace(unsigned, signature=identity.sign(unsigned._signed())).encode()


def attest(replica: Replica, collection: str, key: str, change_id: ChangeId | None = None) -> bytes:
    """A token for this replica's change to ``collection/key`` (default: its latest)."""
    own = [c for c in replica.record_changes(collection, key) if c.origin == replica.id]
    if change_id is not None:
        own = [c for c in own if c.id == change_id]
    if not own:
        raise UsageError("this site has no such change of that record to attest")
    return issue_attestation(replica.identity, max(own, key=lambda c: c.seq))


def read_attestation(token: bytes) -> Attestation:
    """Parse a token and check its signature (not yet whether the signer is trusted)."""
    if type(token) is not bytes:
        raise BundleFormatError("a token is bytes")
    if len(token) > MAX_TOKEN_BYTES:
        raise LimitExceededError(f"token longer than {MAX_TOKEN_BYTES} bytes")
    value = unpack(token, "token", max_depth=1)
    if type(value) is not list or len(value) != 8 or value[0] != TOKEN_VERSION:
        raise BundleFormatError("not an offsync attestation (or a newer version)")
    _, origin, seq, hlc, collection, key, digest, sig = value
    if not (
        type(origin) is bytes
        and len(origin) == 32
        and type(seq) is int
        and 1 <= seq < 1 << 63
        and type(hlc) is int
        and 0 <= hlc <= MAX_HLC
        and type(collection) is str
        and type(key) is str
        and type(digest) is bytes
        and len(digest) == 16
        and type(sig) is bytes
        and len(sig) == 64
    ):
        raise BundleFormatError("attestation fields have the wrong types")
    att = Attestation(origin, seq, hlc, collection, key, digest, sig)
    if att.encode() != token:
        raise BundleFormatError("attestation is not canonically encoded")
    verify_signature(origin, att._signed(), sig)
    return att


def verify_attestation(
    token: bytes,
    trust: TrustStore | None,
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
        status = trust.verdict(att.origin, att.seq, att.hlc, att.collection, att.key)
        error = None if status is None else error_class(status)
        if error is not None:
            raise error(f"attestation refused: {status}")
    if (fields is not None or deleted) and not att.matches(None if deleted else fields):
        raise SignatureError("the fields shown are not the attested ones")
    return att


def delivered(token: bytes, receipt: Receipt | bytes, *, centre: bytes) -> bool:
    """Whether ``centre``'s signed receipt shows it holds the attested change.

    "Holds" as in knowledge: the change reached the centre (it may still wait there in
    quarantine, e.g. for the site's certificate; see ``Replica.quarantined``).

    Raises ``SignatureError`` for a forged token or receipt and
    ``UnknownSignerError`` when the receipt is not the centre's.
    """
    att = read_attestation(token)
    if isinstance(receipt, bytes):
        receipt = Receipt.decode(receipt)
    elif isinstance(receipt, Receipt):
        receipt.verify()
    else:
        raise UsageError("a receipt is a Receipt or its encoded bytes")
    if receipt.replica != centre:
        raise UnknownSignerError("the receipt is not the centre's")
    return receipt.knowledge.contains(att.origin, att.seq)


def to_text(token: bytes) -> str:
    """A text form for QR codes and forms: ``OFS1:`` + base64url without padding."""
    return TEXT_PREFIX + base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def from_text(text: str) -> bytes:
    """The token of a text made by ``to_text``; ``BundleFormatError`` for anything else."""
    if type(text) is not str or not text.startswith(TEXT_PREFIX) or len(text) > 2 * MAX_TOKEN_BYTES:
        raise BundleFormatError("not an offsync attestation text")
    body = text[len(TEXT_PREFIX) :]
    try:
        token = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleFormatError("attestation text is not base64url") from exc
    # One text per token (docs/spec.md §13.1): no padding, the last character's
    # unused bits zero.
    if to_text(token) != text:
        raise BundleFormatError("attestation text is not the canonical base64url of a token")
    return token
