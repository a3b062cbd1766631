"""Partitions, streams and scopes: which part of the registry a replica holds (format 3).

A deployment-wide **partition rule** gives each collection a key-prefix length ``L``
in code points; a record ``(collection, key)`` lies in the partition
``(collection, key[:L])`` (docs/spec-v3.md §4). An origin numbers and chains its
changes per **stream** ``(origin, partition)``, so a server can send a scoped site the
whole segments of the streams in its scope, byte for byte as their origins signed
them, and knowledge stays exact intervals per stream.

A **scope** is a set of partitions: per collection, the partitions whose prefix starts
with one of some key prefixes, or the whole collection; or everything. Scopes are
closed under union, intersection and difference (a scope that grew by a neighbouring
district minus the one it had is "what to fetch"), which include-lists alone are not:
"the whole collection minus region 35" is no finite list of prefixes. So a scope is
kept as *labels*: per collection, a few prefixes each marked in or out, where the
longest listed prefix that starts a partition prefix decides (none: out); collections
the scope does not name follow the labels of ``others``. Every operation is pointwise
on partition prefixes, so the laws of sets hold exactly, and a canonical form (no
label that repeats what it inherits) makes equal scopes equal values.

Membership compares the partition *prefix* with the scope's prefixes: a partition
``(c, q)`` is in scope iff the longest listed prefix ``p`` of ``c`` with
``q.startswith(p)`` is marked in. That is also what every record of the partition is,
provided no scope prefix is longer than the rule's ``L`` (``Scope.validate``): a site
cannot hold part of a partition.

This module is sans-IO.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from operator import and_, or_
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, Self

import msgpack

from .errors import BundleFormatError, OffsyncError, UsageError

__all__ = [
    "ANY_COLLECTION",
    "MAX_COLLECTION_BYTES",
    "MAX_PREFIX_BYTES",
    "TRUST_COLLECTION",
    "WHOLE",
    "Partition",
    "PartitionRule",
    "Scope",
    "Stream",
    "whole",
]

#: The reserved collection of certificates and revocations: always one partition
#: (``L = 0``) and in every replica's scope.
TRUST_COLLECTION = "_trust"
#: In a certificate's ``read`` field, the key that stands for every collection.
ANY_COLLECTION = "*"
#: Format rules (docs/spec-v3.md §1): a collection name is 1-64 UTF-8 bytes; a
#: partition or scope prefix is a key prefix, at most a key's 512 bytes.
MAX_COLLECTION_BYTES = 64
MAX_PREFIX_BYTES = 512


def _utf8_length(value: str, what: str, error: type[Exception]) -> int:
    try:
        return len(value.encode())
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 encoding exists
        raise error(f"{what} is not valid Unicode text") from exc


def check_collection(
    value: Any, error: type[Exception] = UsageError, too_long: type[Exception] | None = None
) -> str:
    """``value`` if it is a collection name (a str of 1-64 UTF-8 bytes), else ``error``
    (``too_long`` for a str over 64 bytes; by default ``error`` too)."""
    if type(value) is not str or not value:
        raise error("a collection name is a non-empty str")
    size = len(value) if value.isascii() else _utf8_length(value, "a collection name", error)
    if size > MAX_COLLECTION_BYTES:
        raise (too_long or error)(
            f"a collection name is at most {MAX_COLLECTION_BYTES} UTF-8 bytes"
        )
    return value


def check_prefix(
    value: Any, error: type[Exception] = UsageError, too_long: type[Exception] | None = None
) -> str:
    """``value`` if it is a key prefix (a str of at most 512 UTF-8 bytes), else ``error``
    (``too_long`` for a longer str; by default ``error`` too)."""
    if type(value) is not str:
        raise error("a key prefix is a str")
    size = len(value) if value.isascii() else _utf8_length(value, "a key prefix", error)
    if size > MAX_PREFIX_BYTES:
        raise (too_long or error)(f"a key prefix is at most {MAX_PREFIX_BYTES} UTF-8 bytes")
    return value


class _PartitionFields(NamedTuple):
    collection: str
    prefix: str


class Partition(_PartitionFields):
    """The records of ``collection`` whose key starts with ``prefix``, as a partition
    rule cuts them. Ordered as the wire orders them: by collection, then prefix (code
    points, which is UTF-8 byte order).

    A tuple underneath (hashing and comparing in C: knowledge of a centre holds
    hundreds of thousands of streams), which validates itself when built.
    """

    __slots__ = ()

    def __new__(cls, collection: str, prefix: str = "") -> Self:
        check_collection(collection)
        check_prefix(prefix)
        return super().__new__(cls, collection, prefix)

    def __repr__(self) -> str:
        return f"Partition({self.collection!r}, {self.prefix!r})"

    def _replace(self, **changes: Any) -> Self:
        return type(self)(**{**self._asdict(), **changes})


class _StreamFields(NamedTuple):
    origin: bytes
    partition: Partition


class Stream(_StreamFields):
    """One origin's changes in one partition: numbered 1, 2, 3 … without gaps, and
    chained by their segments' hashes. Ordered by origin bytes, then partition."""

    __slots__ = ()

    def __new__(cls, origin: bytes, partition: Partition) -> Self:
        if type(origin) is not bytes or len(origin) != 32:
            raise UsageError("a stream's origin is a 32-byte site key")
        if not isinstance(partition, Partition):
            raise UsageError("a stream's partition is a Partition")
        return super().__new__(cls, origin, partition)

    def __repr__(self) -> str:
        return f"Stream({self.origin!r}, {self.partition!r})"

    def _replace(self, **changes: Any) -> Self:
        return type(self)(**{**self._asdict(), **changes})

    @property
    def collection(self) -> str:
        return self.partition.collection

    @property
    def prefix(self) -> str:
        return self.partition.prefix


# Built from values a decoder has already checked: no validation, no Python __new__.
def new_partition(collection: str, prefix: str) -> Partition:
    return tuple.__new__(Partition, (collection, prefix))


def new_stream(origin: bytes, partition: Partition) -> Stream:
    return tuple.__new__(Stream, (origin, partition))


#: Format 2's one partition: all of an origin's changes. Its collection is empty, which
#: ``Partition`` refuses, so a format-2 stream is never mistaken for a format-3 one.
WHOLE = new_partition("", "")


def whole(origin: bytes) -> Stream:
    """The one stream of ``origin`` in format 2 (``Stream(origin, WHOLE)``)."""
    return tuple.__new__(Stream, (origin, WHOLE))


@dataclass(frozen=True, slots=True)
class PartitionRule:
    """The deployment's partition rule: per collection, the key-prefix length ``L`` in
    code points that cuts it into partitions (0, the default: one partition).

    Deployment-wide configuration, like merge policies: every replica is opened with
    the same rule. ``_trust`` is always one partition. Changing a collection's ``L``
    in a live deployment is a migration that format 3 does not support.
    """

    lengths: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.lengths, Mapping):
            raise UsageError("a partition rule maps collection names to prefix lengths")
        clean: dict[str, int] = {}
        for collection, length in self.lengths.items():
            check_collection(collection)
            if type(length) is not int or not 0 <= length <= MAX_PREFIX_BYTES:
                raise UsageError(
                    f"the prefix length of {collection!r} is an int in [0, {MAX_PREFIX_BYTES}]"
                )
            if collection == TRUST_COLLECTION and length:
                raise UsageError("_trust is always one partition (length 0)")
            if length:
                clean[collection] = length
        object.__setattr__(self, "lengths", MappingProxyType(dict(sorted(clean.items()))))

    def __repr__(self) -> str:
        return f"PartitionRule({dict(self.lengths)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartitionRule):
            return NotImplemented
        return dict(self.lengths) == dict(other.lengths)

    def __hash__(self) -> int:
        return hash(tuple(self.lengths.items()))

    def length(self, collection: str) -> int:
        """``L`` of ``collection`` (0 for collections the rule does not name)."""
        return self.lengths.get(collection, 0)

    def partition_of(self, collection: str, key: str) -> Partition:
        """The partition of record ``(collection, key)``: ``(collection, key[:L])``."""
        check_collection(collection)
        if type(key) is not str:
            raise UsageError("a record key is a str")
        return Partition(collection, key[: self.lengths.get(collection, 0)])

    def owns(self, partition: Partition, key: str) -> bool:
        """Whether this rule puts record ``(partition.collection, key)`` in ``partition``."""
        return key[: self.lengths.get(partition.collection, 0)] == partition.prefix

    def is_partition(self, partition: Partition) -> bool:
        """Whether ``partition`` can be one of this rule's: its prefix is ``L`` code points
        long, or shorter (a key shorter than ``L`` is a partition of its own)."""
        return len(partition.prefix) <= self.lengths.get(partition.collection, 0)


# -- labels: the prefix sets a scope is made of ----------------------------------------

#: Per collection, prefix -> in (True) or out (False); the longest listed prefix of a
#: partition prefix decides, and a partition prefix no listed prefix starts is out.
Labels = Mapping[str, bool]
_NOTHING: Labels = MappingProxyType({})
_WHOLE: Labels = MappingProxyType({"": True})


def _label(labels: Labels, prefix: str, longest: int) -> bool:
    for i in range(min(len(prefix), longest), -1, -1):
        found = labels.get(prefix[:i])
        if found is not None:
            return found
    return False


def _longest(labels: Labels) -> int:
    return max(map(len, labels), default=0)


def _reduce(labels: Mapping[str, bool]) -> Labels:
    """The canonical form: drop every label that repeats what it inherits."""
    kept: dict[str, bool] = {}
    for prefix in sorted(labels, key=len):
        inherited = _label(kept, prefix[:-1], len(prefix) - 1) if prefix else False
        if labels[prefix] != inherited:
            kept[prefix] = labels[prefix]
    return MappingProxyType(dict(sorted(kept.items())))


def _merge(a: Labels, b: Labels, op: Callable[[bool, bool], bool]) -> Labels:
    """Pointwise ``op`` of two label sets: each is constant between its own labels, so
    evaluating both at the union of their labels (and at the root) is exact."""
    la, lb = _longest(a), _longest(b)
    points = {"", *a, *b}
    return _reduce({p: op(_label(a, p, la), _label(b, p, lb)) for p in points})


def _labels_of(spec: Any, what: str) -> Labels:
    """A collection's labels from the constructor's two forms: an iterable of included
    prefixes (empty: the whole collection) or a mapping of prefix -> in/out."""
    if isinstance(spec, str):  # one prefix would become its letters
        raise UsageError(f"{what}: give prefixes as a list of str, not one str")
    if isinstance(spec, Mapping):
        for prefix, inside in spec.items():
            check_prefix(prefix)
            if type(inside) is not bool:
                raise UsageError(f"{what}: a label is True (in) or False (out)")
        return _reduce(dict(spec))
    try:
        prefixes = list(spec)
    except TypeError as exc:
        raise UsageError(f"{what}: prefixes are an iterable of str") from exc
    for prefix in prefixes:
        check_prefix(prefix)
    return _reduce(dict.fromkeys(prefixes or [""], True))


class _Restrictable(Protocol):
    def restrict(self, scope: Scope) -> Any: ...


class Scope:
    """A set of partitions: per collection, those under some key prefixes, or the whole
    collection; or everything (``Scope.everything()``).

    ``Scope({"residents": ["351901", "351902"], "vaccine_lots": []})``: residents of two
    districts and every vaccine lot (an empty list is the whole collection, as in a
    certificate). Scopes made by ``|``, ``&`` and ``-`` may also exclude prefixes; their
    repr then gives each collection's labels (``{prefix: in?}``). ``others`` is what the
    scope holds of the collections it does not name, in the same two forms (default:
    nothing). Immutable and hashable; equal scopes are equal values.

    ``_trust`` and the deployment's reference collections belong to every replica's
    scope, but that is the replica's rule, not this value's: a ``Scope`` holds exactly
    what it says (``including`` adds them), so the algebra stays exact.
    """

    __slots__ = ("_collections", "_longest", "_others", "_others_longest")

    _collections: Mapping[str, Labels]
    _others: Labels
    _longest: Mapping[str, int]
    _others_longest: int

    def __init__(
        self,
        collections: Mapping[str, Iterable[str] | Mapping[str, bool]] | None = None,
        *,
        others: Iterable[str] | Mapping[str, bool] | None = None,
    ) -> None:
        if collections is None:
            collections = {}
        if not isinstance(collections, Mapping):
            raise UsageError("a scope maps collection names to key prefixes")
        default = _NOTHING if others is None else _labels_of(others, "others")
        named: dict[str, Labels] = {}
        for collection, spec in collections.items():
            check_collection(collection)
            named[collection] = _labels_of(spec, repr(collection))
        self._set(named, default)

    def _set(self, named: Mapping[str, Labels], others: Labels) -> None:
        kept = {c: labels for c, labels in sorted(named.items()) if labels != others}
        object.__setattr__(self, "_collections", MappingProxyType(kept))
        object.__setattr__(self, "_others", others)
        object.__setattr__(self, "_longest", {c: _longest(labels) for c, labels in kept.items()})
        object.__setattr__(self, "_others_longest", _longest(others))

    @classmethod
    def _of(cls, named: Mapping[str, Labels], others: Labels) -> Scope:
        scope = object.__new__(cls)
        scope._set(named, others)
        return scope

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"Scope is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"Scope is immutable: cannot delete {name!r}")

    # -- construction -------------------------------------------------------------------

    @classmethod
    def everything(cls) -> Scope:
        """Every partition of every collection (a centre)."""
        return cls._of({}, _WHOLE)

    @classmethod
    def nothing(cls) -> Scope:
        return cls._of({}, _NOTHING)

    @classmethod
    def whole(cls, *collections: str) -> Scope:
        """The whole of each of ``collections``."""
        return cls(dict.fromkeys(collections, ()))

    @classmethod
    def from_certificate(cls, collections: Iterable[str], prefixes: Iterable[str]) -> Scope:
        """A certificate's write scope as a scope: ``collections`` (``"*"``: every
        collection) times ``prefixes`` (empty: any key). ``_trust`` is never in it."""
        names, keys = list(collections), list(prefixes)
        labels = _labels_of(keys, "prefixes")
        named = {c: labels for c in names if c != ANY_COLLECTION}
        for c in named:
            check_collection(c)
        scope = cls._of(named, labels if ANY_COLLECTION in names else _NOTHING)
        return scope - cls.whole(TRUST_COLLECTION)

    def including(self, *collections: str) -> Scope:
        """This scope plus the whole of ``collections`` (``_trust``, reference data)."""
        return self | Scope.whole(*collections)

    # -- what it holds ------------------------------------------------------------------

    @property
    def is_everything(self) -> bool:
        return not self._collections and self._others == _WHOLE

    @property
    def is_empty(self) -> bool:
        return not self._collections and not self._others

    def __bool__(self) -> bool:
        return not self.is_empty

    def labels(self, collection: str) -> Labels:
        """``collection``'s labels: prefix -> in (True) or out (False)."""
        return self._collections.get(collection, self._others)

    def collections(self) -> Iterator[str]:
        """The collections this scope names (the others follow ``others``)."""
        return iter(self._collections)

    @property
    def others(self) -> Labels:
        return self._others

    def holds(self, collection: str, prefix: str) -> bool:
        """Whether partition ``(collection, prefix)`` is in this scope (no checks: the
        hot form of ``in``)."""
        labels = self._collections.get(collection)
        if labels is None:
            return _label(self._others, prefix, self._others_longest)
        return _label(labels, prefix, self._longest[collection])

    def __contains__(self, item: object) -> bool:
        """``Partition(...) in scope`` or ``Stream(...) in scope``."""
        if isinstance(item, Stream):
            item = item.partition
        if not isinstance(item, Partition):
            raise UsageError("a scope holds partitions and streams")
        return self.holds(item.collection, item.prefix)

    def contains_record(self, collection: str, key: str) -> bool:
        """Whether record ``(collection, key)`` is in scope (its key, against the
        prefixes: the same as its partition's when the scope suits the rule)."""
        check_collection(collection)
        if type(key) is not str:
            raise UsageError("a record key is a str")
        return self.holds(collection, key)

    def restrict(self, knowledge: _Restrictable) -> Any:
        """``knowledge`` restricted to the streams in this scope."""
        return knowledge.restrict(self)

    # -- algebra ------------------------------------------------------------------------

    def _combine(self, other: Scope, op: Callable[[bool, bool], bool]) -> Scope:
        if not isinstance(other, Scope):
            raise UsageError("scopes combine with scopes")
        names = set(self._collections) | set(other._collections)
        named = {c: _merge(self.labels(c), other.labels(c), op) for c in names}
        return Scope._of(named, _merge(self._others, other._others, op))

    def union(self, other: Scope) -> Scope:
        return self._combine(other, or_)

    def intersection(self, other: Scope) -> Scope:
        return self._combine(other, and_)

    def difference(self, other: Scope) -> Scope:
        """The partitions of this scope that ``other`` lacks (what a grown scope must
        fetch: ``new - old``; what a shrunk one must drop: ``old - new``)."""
        return self._combine(other, lambda a, b: a and not b)

    def issubset(self, other: Scope) -> bool:
        return (self - other).is_empty

    __or__ = union
    __and__ = intersection
    __sub__ = difference
    __le__ = issubset

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scope):
            return NotImplemented
        return dict(self._collections) == dict(other._collections) and self._others == other._others

    def __hash__(self) -> int:
        return hash(
            (
                tuple((c, tuple(labels.items())) for c, labels in self._collections.items()),
                tuple(self._others.items()),
            )
        )

    def __repr__(self) -> str:
        if self.is_everything:
            return "Scope.everything()"
        if self.is_empty:
            return "Scope.nothing()"
        named = ", ".join(f"{c!r}: {_spec_repr(lab)}" for c, lab in self._collections.items())
        tail = "" if not self._others else f", others={_spec_repr(self._others)}"
        return f"Scope({{{named}}}{tail})"

    # -- kept in a store ---------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The scope as a replica keeps it in its store's meta (not wire format): msgpack
        ``[[[collection, [[prefix, in], ...]], ...], [[prefix, in], ...]]``, labels in
        their canonical form, so equal scopes give equal bytes."""
        named = [
            [c, [[p, v] for p, v in labels.items()]] for c, labels in self._collections.items()
        ]
        others = [[p, v] for p, v in self._others.items()]
        return msgpack.packb([named, others])  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, data: bytes) -> Scope:
        """The scope ``to_bytes`` kept (``UsageError`` if these bytes are not one)."""
        from .unpack import unpack  # (which imports nothing of this module's)

        try:
            named, others = unpack(data, "scope")
            return cls({c: {p: v for p, v in labels} for c, labels in named}, others=dict(others))
        except (ValueError, TypeError, OffsyncError) as exc:
            raise UsageError("the scope kept in this store is unreadable") from exc

    # -- rules and certificates -----------------------------------------------------------

    def validate(self, rule: PartitionRule) -> Scope:
        """This scope, if none of its prefixes is longer than ``rule``'s ``L`` for its
        collection (a site cannot hold part of a partition); else ``UsageError``."""
        for collection, labels in self._collections.items():
            _fits(labels, rule.length(collection), repr(collection))
        _fits(self._others, 0, "the collections it does not name")
        return self

    def to_read_field(self) -> dict[str, list[str]]:
        """The certificate ``read`` field (docs/spec-v3.md §12.3): ``collection ->
        sorted prefixes`` (empty: the whole collection), or ``{"*": []}`` for
        everything. ``UsageError`` for a scope that excludes prefixes or holds only
        part of the collections it does not name, which that field cannot say."""
        if self.is_everything:
            return {ANY_COLLECTION: []}
        if self._others:
            raise UsageError("a read scope is everything or named collections")
        out: dict[str, list[str]] = {}
        for collection, labels in self._collections.items():
            if not all(labels.values()):
                raise UsageError("a read scope lists included prefixes; this one excludes some")
            out[collection] = [] if labels == _WHOLE else list(labels)
        return out

    @classmethod
    def from_read_field(cls, value: Any, rule: PartitionRule | None = None) -> Scope:
        """The scope of a certificate's ``read`` field (untrusted: ``BundleFormatError``
        unless it is in the one canonical form ``to_read_field`` writes, or when
        ``rule`` is given and a prefix is longer than its ``L``)."""
        if type(value) is not dict:
            raise BundleFormatError("a read scope is a map of collection to prefixes")
        if ANY_COLLECTION in value:
            if value != {ANY_COLLECTION: []}:
                raise BundleFormatError('"*" in a read scope stands alone, with no prefixes')
            return cls.everything()
        named: dict[str, Labels] = {}
        for collection, prefixes in value.items():
            check_collection(collection, BundleFormatError)
            if type(prefixes) is not list:
                raise BundleFormatError("a read scope's prefixes are an array of str")
            for prefix in prefixes:
                check_prefix(prefix, BundleFormatError)
            labels = _reduce(dict.fromkeys(prefixes or [""], True))
            if prefixes != ([] if labels == _WHOLE else list(labels)):
                raise BundleFormatError(
                    "a read scope's prefixes must be sorted, unique, non-empty and none"
                    " the start of another"
                )
            if rule is not None and _longest(labels) > rule.length(collection):
                raise BundleFormatError(
                    f"a read scope prefix of {collection!r} is longer than the partition rule's"
                )
            named[collection] = labels
        return cls._of(named, _NOTHING)


def _fits(labels: Labels, length: int, what: str) -> None:
    for prefix in labels:
        if len(prefix) > length:
            raise UsageError(
                f"scope prefix {prefix!r} of {what} is longer than the partition rule's"
                f" {length} code points: a site cannot hold part of a partition"
            )


def _spec_repr(labels: Labels) -> str:
    if labels and all(labels.values()):
        return "[]" if labels == _WHOLE else repr(list(labels))
    return repr(dict(labels))
