"""The one exception tree of offsync.

Errors are split by whose fault they are: local misuse of the API, bad data from a peer,
and failures of the machinery around the core (storage, transports)::

    OffsyncError
    ├── UsageError (ValueError)            the calling code misused the API
    │   ├── ImmutableRecordError           a plain write to a first-writer-wins record
    │   ├── NotAuthorisedError             a local write this site's certificate forbids
    │   ├── FieldTypeError (TypeError)     fields msgpack cannot carry canonically
    │   └── UpcastError                    a registered upcaster raised or gave no field map
    ├── IdentityError
    │   └── WrongPassphraseError           a key file that the passphrase does not open
    ├── RemoteDataError                    input from elsewhere that must be refused
    │   ├── BundleFormatError (ValueError) not a well-formed bundle, segment or change
    │   ├── LimitExceededError             larger or deeper than a documented limit
    │   ├── SignatureError                 a signature that does not verify
    │   ├── UnknownSignerError             validly signed, but by a key we do not trust
    │   │   ├── RevokedKeyError            by a key revoked at the time it claims
    │   │   └── ExpiredCertificateError    outside the signer's certificate's validity
    │   ├── DecryptionError                encrypted for someone else, or tampered with
    │   ├── ForkError                      two different changes under one change id
    │   ├── ScopeError                     a trusted signer writing outside its scope
    │   ├── SchemaVersionError             written under a schema newer than this replica's
    │   └── BlobError                      blob bytes that do not match their reference
    │       └── BlobReferenceError (ValueError)  a malformed blob reference
    ├── MissingBlobError (LookupError)     a blob this replica does not hold (yet)
    ├── SequenceReuseError                 this site would reuse seqs it already used
    ├── ClockError (OverflowError)         this site's clock cannot give a valid HLC
    ├── StorageError                       the store failed; nothing was changed
    │   ├── StorageConflictError           lost a race with another writer; retry
    │   ├── StorageFullError               disk full or failing: an operator must act
    │   ├── StoreLockedError               another process has this replica open
    │   └── FormatTwoStoreError            the store holds wire format 2: re-import it
    └── TransportError                     a transport could not deliver or fetch
        ├── RetryableTransportError        the other side is busy or gone; try again later
        │   ├── UnverifiedAnswerError      not an offsync answer (a captive portal, a proxy?)
        │   └── PeerStorageFullError       the other side's disk is full: its operator must act
        └── PeerRefusedError               the other side refused what we sent, and said why

Every refusal of remote data leaves the store exactly as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .status import Status

__all__ = [
    "BlobError",
    "BlobReferenceError",
    "BundleFormatError",
    "ClockError",
    "DecryptionError",
    "ExpiredCertificateError",
    "FieldTypeError",
    "ForkError",
    "FormatTwoStoreError",
    "IdentityError",
    "ImmutableRecordError",
    "LimitExceededError",
    "MissingBlobError",
    "NotAuthorisedError",
    "OffsyncError",
    "PeerRefusedError",
    "PeerStorageFullError",
    "RemoteDataError",
    "RetryableTransportError",
    "RevokedKeyError",
    "SchemaVersionError",
    "ScopeError",
    "SequenceReuseError",
    "SignatureError",
    "StorageConflictError",
    "StorageError",
    "StorageFullError",
    "StoreLockedError",
    "TransportError",
    "UnknownSignerError",
    "UnverifiedAnswerError",
    "UpcastError",
    "UsageError",
    "WrongPassphraseError",
]


class OffsyncError(Exception):
    """Root of every error raised by offsync."""


class UsageError(OffsyncError, ValueError):
    """The calling code asked for something the API does not allow."""


class ImmutableRecordError(UsageError):
    """A plain put or delete on an existing first-writer-wins record; use ``resolve``."""


class NotAuthorisedError(UsageError):
    """A local write that peers would refuse: outside this site's certificate, or by a
    key that is unknown, revoked or expired in the trust store, or failing a validator."""


class FieldTypeError(UsageError, TypeError):
    """Fields that msgpack cannot carry canonically: a value of another type, a map key
    that is not a str, an int beyond 64 bits, arrays and maps nested too deep."""


class UpcastError(UsageError):
    """An upcaster the application registered (``offsync.schemas``) raised, or gave
    back something other than a field map msgpack can carry; the original error is
    its ``__cause__``. ``collection`` and ``version`` name the step that failed (from
    ``version`` to ``version + 1``), or for fields that cannot be encoded, the version
    the upcast started from."""

    def __init__(self, message: str, *, collection: str, version: int) -> None:
        super().__init__(message)
        self.collection, self.version = collection, version


class IdentityError(OffsyncError):
    """A key file that cannot be read."""


class WrongPassphraseError(IdentityError):
    """The passphrase does not open this key file (or the file was altered)."""


class RemoteDataError(OffsyncError):
    """Data that came from elsewhere (a peer, a disk, a folder) and is refused."""


class BundleFormatError(RemoteDataError, ValueError):
    """Bytes that are not a well-formed bundle, segment or change."""


class LimitExceededError(RemoteDataError):
    """Input larger, longer or deeper than a documented limit (see ``offsync.limits``)."""


class SignatureError(RemoteDataError):
    """A signature that does not verify: forged, corrupted or spliced data."""


class UnknownSignerError(RemoteDataError):
    """A validly signed input from a key that the trust store does not know."""


class RevokedKeyError(UnknownSignerError):
    """Signed by a key whose revocation covers the signed item."""


class ExpiredCertificateError(UnknownSignerError):
    """Signed at a time outside the signer's certificate's validity period."""


class DecryptionError(RemoteDataError):
    """An encrypted bundle that this identity cannot open."""


class ForkError(RemoteDataError):
    """Two different changes claim the same change id (an origin restored from a backup)."""


class ScopeError(RemoteDataError):
    """A trusted signer wrote outside the collections or key prefixes it may write."""


class SchemaVersionError(RemoteDataError):
    """A change written under a schema version newer than this replica knows for its
    collection (docs/spec.md §10.2). Such a change is held, not dropped, with
    ``status`` (its string form is the quarantine reason ``schema: …``) and applied
    once the replica is upgraded."""

    def __init__(self, message: str, *, status: Status | None = None) -> None:
        super().__init__(message)
        self.status = status


class BlobError(RemoteDataError):
    """Blob bytes that do not match their reference: another hash, more or fewer bytes
    than declared, chunks that overlap or leave a gap. Nothing of them is kept."""


class BlobReferenceError(BlobError, ValueError):
    """A value that claims to be a blob reference (a map whose only key is ``"$blob"``)
    but is not a well-formed one (docs/spec.md, "Blob references")."""


class MissingBlobError(OffsyncError, LookupError):
    """A blob this replica does not hold (yet): its record arrived before it did, or it
    was never sent. ``Replica.missing_blobs()`` lists what is awaited."""


class SequenceReuseError(OffsyncError):
    """Peers hold changes of this site that it no longer has: writing would fork."""


class ClockError(OffsyncError, OverflowError):
    """This site's clock cannot give a valid HLC (below 2^63, docs/spec.md §3): the wall
    clock reads before 1970 or after the year 6429. Nothing was written; fix the clock."""


class StorageError(OffsyncError):
    """The store failed or is not an offsync store; the transaction was rolled back."""


class StorageConflictError(StorageError):
    """A concurrent writer of a shared store got in the way (deadlock, serialization
    failure); nothing was changed and the same call may succeed if made again."""


class StorageFullError(StorageError):
    """The disk under the store is full or failing (ENOSPC, EIO, a read-only file
    system): nothing was changed, and retrying will not help until an operator frees
    space or replaces the disk."""


class StoreLockedError(StorageError):
    """Another process has this replica open; one replica file has one writer process
    (serve it over HTTP, or open it in that process only)."""


class FormatTwoStoreError(StorageError):
    """The store holds segments or unsealed changes of wire format 2, which format 3
    cannot use: segments cannot be re-signed by anyone but their origins. Export the
    records with the previous release and import them as fresh writes, or bootstrap
    the site again from its centre (docs/spec.md, "Format versions")."""


class TransportError(OffsyncError):
    """A transport could not deliver or fetch."""


class RetryableTransportError(TransportError):
    """The other side is busy, down or unreachable; the same call may succeed later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnverifiedAnswerError(RetryableTransportError):
    """An answer that is not a verified offsync answer: an HTML page, a redirect, JSON
    without a receipt, a receipt signed by another key or one that does not cover what
    was sent. Most often a captive portal or a proxy answering in the server's place.
    Nothing it said was taken: nothing counts as delivered, nothing is removed.
    ``status`` is the HTTP status of the answer, when there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PeerStorageFullError(RetryableTransportError):
    """The other side's storage is full or failing (HTTP 507): nothing was delivered,
    and retrying soon will not help until an operator there frees space."""


class PeerRefusedError(TransportError):
    """The other side refused a request and said why (HTTP 4xx: a bad bundle, a bad
    signature, too large); sending the same thing again will not help."""

    def __init__(self, message: str, *, status: int, error: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.error, self.reason = status, error, reason
