"""Trust: which keys may write and read what, decided from data signed by an authority.

The root of trust is a set of *authority* public keys that a replica is given out of
band when it is opened (``Replica.open(..., trust=[authority_key])``). Everything else
travels in-band, as ordinary changes of the reserved collection ``_trust`` that only an
authority may write, so certificates reach offline sites by the same paths as data:

* ``cert/<site key hex>`` — a site certificate: the site's key, a label, the
  collections it may write, the key prefixes it may write (a district's region code),
  optionally its ``read`` scope (default: what it may write), a validity period in ms
  since the epoch, and optionally the key it ``replaces`` (rotation: the old key's
  changes made before the new certificate's ``valid_from`` stay valid, later ones are
  refused).
* ``revoke/<site key hex>`` — a revocation: changes of the key with a timestamp at or
  after ``effective_ms``, or beyond ``after`` (per stream, the last seq kept; every
  change of a stream it does not list), are refused; earlier ones are kept. ``after``
  pins the revocation to what the centre already holds, which a thief holding the key
  cannot backdate around (docs/spec.md §13.4). ``after_seq`` is format 2's form of
  it (one seq over all of the key's changes); format 3's spec does not define it, and it
  is still honoured here, to be removed.

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
from types import MappingProxyType
from typing import Any, Protocol

from .change import Change
from .clock import MAX_HLC, hlc_millis
from .encoding import packb
from .errors import BundleFormatError, UsageError
from .identity import Identity, PublicIdentity, key_of
from .scope import (
    Partition,
    PartitionRule,
    Scope,
    Stream,
    check_collection,
    check_prefix,
)
from .status import Kind, Status

__all__ = [
    "TRUST_COLLECTION",
    "Certificate",
    "Revocation",
    "TrustStore",
    "Validator",
    "after_held",
    "certificate_fields",
    "issue_certificate",
    "refusal",
    "revocation_fields",
    "verdict",
    "revoke",
    "write_scope",
]

#: The reserved system collection holding certificates and revocations.
TRUST_COLLECTION = "_trust"
CERT_PREFIX = "cert/"
REVOKE_PREFIX = "revoke/"
#: In a certificate's ``collections``, allows every collection except ``_trust``.
ANY_COLLECTION = "*"
#: A change's op that only an authority may write (an erase order, spec §10.3).
ERASE_OP = 2

#: A collection validator: gets ``(key, fields or None for a delete)``; returns None or
#: True to accept, False or a short reason string to refuse. An exception refuses too
#: (only its type name is recorded, so no field value ends up in a reason).
Validator = Callable[[str, "dict[str, Any] | None"], "bool | str | None"]


def _in_range(value: Any, optional: bool = False) -> bool:
    """A ms time or seq from a record: an int in [0, 2^63) (signed 64-bit everywhere)."""
    if value is None:
        return optional
    return type(value) is int and 0 <= value <= MAX_HLC


def _is_name(value: str, check: Callable[[Any], str]) -> bool:
    try:
        check(value)
    except UsageError:
        return False
    return True


def write_scope(collections: Iterable[str], prefixes: Iterable[str]) -> Scope:
    """A certificate's write scope as a ``Scope``: ``collections`` (``"*"``: every
    collection but ``_trust``) times ``prefixes`` (empty: any key).

    A name that cannot be a collection, or a prefix longer than any key, matches no
    record, so it adds nothing (and if every prefix is such, the scope is empty, not
    "any key")."""
    keys = list(prefixes)
    usable = [p for p in keys if _is_name(p, check_prefix)]
    if keys and not usable:
        return Scope.nothing()
    names = [c for c in collections if c == ANY_COLLECTION or _is_name(c, check_collection)]
    return Scope.from_certificate(names, usable)


@dataclass(frozen=True, slots=True)
class Certificate:
    """What one site key may write and read, and when."""

    site: bytes
    label: str = ""
    collections: tuple[str, ...] = (ANY_COLLECTION,)
    prefixes: tuple[str, ...] = ()  # empty: any key
    valid_from: int = 0  # ms since the epoch, inclusive
    valid_until: int | None = None  # ms since the epoch, exclusive; None: no end
    replaces: bytes | None = None
    read: Scope | None = None  # None: the write scope (collections x prefixes)

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

    @property
    def read_scope(self) -> Scope:
        """What the certificate lets its site read: ``read``, or else the write scope.
        (A server adds ``_trust`` and the reference collections: ``offsync.readable``.)"""
        if self.read is not None:
            return self.read
        return write_scope(self.collections, self.prefixes)

    def to_fields(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "label": self.label,
            "prefixes": list(self.prefixes),
            "read": None if self.read is None else self.read.to_read_field(),
            "replaces": self.replaces,
            "site": self.site,
            "type": "cert",
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
        }

    @classmethod
    def from_fields(
        cls, f: Mapping[str, Any], partitions: PartitionRule | None = None
    ) -> Certificate:
        """Parse certificate fields (a ``_trust`` record, from elsewhere);
        ``BundleFormatError`` when they are malformed. With the deployment's partition
        rule, a ``read`` prefix longer than its collection's ``L`` is malformed too."""
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
        raw_read = f.get("read")
        try:
            read = None if raw_read is None else Scope.from_read_field(raw_read, partitions)
        except (BundleFormatError, UsageError) as exc:
            raise BundleFormatError(f"malformed certificate: {exc}") from exc
        return cls(site, f.get("label", ""), tuple(cols), tuple(prefixes), vf, vu, replaces, read)


def _after_map(after: Any) -> Mapping[Partition, int] | None:
    """``after`` as a read-only mapping sorted by partition (keys may be given as
    ``(collection, prefix)`` pairs)."""
    if after is None:
        return None
    if not isinstance(after, Mapping):
        raise UsageError("after maps partitions to the last seq kept")
    pairs = [(k if isinstance(k, Partition) else Partition(*k), v) for k, v in after.items()]
    return MappingProxyType(dict(sorted(pairs)))


@dataclass(frozen=True, slots=True)
class Revocation:
    """A key's changes from ``effective_ms`` on, or beyond ``after`` (per stream: the
    last seq kept; a stream not listed loses every change), are refused.

    ``after_seq`` is format 2's one seq over all of the key's changes; format 3 numbers
    each stream and its spec has no such field, so it is to be removed."""

    site: bytes
    effective_ms: int | None = None
    after_seq: int | None = None
    reason: str = ""
    after: Mapping[Partition, int] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "after", _after_map(self.after))

    def revokes(self, change: Any) -> bool:
        """Whether ``change`` (anything with ``seq``, ``hlc``, ``collection`` and, in
        format 3, ``prefix``) is revoked."""
        return self.revokes_at(
            Partition(change.collection, getattr(change, "prefix", "")),
            change.seq,
            hlc_millis(change.hlc),
        )

    def revokes_at(self, partition: Partition | None, seq: int, ms: int) -> bool:
        """Whether the change ``seq`` of stream ``(site, partition)`` at ``ms`` is
        revoked (docs/spec.md §13.5 step 3)."""
        if self.effective_ms is not None and ms >= self.effective_ms:
            return True
        if self.after is not None:
            kept = None if partition is None else self.after.get(partition)
            if kept is None or seq > kept:
                return True
        return self.after_seq is not None and seq > self.after_seq

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "after": None
            if self.after is None
            else [[p.collection, p.prefix, seq] for p, seq in self.after.items()],
            "effective_ms": self.effective_ms,
            "reason": self.reason,
            "site": self.site,
            "type": "revoke",
        }
        if self.after_seq is not None:
            fields["after_seq"] = self.after_seq
        return fields

    @classmethod
    def from_fields(cls, f: Mapping[str, Any]) -> Revocation:
        """Parse revocation fields (a ``_trust`` record, from elsewhere);
        ``BundleFormatError`` when they are malformed."""
        if not isinstance(f, Mapping):
            raise BundleFormatError("malformed revocation")
        site, eff, after_seq = f.get("site"), f.get("effective_ms"), f.get("after_seq")
        after = _parse_after(f.get("after"))
        if (
            f.get("type") != "revoke"
            or type(site) is not bytes
            or len(site) != 32
            or not _in_range(eff, optional=True)
            or not _in_range(after_seq, optional=True)
            or (eff is None and after is None and after_seq is None)
            or type(f.get("reason", "")) is not str
        ):
            raise BundleFormatError("malformed revocation")
        return cls(site, eff, after_seq, f.get("reason", ""), after)


class _Held(Protocol):
    def partitions(self, origin: bytes) -> Iterable[Partition]: ...
    def max_seq(self, stream: Stream) -> int: ...


def after_held(knowledge: _Held, site: bytes | PublicIdentity | Identity) -> dict[Partition, int]:
    """The ``after`` of a revocation that keeps exactly what ``knowledge`` (format 3,
    keyed by stream: the centre's, or its receipt's) holds of ``site``: per stream, the
    highest seq held. ``revoke(authority, key, after=after_held(centre.knowledge(), key))``."""
    origin = key_of(site)
    return {p: knowledge.max_seq(Stream(origin, p)) for p in knowledge.partitions(origin)}


def _parse_after(value: Any) -> dict[Partition, int] | None:
    """A revocation's ``after`` field: ``[[collection, prefix, seq], ...]`` sorted by
    (collection, prefix), unique; ``BundleFormatError`` for anything else."""
    if value is None:
        return None
    if type(value) is not list:
        raise BundleFormatError("malformed revocation: after is an array")
    out: dict[Partition, int] = {}
    last: Partition | None = None
    for item in value:
        if type(item) is not list or len(item) != 3:
            raise BundleFormatError("malformed revocation: after holds [collection, prefix, seq]")
        collection, prefix, seq = item
        try:
            partition = Partition(
                check_collection(collection, BundleFormatError),
                check_prefix(prefix, BundleFormatError),
            )
        except UsageError as exc:
            raise BundleFormatError(f"malformed revocation: {exc}") from exc
        if not _in_range(seq):
            raise BundleFormatError("malformed revocation: a seq in after is not in [0, 2^63)")
        if last is not None and partition <= last:
            raise BundleFormatError("malformed revocation: after is not sorted and unique")
        out[partition] = seq
        last = partition
    return out


def certificate_fields(
    site: bytes | PublicIdentity | Identity,
    *,
    partitions: PartitionRule | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The fields of a ``_trust`` certificate record (see ``Certificate`` for options;
    ``read`` is a ``Scope``, a ``{collection: prefixes}`` mapping or None for the write
    scope); ``UsageError`` for options every replica would ignore as malformed, and,
    given the deployment's ``partitions`` rule, for a read prefix longer than its ``L``."""
    options = dict(options)
    read = options.get("read")
    if read is not None and not isinstance(read, Scope):
        if not isinstance(read, Mapping):
            raise UsageError("read is a Scope, a {collection: prefixes} mapping or None")
        options["read"] = read = Scope(read)
    if read is not None and partitions is not None:
        read.validate(partitions)
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
        Certificate.from_fields(fields, partitions)  # refuse now what replicas would ignore
    except (TypeError, BundleFormatError) as exc:
        raise UsageError(f"not a valid certificate: {exc}") from exc
    return fields


def revocation_fields(
    site: bytes | PublicIdentity | Identity,
    *,
    effective_ms: int | None = None,
    after: Mapping[Partition, int] | Mapping[tuple[str, str], int] | None = None,
    after_seq: int | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """The fields of a ``_trust`` revocation record; ``UsageError`` for values every
    replica would ignore as malformed.

    ``after`` maps each stream's partition to the last seq of the key kept there (what
    the centre holds: its receipt); every change of a partition not listed is revoked.
    ``after_seq`` is format 2's one seq over all the key's changes."""
    if effective_ms is None and after is None and after_seq is None:
        raise UsageError("a revocation needs effective_ms, after, or both")
    try:
        streams = _after_map(after)
        fields = Revocation(key_of(site), effective_ms, after_seq, reason, streams).to_fields()
    except TypeError as exc:
        raise UsageError(f"not a valid revocation: {exc}") from exc
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
    It decides writes (``check``, ``verdict``) and reads (``read_scope``).
    """

    authorities: frozenset[bytes] = frozenset()
    rules: Mapping[bytes, _Rule] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # Each certificate's read scope, made on first use (a server asks per request; a
    # scope takes tens of µs to build, and a store may hold thousands of certificates).
    _reads: dict[bytes, Scope] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def from_records(
        cls,
        authorities: Iterable[bytes],
        records: Iterable[tuple[str, Mapping[str, Any]]],
        partitions: PartitionRule | None = None,
    ) -> TrustStore:
        """From the visible ``_trust`` records, as ``(key, fields)`` pairs. With the
        deployment's ``partitions`` rule, a certificate whose ``read`` scope has a prefix
        longer than its collection's ``L`` is malformed (spec §13.3)."""
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
                    cert = Certificate.from_fields(fields, partitions)
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

    def in_force(self, site: bytes, now_ms: int) -> Certificate | None:
        """``site``'s certificate if it is in force at ``now_ms``: valid now, not revoked
        (a revocation with ``after`` or ``after_seq`` is in force at once; one by
        ``effective_ms`` from then on), not retired by a successor. Authorities have
        none (they need none)."""
        rule = self.rules.get(site)
        if rule is None or rule.cert is None:
            return None
        cert = rule.cert
        rev = rule.revocation
        if rev is not None and (
            rev.after is not None
            or rev.after_seq is not None
            or (rev.effective_ms is not None and rev.effective_ms <= now_ms)
        ):
            return None
        if rule.retired_ms is not None and rule.retired_ms <= now_ms:
            return None
        if now_ms < cert.valid_from or (
            cert.valid_until is not None and now_ms >= cert.valid_until
        ):
            return None
        return cert

    def read_scope(self, site: bytes, now_ms: int) -> Scope:
        """What ``site`` may read at ``now_ms``: everything for an authority; its
        certificate's read scope (``read``, else the write scope) while the certificate
        is in force; else nothing. ``_trust`` and reference data are added by the
        caller's rule, not here (``offsync.readable.read_scope_of``)."""
        if site in self.authorities:
            return Scope.everything()
        cert = self.in_force(site, now_ms)
        if cert is None:
            return Scope.nothing()
        scope = self._reads.get(site)
        if scope is None:
            scope = self._reads[site] = cert.read_scope
        return scope

    def may_read(self, site: bytes, now_ms: int) -> bool:
        """Whether ``site`` may be given data at ``now_ms``: an authority, or a key
        whose certificate is in force. A certified site whose read scope is empty still
        reads ``_trust`` (it must learn who it trusts), so this is "certified now", the
        same as ``offsync.readable.read_scope_of`` being non-empty."""
        return site in self.authorities or self.in_force(site, now_ms) is not None

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

    def check(
        self,
        origin: bytes,
        seq: int,
        hlc: int,
        collection: str,
        key: str,
        *,
        prefix: str = "",
        op: int = 0,
    ) -> str | None:
        """None if ``origin`` may write ``collection/key`` at ``hlc``; else why not.
        ``prefix`` is the change's partition prefix (its stream, for ``after``); ``op``
        its op (an erase order only by an authority)."""
        status = self.verdict(origin, seq, hlc, collection, key, prefix=prefix, op=op)
        return None if status is None else str(status)

    def verdict(
        self,
        origin: bytes,
        seq: int,
        hlc: int,
        collection: str,
        key: str,
        *,
        prefix: str = "",
        op: int = 0,
    ) -> Status | None:
        """``check`` as a ``Status`` (kinds ``trust``, ``validity``, ``scope``), or None:
        the steps of docs/spec.md §13.5 in order."""
        if collection == TRUST_COLLECTION or op == ERASE_OP:
            return None if origin in self.authorities else _NOT_AN_AUTHORITY
        r = self.rules.get(origin)
        if r is None or r.cert is None:
            return _UNKNOWN_SIGNER
        ms = hlc_millis(hlc)
        if r.revocation is not None and r.revocation.revokes_at(
            _partition(collection, prefix), seq, ms
        ):
            return _REVOKED
        if r.retired_ms is not None and ms >= r.retired_ms:
            return _REPLACED
        if ms < r.cert.valid_from:
            return _NOT_YET_VALID
        if r.cert.valid_until is not None and ms >= r.cert.valid_until:
            return _EXPIRED
        return r.cert.scope_verdict(collection, key)


def _partition(collection: str, prefix: str) -> Partition | None:
    """The stream partition of a checked change; None (which no ``after`` lists) for
    names that cannot make one (format 2 did not check collection names)."""
    try:
        return Partition(collection, prefix)
    except UsageError:
        return None


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
        status = trust.verdict(
            change.origin,
            change.seq,
            change.hlc,
            change.collection,
            change.key,
            prefix=getattr(change, "prefix", ""),
            op=change.op,
        )
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
    after: Mapping[Partition, int] | Mapping[tuple[str, str], int] | None = None,
    after_seq: int | None = None,
    reason: str = "",
) -> Any:
    """Write a revocation of ``site`` into ``authority``'s replica (see
    ``revocation_fields``: ``after={Partition(c, p): last seq kept}`` per stream)."""
    fields = revocation_fields(
        site, effective_ms=effective_ms, after=after, after_seq=after_seq, reason=reason
    )
    return authority.put(TRUST_COLLECTION, REVOKE_PREFIX + fields["site"].hex(), fields)
