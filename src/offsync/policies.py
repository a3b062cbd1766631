"""Merge and conflict policies.

A record's visible state is a pure function of the *set* of changes held for it, so
replicas holding the same changes show the same state whatever the arrival order.
Every policy below is such a function; ``offsync.testing.check_policy`` property-tests
a custom one for it.

Shared definitions (docs/spec.md, "Merge rules"):

* The *stamp* of a change is ``(hlc, origin, seq)``; stamps order changes totally.
* The *heads* of a record are the held changes that no other held change lists as a
  parent. Two heads are concurrent: neither writer saw the other.
* A put sets the fields it names and leaves the others; a delete (tombstone) clears
  the record. The *version* of a change is the fold, in stamp order, of the change and
  its held ancestors: puts update fields, a delete empties the record, a later put
  revives it with only the fields written after the delete.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .change import Change, ChangeId
from .encoding import canonical_fields

__all__ = [
    "FirstWriterWins",
    "LastWriterWins",
    "MultiValue",
    "Policy",
    "RecordState",
    "ancestry",
    "fold",
    "heads",
]


@dataclass(frozen=True, slots=True)
class RecordState:
    """What a policy decides for one record."""

    fields: bytes | None  # canonical encoding; None when the record is deleted
    heads: tuple[ChangeId, ...]
    conflict: bool = False


def heads(changes: Iterable[Change]) -> tuple[ChangeId, ...]:
    changes = list(changes)
    referenced = {p for c in changes for p in c.parents}
    return tuple(sorted(c.id for c in changes if c.id not in referenced))


def ancestry(change: Change, by_id: dict[ChangeId, Change]) -> list[Change]:
    """The change and every held ancestor of it (missing ancestors are skipped)."""
    seen = {change.id}
    stack = [change]
    out = []
    while stack:
        c = stack.pop()
        out.append(c)
        for p in c.parents:
            if p not in seen and p in by_id:
                seen.add(p)
                stack.append(by_id[p])
    return out


def fold(changes: Iterable[Change]) -> bytes | None:
    """Per-field last writer wins over ``changes`` in stamp order."""
    ordered = sorted(changes, key=lambda c: c.stamp)
    if len(ordered) == 1:
        return ordered[0].fields
    values: dict[str, Any] | None = None
    for c in ordered:
        if c.fields is None:
            values = None
        else:
            if values is None:
                values = {}
            values.update(c.values())
    return None if values is None else canonical_fields(values)


class Policy(ABC):
    """A collection's merge rule. Subclass and implement ``merge`` for a custom rule.

    ``merge`` receives every held change of one record, in no particular order, and
    must return the same ``RecordState`` for the same set. ``immutable`` makes plain
    writes to an existing visible record an error (``Replica.resolve`` still works).
    """

    name: str = "custom"
    immutable: bool = False
    #: True when the state of a record holding one parentless change is that change's
    #: own fields; lets the replica skip ``merge`` on the bulk-insert fast path.
    single_change_is_identity: bool = False

    @abstractmethod
    def merge(self, changes: Sequence[Change]) -> RecordState: ...

    def versions(self, changes: Sequence[Change]) -> dict[ChangeId, bytes | None]:
        """The version each head stands for; what a clerk chooses between."""
        by_id = {c.id: c for c in changes}
        return {h: fold(ancestry(by_id[h], by_id)) for h in heads(changes)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _conflicting(versions: dict[ChangeId, bytes | None]) -> bool:
    return len(set(versions.values())) > 1


class LastWriterWins(Policy):
    """Per field, the write with the greatest stamp wins; deletes clear older fields.

    Never surfaces conflicts: concurrent writes are settled field by field.
    """

    name = "lww"
    single_change_is_identity = True

    def merge(self, changes: Sequence[Change]) -> RecordState:
        return RecordState(fold(changes), heads(changes), False)


class MultiValue(Policy):
    """Keep every concurrent version; show the one whose head has the greatest stamp.

    The record is in conflict while its heads stand for different versions; a
    resolution (any write made after seeing them) settles it.
    """

    name = "multi"
    single_change_is_identity = True

    def merge(self, changes: Sequence[Change]) -> RecordState:
        versions = self.versions(changes)
        by_id = {c.id: c for c in changes}
        winner = max(versions, key=lambda h: by_id[h].stamp)
        return RecordState(versions[winner], tuple(versions), _conflicting(versions))


class FirstWriterWins(Policy):
    """The earliest write stands; for immutable facts such as a recorded vaccine dose.

    Changes are taken in stamp order; the standing change is replaced only by a change
    that descends from it (a deliberate correction or resolution). Concurrent writes
    that differ from the standing version are surfaced as a conflict.
    """

    name = "fww"
    immutable = True
    single_change_is_identity = True

    def merge(self, changes: Sequence[Change]) -> RecordState:
        by_id = {c.id: c for c in changes}
        standing: Change | None = None
        for c in sorted(changes, key=lambda c: c.stamp):
            if standing is None or standing.id in {a.id for a in ancestry(c, by_id)}:
                standing = c
        assert standing is not None
        value = fold(ancestry(standing, by_id))
        versions = self.versions(changes)
        conflict = any(v != value for v in versions.values())
        return RecordState(value, tuple(versions), conflict)


BUILTIN: dict[str, type[Policy]] = {
    "lww": LastWriterWins,
    "multi": MultiValue,
    "fww": FirstWriterWins,
}
