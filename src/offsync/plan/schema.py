"""Schema versions: which changes a replica applies now, which it holds, and what the
merge folds (docs/spec.md §10.2, §11).

Every change records the schema version of its collection it was written under. A
replica applies a change of its collection's current version or an older one, read
through the application's upcasters (``offsync.schemas``: this module only decides,
the registry upcasts), and holds a change of a newer version: kept, counted in its
knowledge, quarantined with reason ``schema: …``, never dropped, and applied once the
replica is upgraded (``reexamine``). Replicas on different versions that hold the same
changes and upcasters show the same state: the fold sees every put in the reader's
current version (``for_fold``).

An erase order is never held for its schema version: its fields are ``{"reason":
str}`` in every version (the format's, not the application's), and a site months
behind must still erase when told to (docs/design.md, "Erasure").

Sans-IO: values in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..change import PUT, Change
from ..schemas import Schemas
from ..status import Status

__all__ = [
    "Apply",
    "Hold",
    "Reexamined",
    "Verdict",
    "as_stored",
    "for_fold",
    "held",
    "reexamine",
    "verdict",
]


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply the change; its puts are read at ``version`` (the replica's current one)
    after upcasting from ``written`` (0 reads as 1)."""

    written: int
    version: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Hold the change, quarantined with ``status`` (kind ``schema``) until upgraded."""

    status: Status


Verdict = Apply | Hold


def verdict(change: Change, schemas: Schemas) -> Verdict:
    """The schema rule for one change (per change, like the trust layer's reasons)."""
    current = max(schemas.version(change.collection), 1)
    if change.is_erase:
        return Apply(change.schema, current)
    refused = schemas.refusal(change.collection, change.schema)
    if refused is not None:
        return Hold(refused)
    return Apply(change.schema, current)


def held(changes: Iterable[Change], schemas: Schemas) -> list[tuple[Change, Status]]:
    """The changes of ``changes`` a replica at ``schemas`` holds, with their reasons."""
    out = []
    for c in changes:
        v = verdict(c, schemas)
        if isinstance(v, Hold):
            out.append((c, v.status))
    return out


@dataclass(frozen=True, slots=True)
class Reexamined:
    """Held changes after the replica's schemas changed."""

    apply: list[Change]  # readable now: applied, their records recomputed
    still_held: list[tuple[Change, Status]]  # still newer than known (new reasons)


def reexamine(held_changes: Iterable[Change], schemas: Schemas) -> Reexamined:
    """Judge the changes held for their schema version again under the replica's new
    ``schemas`` (after an upgrade). Only held changes move: a replica whose version
    went down does not take back what it applied (it cannot read it, and dropping it
    would lose it); the replica refuses such a downgrade before it gets here."""
    apply: list[Change] = []
    still: list[tuple[Change, Status]] = []
    for c in held_changes:
        v = verdict(c, schemas)
        if isinstance(v, Hold):
            still.append((c, v.status))
        else:
            apply.append(c)
    return Reexamined(apply, still)


def for_fold(changes: Sequence[Change], schemas: Schemas) -> list[Change]:
    """``changes`` with every put's fields in the collection's current version (what a
    policy folds). ``SchemaVersionError`` for a put newer than known (it should have
    been held: ``verdict``); ``UpcastError`` if the application's upcaster fails. The
    same tuples when nothing is upcast."""
    out = []
    for c in changes:
        if c.op == PUT and c.fields is not None:
            data = schemas.upcast_fields(c.collection, c.fields, c.schema)
            if data is not c.fields:
                c = c._replace(fields=data)
        out.append(c)
    return out


def as_stored(changes: Sequence[Change], schemas: Schemas) -> list[Change]:
    """``changes`` as a replica stores them to fold: every put upcast to its
    collection's current version and marked as of that version (``for_fold``), so the
    store keeps one version per collection and a recompute folds without upcasting.
    The replica upcasts what it stored again when it is upgraded (``upgraded``)."""
    out = []
    for c in for_fold(changes, schemas):
        if c.op == PUT and c.fields is not None:
            current = schemas.version(c.collection)
            if c.schema != current:
                c = c._replace(schema=current)
        out.append(c)
    return out


def upgraded(changes: Sequence[Change], before: int, schemas: Schemas) -> list[Change]:
    """Stored puts (``as_stored`` at version ``before``) read at the current version of
    ``schemas``: after an upgrade, the store's changes of the collection move up."""
    return as_stored([c._replace(schema=before) for c in changes], schemas)
