"""Schema versions: reading fields written under an older version of a collection.

A registry outlives its software: a site months behind still writes the fields of the
schema it was installed with, and a site upgraded first writes the new ones. Each
collection has a schema version (docs/spec.md §10.2); the application registers,
per collection, its current version and one **upcaster** per step ``v -> v + 1``, a
pure function from a field map of version ``v`` to one of version ``v + 1``. A reader
takes a change of an older version through the chain of steps, so that the merge sees
every put in the reader's current version: replicas on different versions converge
when they hold the same changes and upcasters.

Version 0 means unversioned (what an application that never registered a collection
writes) and reads as version 1, the first: registering a collection at version 1
changes nothing, and its first upcaster is the step ``1 -> 2``. A change newer than
the reader's version is not read: ``SchemaVersionError``, whose ``status`` is the
quarantine reason ``schema: …`` under which a replica holds it until it is upgraded.

    schemas = Schemas({"residents": Schema(3, {1: split_name, 2: add_region})})
    schemas.upcast("residents", {"name": "Siti Aminah"}, 1)   # -> version 3 fields

Sans-IO: values in, values out. The replica asks it through ``offsync.plan.schema``
(``Replica.open(..., schemas=...)``: holding newer changes, upcasting older ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

from .encoding import canonical_fields, decode_fields
from .errors import SchemaVersionError, UpcastError, UsageError
from .status import Kind, Status
from .trust import TRUST_COLLECTION

__all__ = ["MAX_SCHEMA_VERSION", "Schema", "Schemas", "Upcaster", "newer_than"]

#: Schema versions are below 2^32 on the wire (docs/spec.md §5).
MAX_SCHEMA_VERSION = (1 << 32) - 1

#: One step: the fields of version ``v`` to the fields of version ``v + 1``. Pure and
#: total: the same map in gives an equal map out, for every map a writer could write.
#: It must not change the map it is given (it may be the caller's).
Upcaster: TypeAlias = Callable[[dict[str, Any]], Mapping[str, Any]]


def _version(value: object, what: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SCHEMA_VERSION:
        raise UsageError(f"{what} must be an int from 1 to {MAX_SCHEMA_VERSION}, not {value!r}")
    return value


def newer_than(collection: str, version: int, current: int) -> Status:
    """The quarantine reason of a change of ``collection`` written under ``version``,
    read by a replica at ``current`` (names the collection, never a key or a value)."""
    return Status(
        Kind.SCHEMA, f"version {version} of '{collection}' is newer than this replica's {current}"
    )


class Schema:
    """One collection's current version and its upcasters, validated when built.

    ``upcasters``: by the version each step upcasts *from*, exactly the versions
    ``1 … version - 1``, once each; a mapping, or ``(from_version, function)`` pairs
    (then a version given twice is refused). Immutable.
    """

    __slots__ = ("_steps", "version")

    version: int
    _steps: tuple[Upcaster, ...]  # index i: version i + 1 -> i + 2

    def __init__(
        self,
        version: int,
        upcasters: Mapping[int, Upcaster] | Iterable[tuple[int, Upcaster]] = (),
    ) -> None:
        version = _version(version, "a schema version")
        pairs = list(upcasters.items() if isinstance(upcasters, Mapping) else upcasters)
        steps: dict[int, Upcaster] = {}
        for item in pairs:
            if not isinstance(item, tuple) or len(item) != 2:
                raise UsageError("upcasters are (from_version, function) pairs")
            start, step = item
            start = _version(start, "an upcaster's from-version")
            if start in steps:
                raise UsageError(f"two upcasters from version {start}")
            if start >= version:
                raise UsageError(
                    f"an upcaster from version {start} reaches past the current version {version}"
                )
            if not callable(step):
                raise UsageError(f"the upcaster from version {start} is not callable")
            steps[start] = step
        missing = [v for v in range(1, version) if v not in steps]
        if missing:
            raise UsageError(
                f"no upcaster from version {missing[0]} to {missing[0] + 1}: a chain has no gaps"
            )
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "_steps", tuple(steps[v] for v in range(1, version)))

    def __setattr__(self, name: str, value: object) -> None:
        raise UsageError("a Schema is immutable")

    def __repr__(self) -> str:
        return f"Schema({self.version}, <{len(self._steps)} upcasters>)"

    def steps(self, start: int) -> tuple[Upcaster, ...]:
        """The upcasters from ``start`` (1 … version) to the current version, in order."""
        return self._steps[start - 1 :]


class Schemas:
    """The schemas an application registered, by collection; immutable.

    Collections not registered are unversioned (version 0, read as 1). The ``_trust``
    collection belongs to offsync and cannot be versioned.
    """

    __slots__ = ("_by_collection",)

    _by_collection: dict[str, Schema]

    def __init__(self, schemas: Mapping[str, Schema] | None = None) -> None:
        by_collection = dict(schemas or {})
        for collection, schema in by_collection.items():
            if type(collection) is not str or not collection:
                raise UsageError(f"a collection name is a non-empty str, not {collection!r}")
            if collection == TRUST_COLLECTION:
                raise UsageError(f"the {TRUST_COLLECTION} collection has no schema versions")
            if not isinstance(schema, Schema):
                raise UsageError(f"the schema of {collection!r} must be a Schema")
        object.__setattr__(self, "_by_collection", by_collection)

    def __setattr__(self, name: str, value: object) -> None:
        raise UsageError("Schemas are immutable")

    def __repr__(self) -> str:
        return f"Schemas({self._by_collection!r})"

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_collection))

    def version(self, collection: str) -> int:
        """The version local writes of ``collection`` are written under; 0: unversioned."""
        schema = self._by_collection.get(collection)
        return 0 if schema is None else schema.version

    def refusal(self, collection: str, version: int) -> Status | None:
        """Why a change of ``collection`` written under ``version`` cannot be read here
        (the ``schema:`` status to hold it with), or None when it can."""
        current = max(self.version(collection), 1)
        return newer_than(collection, version, current) if version > current else None

    def chain(self, collection: str, version: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The function that reads fields of ``collection`` written under ``version``
        in the current version: the steps composed in order (the identity at the
        current version). ``SchemaVersionError`` for a version newer than known;
        ``UsageError`` for one that is not a schema version (0 … 2^32 - 1)."""
        if type(version) is not int or not 0 <= version <= MAX_SCHEMA_VERSION:
            raise UsageError(f"a schema version is an int from 0 to {MAX_SCHEMA_VERSION}")
        refused = self.refusal(collection, version)
        if refused is not None:
            raise SchemaVersionError(str(refused), status=refused)
        schema = self._by_collection.get(collection)
        steps = () if schema is None else schema.steps(max(version, 1))
        start = max(version, 1)

        def upcast(fields: dict[str, Any]) -> dict[str, Any]:
            for offset, step in enumerate(steps):
                fields = _run(step, fields, collection, start + offset)
            return fields

        return upcast

    def upcast(self, collection: str, fields: dict[str, Any], version: int) -> dict[str, Any]:
        """``fields`` of ``collection``, written under ``version``, in the current version
        (``chain``). ``UpcastError`` if a step raises or gives no field map."""
        return self.chain(collection, version)(fields)

    def upcast_fields(self, collection: str, data: bytes, version: int) -> bytes:
        """Canonical field bytes written under ``version``, as canonical field bytes of the
        current version: what a merge folds (fields stay encoded, docs/design.md). The
        same bytes, not a copy, when there is nothing to do. ``UpcastError`` also for a
        step whose result msgpack cannot carry canonically."""
        if type(version) is int and max(version, 1) == max(self.version(collection), 1):
            return data
        result = self.chain(collection, version)(decode_fields(data))
        try:
            return canonical_fields(result)
        except UsageError as exc:
            raise UpcastError(
                f"upcasting '{collection}' from version {version} gave fields that cannot be "
                f"encoded ({type(exc).__name__})",
                collection=collection,
                version=version,
            ) from exc


def _run(step: Upcaster, fields: dict[str, Any], collection: str, start: int) -> dict[str, Any]:
    """One step, its failures as ``UpcastError`` (the application's code: any error)."""
    try:
        result = step(fields)
    except Exception as exc:
        raise UpcastError(
            f"the upcaster of '{collection}' from version {start} to {start + 1} raised "
            f"{type(exc).__name__}",
            collection=collection,
            version=start,
        ) from exc
    if not isinstance(result, Mapping):
        raise UpcastError(
            f"the upcaster of '{collection}' from version {start} to {start + 1} gave a "
            f"{type(result).__name__}, not a field map",
            collection=collection,
            version=start,
        )
    if type(result) is not dict:
        result = dict(result)
    if any(type(name) is not str for name in result):
        raise UpcastError(
            f"the upcaster of '{collection}' from version {start} to {start + 1} gave a map "
            "whose names are not all str",
            collection=collection,
            version=start,
        )
    return result
