"""Trust: which keys may write what, decided from data signed by an authority.

The root of trust is a set of *authority* public keys that a replica is given out of
band when it is opened (``Replica.open(..., trust=[authority_key])``). Everything else
travels in-band, as ordinary changes of the reserved collection ``_trust`` that only an
authority may write, so certificates reach offline sites by the same paths as data:

* ``cert/<site key hex>`` — a site certificate: the site's key, a label, the
  collections it may write, the key prefixes it may write (a district's region code),
  a validity period in ms since the epoch, and optionally the key it ``replaces``
  (rotation: the old key's changes made before the new certificate's ``valid_from``
  stay valid, later ones are refused).
* ``revoke/<site key hex>`` — a revocation: changes of the key with a timestamp at or
  after ``effective_ms``, or with a seq above ``after_seq``, are refused; earlier ones
  are kept. ``after_seq`` pins the revocation to what the centre already holds, which
  a thief holding the key cannot backdate around.

The ``TrustStore`` is a pure function of the visible ``_trust`` records, which are a
pure function of the applied ``_trust`` changes; and whether a change is admitted
(``TrustStore.refusal``) is a pure function of the change and the trust store. So two
replicas holding the same segments and the same trust store apply the same changes,
whatever the order things arrived in. This module is sans-IO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .change import Change
from .clock import MAX_HLC, hlc_millis
from .encoding import packb
from .errors import BundleFormatError, UsageError
from .identity import Identity, PublicIdentity, key_of
from .status import Kind, Status

__all__ = [
    "TRUST_COLLECTION",
    "Certificate",
    "Revocation",
    "TrustStore",
    "Validator",
    "certificate_fields",
    "issue_certificate",
    "refusal",
    "revocation_fields",
    "verdict",
    "revoke",
]

#: The reserved system collection holding certificates and revocations.
TRUST_COLLECTION = "_trust"
CERT_PREFIX = "cert/"
REVOKE_PREFIX = "revoke/"
#: In a certificate's ``collections``, allows every collection except ``_trust``.
ANY_COLLECTION = "*"

#: A collection validator: gets ``(key, fields or None for a delete)``; returns None or
#: True to accept, False or a short reason string to refuse. An exception refuses too
#: (only its type name is recorded, so no field value ends up in a reason).
Validator = Callable[[str, "dict[str, Any] | None"], "bool | str | None"]


def _in_range(value: Any, optional: bool = False) -> bool:
    """A ms time or seq from a record: an int in [0, 2^63) (signed 64-bit everywhere)."""
    if value is None:
        return optional
    return type(value) is int and 0 <= value <= MAX_HLC


@dataclass(frozen=True, slots=True)
class Certificate:
    """What one site key may write, and when."""

    site: bytes
    label: str = ""
    collections: tuple[str, ...] = (ANY_COLLECTION,)
    prefixes: tuple[str, ...] = ()  # empty: any key
    valid_from: int = 0  # ms since the epoch, inclusive
    valid_until: int | None = None  # ms since the epoch, exclusive; None: no end
    replaces: bytes | None = None

    def allows(self, collection: str, key: str) -> str | None:
        """None if the certificate covers ``collection/key``, else a reason (no key in it)."""
        status = self.scope_verdict(collection, key)
        return None if status is None else str(status)

    def scope_verdict(self, collection: str, key: str) -> Status | None:
        """``allows`` as a ``Status`` (kind ``scope``), or None."""
        if collection == TRUST_COLLECTION or (
            ANY_COLLECTION not in self.collections and collection not in self.collections
        ):
            return Status(Kind.SCOPE, f"collection {collection!r} not allowed for this key")
        if self.prefixes and not key.startswith(self.prefixes):
            return _OUTSIDE_PREFIXES
        return None

    def to_fields(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "label": self.label,
            "prefixes": list(self.prefixes),
            "replaces": self.replaces,
            "site": self.site,
            "type": "cert",
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
        }

    @classmethod
    def from_fields(cls, f: Mapping[str, Any]) -> Certificate:
        """Parse certificate fields (a ``_trust`` record, from elsewhere);
        ``BundleFormatError`` when they are malformed."""
        if not isinstance(f, Mapping):
            raise BundleFormatError("malformed certificate")
        site, replaces = f.get("site"), f.get("replaces")
        cols, prefixes = f.get("collections"), f.get("prefixes")
        vf, vu = f.get("valid_from"), f.get("valid_until")
        if (
            f.get("type") != "cert"
            or type(site) is not bytes
            or len(site) != 32
            or not (replaces is None or (type(replaces) is bytes and len(replaces) == 32))
            or type(cols) is not list
            or not all(type(c) is str for c in cols)
            or type(prefixes) is not list
            or not all(type(p) is str for p in prefixes)
            or type(vf) is not int
            or not _in_range(vf)
            or not _in_range(vu, optional=True)
            or type(f.get("label", "")) is not str
        ):
            raise BundleFormatError("malformed certificate")
        return cls(site, f.get("label", ""), tuple(cols), tuple(prefixes), vf, vu, replaces)


@dataclass(frozen=True, slots=True)
class Revocation:
    """A key's changes from ``effective_ms`` on, or above ``after_seq``, are refused."""

    site: bytes
    effective_ms: int | None = None
    after_seq: int | None = None
    reason: str = ""

    def revokes(self, change: Change) -> bool:
        if self.after_seq is not None and change.seq > self.after_seq:
            return True
        return self.effective_ms is not None and hlc_millis(change.hlc) >= self.effective_ms

    def to_fields(self) -> dict[str, Any]:
        return {
            "after_seq": self.after_seq,
            "effective_ms": self.effective_ms,
            "reason": self.reason,
            "site": self.site,
            "type": "revoke",
        }

    @classmethod
    def from_fields(cls, f: Mapping[str, Any]) -> Revocation:
        """Parse revocation fields (a ``_trust`` record, from elsewhere);
        ``BundleFormatError`` when they are malformed."""
        if not isinstance(f, Mapping):
            raise BundleFormatError("malformed revocation")
        site, eff, after = f.get("site"), f.get("effective_ms"), f.get("after_seq")
        if (
            f.get("type") != "revoke"
            or type(site) is not bytes
            or len(site) != 32
            or not _in_range(eff, optional=True)
            or not _in_range(after, optional=True)
            or (eff is None and after is None)
            or type(f.get("reason", "")) is not str
        ):
            raise BundleFormatError("malformed revocation")
        return cls(site, eff, after, f.get("reason", ""))


def certificate_fields(site: bytes | PublicIdentity | Identity, **options: Any) -> dict[str, Any]:
    """The fields of a ``_trust`` certificate record (see ``Certificate`` for options);
    ``UsageError`` for options every replica would ignore as malformed."""
    options = dict(options)
    for name in ("collections", "prefixes"):
        if isinstance(options.get(name), str):  # one name would become its letters
            raise UsageError(f"{name} is a list of str, not one str")
    try:
        for name in ("collections", "prefixes"):
            if name in options:
                options[name] = tuple(options[name])
        if options.get("replaces") is not None:
            options["replaces"] = key_of(options["replaces"])
        fields = Certificate(key_of(site), **options).to_fields()
        Certificate.from_fields(fields)  # refuse now what every replica would ignore
    except (TypeError, BundleFormatError) as exc:
        raise UsageError(f"not a valid certificate: {exc}") from exc
    return fields


def revocation_fields(
    site: bytes | PublicIdentity | Identity,
    *,
    effective_ms: int | None = None,
    after_seq: int | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The fields of a ``_trust`` revocation record; ``UsageError`` for values every
    replica would ignore as malformed."""
    if effective_ms is None and after_seq is None:
        raise UsageError("a revocation needs effective_ms, after_seq or both")
    fields = Revocation(key_of(site), effective_ms, after_seq, reason).to_fields()
    try:
        Revocation.from_fields(fields)  # refuse now what every replica would ignore
    except BundleFormatError as exc:
        raise UsageError(f"not a valid revocation: {exc}") from exc
    return fields


@dataclass(frozen=True, slots=True)
class _Rule:
    """Everything the trust store says about one key; compared to find what changed."""

    cert: Certificate | None = None
    revocation: Revocation | None = None
    retired_ms: int | None = None  # a certificate replacing this key starts here


@dataclass(frozen=True, slots=True)
class TrustStore:
    """Certificates and revocations in force, as decided by the ``_trust`` records.

    Build with ``TrustStore.from_records``; a replica keeps its own up to date
    (``Replica.trust_store``). Malformed records are ignored and listed in ``problems``.
    """

    authorities: frozenset[bytes] = frozenset()
    rules: Mapping[bytes, _Rule] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @classmethod
    def from_records(
        cls, authorities: Iterable[bytes], records: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> TrustStore:
        """From the visible ``_trust`` records, as ``(key, fields)`` pairs."""
        certs: dict[bytes, Certificate] = {}
        revocations: dict[bytes, Revocation] = {}
        problems: list[str] = []
        try:
            roots = frozenset(key_of(a) for a in authorities)
            pairs = [(key, fields) for key, fields in records]
        except UsageError:
            raise
        except (TypeError, ValueError) as exc:
            raise UsageError("authorities are site keys; records are (str, fields) pairs") from exc
        if not all(type(key) is str for key, _ in pairs):
            raise UsageError("trust record keys are str")
        for key, fields in sorted(pairs, key=lambda kv: kv[0]):
            try:
                if key.startswith(CERT_PREFIX):
                    cert = Certificate.from_fields(fields)
                    if key != CERT_PREFIX + cert.site.hex():
                        raise BundleFormatError("certificate stored under another key's name")
                    certs[cert.site] = cert
                elif key.startswith(REVOKE_PREFIX):
                    rev = Revocation.from_fields(fields)
                    if key != REVOKE_PREFIX + rev.site.hex():
                        raise BundleFormatError("revocation stored under another key's name")
                    revocations[rev.site] = rev
                else:
                    raise BundleFormatError("unknown kind of trust record")
            except BundleFormatError as exc:
                problems.append(f"{TRUST_COLLECTION}/{key}: {exc}")
        retired: dict[bytes, int] = {}
        for cert in certs.values():
            if cert.replaces is not None and cert.replaces != cert.site:
                at = retired.get(cert.replaces)
                retired[cert.replaces] = cert.valid_from if at is None else min(at, cert.valid_from)
        keys = set(certs) | set(revocations) | set(retired)
        rules = {k: _Rule(certs.get(k), revocations.get(k), retired.get(k)) for k in sorted(keys)}
        return cls(roots, rules, tuple(problems))

    @property
    def certificates(self) -> dict[bytes, Certificate]:
        return {k: r.cert for k, r in self.rules.items() if r.cert is not None}

    @property
    def revocations(self) -> dict[bytes, Revocation]:
        return {k: r.revocation for k, r in self.rules.items() if r.revocation is not None}

    def rule(self, key: bytes) -> _Rule | None:
        return self.rules.get(key)

    def may_read(self, site: bytes, now_ms: int) -> bool:
        """Whether ``site`` may be given data at ``now_ms``: an authority, or a key
        whose certificate is in force (valid now, not revoked, not replaced). The one
        rule every server and courier stop applies before handing data to a key."""
        if site in self.authorities:
            return True
        rule = self.rules.get(site)
        if rule is None or rule.cert is None:
            return False
        cert = rule.cert
        if rule.revocation is not None:
            effective = rule.revocation.effective_ms
            if effective is None or effective <= now_ms:
                return False
        if rule.retired_ms is not None and rule.retired_ms <= now_ms:
            return False
        return cert.valid_from <= now_ms and (cert.valid_until is None or now_ms < cert.valid_until)

    def changed_keys(self, other: TrustStore) -> set[bytes]:
        """Keys whose rules differ between two trust stores."""
        keys = set(self.rules) | set(other.rules)
        return {k for k in keys if self.rules.get(k) != other.rules.get(k)}

    def digest(self) -> bytes:
        """Identifies the rules in force (and the authorities)."""
        h = hashlib.blake2b(b"offsync/trust/v1\x00", digest_size=32)
        h.update(packb(sorted(self.authorities)))
        for k, r in self.rules.items():
            h.update(
                packb(
                    [
                        k,
                        r.cert.to_fields() if r.cert else None,
                        r.revocation.to_fields() if r.revocation else None,
                        r.retired_ms,
                    ]
                )
            )
        return h.digest()

    def check(self, origin: bytes, seq: int, hlc: int, collection: str, key: str) -> str | None:
        """None if ``origin`` may write ``collection/key`` at ``hlc``; else why not."""
        status = self.verdict(origin, seq, hlc, collection, key)
        return None if status is None else str(status)

    def verdict(
        self, origin: bytes, seq: int, hlc: int, collection: str, key: str
    ) -> Status | None:
        """``check`` as a ``Status`` (kinds ``trust``, ``validity``, ``scope``), or None."""
        if collection == TRUST_COLLECTION:
            return None if origin in self.authorities else _NOT_AN_AUTHORITY
        r = self.rules.get(origin)
        if r is None or r.cert is None:
            return _UNKNOWN_SIGNER
        probe = Change(origin, seq, hlc, collection, key, 0, None)
        if r.revocation is not None and r.revocation.revokes(probe):
            return _REVOKED
        ms = hlc_millis(hlc)
        if r.retired_ms is not None and ms >= r.retired_ms:
            return _REPLACED
        if ms < r.cert.valid_from:
            return _NOT_YET_VALID
        if r.cert.valid_until is not None and ms >= r.cert.valid_until:
            return _EXPIRED
        return r.cert.scope_verdict(collection, key)


_NOT_AN_AUTHORITY = Status(Kind.TRUST, "not an authority")
_UNKNOWN_SIGNER = Status(Kind.TRUST, "unknown signer")
_REVOKED = Status(Kind.TRUST, "key revoked")
_REPLACED = Status(Kind.TRUST, "key replaced by a newer key")
_NOT_YET_VALID = Status(Kind.VALIDITY, "certificate not yet valid")
_EXPIRED = Status(Kind.VALIDITY, "certificate expired")
_OUTSIDE_PREFIXES = Status(Kind.SCOPE, "key outside the allowed prefixes")


def refusal(
    change: Change,
    trust: TrustStore | None,
    validators: Mapping[str, Validator] | None = None,
) -> str | None:
    """Why ``change`` may not be applied, or None. ``trust=None`` is open mode.

    Reasons start with ``trust:``, ``validity:``, ``scope:`` or ``validator:`` and never
    contain a record key or a field value (``verdict`` gives them as ``Status`` values).
    """
    status = verdict(change, trust, validators)
    return None if status is None else str(status)


def verdict(
    change: Change,
    trust: TrustStore | None,
    validators: Mapping[str, Validator] | None = None,
) -> Status | None:
    """``refusal`` as a ``Status``: None when ``change`` may be applied."""
    if trust is not None:
        status = trust.verdict(change.origin, change.seq, change.hlc, change.collection, change.key)
        if status is not None:
            return status
    validator = validators.get(change.collection) if validators else None
    if validator is None:
        return None
    try:
        answer = validator(change.key, change.values() if change.fields is not None else None)
    except Exception as exc:
        return Status(Kind.VALIDATOR, f"{change.collection} raised {type(exc).__name__}")
    if answer is None or answer is True:
        return None
    if isinstance(answer, str) and answer:
        return Status(Kind.VALIDATOR, f"{change.collection}: {answer}")
    return Status(Kind.VALIDATOR, f"{change.collection} refused")


class _Writer(Protocol):
    def put(self, collection: str, key: str, fields: Mapping[str, Any]) -> Any: ...


def issue_certificate(
    authority: _Writer, site: bytes | PublicIdentity | Identity, **options: Any
) -> Any:
    """Write a certificate for ``site`` into ``authority``'s replica (an authority's key).

    Re-issuing replaces the previous certificate of the same key (renewal, new scope).
    Returns the change id; the certificate travels like any other change.
    """
    fields = certificate_fields(site, **options)
    return authority.put(TRUST_COLLECTION, CERT_PREFIX + fields["site"].hex(), fields)


def revoke(
    authority: _Writer,
    site: bytes | PublicIdentity | Identity,
    *,
    effective_ms: int | None = None,
    after_seq: int | None = None,
    reason: str = "",
) -> Any:
    """Write a revocation of ``site`` into ``authority``'s replica."""
    fields = revocation_fields(site, effective_ms=effective_ms, after_seq=after_seq, reason=reason)
    return authority.put(TRUST_COLLECTION, REVOKE_PREFIX + fields["site"].hex(), fields)
