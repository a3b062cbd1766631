"""Erasure: which records are erased, what a replica redacts, and what it shows.

An **erase order** (op 2, an authority's change in the erased record's own partition,
docs/spec.md §10.3) erases its record: the record is not visible and not in the
state digest (§10.4), every put of it a replica holds is redacted (the segment is kept
in its redacted form, §6.4, with those rows' values gone), later puts of it are
redacted on arrival and never stored whole, and the order is forwarded like any change.

Whether an order is *admitted* (applied here: its origin an authority key in force,
its segment not held for its clock) is the admission plan's job; every function here
takes that verdict as a predicate, ``admitted``. An order admitted later, when a
re-examination applies it, erases then: ``erased_by`` of the changes it adds gives the
records, ``redactions`` the segments. The replica keeps the set of erased records and
never shrinks it: an order taken back later (its authority revoked) leaves its
redactions, whose values are gone, and their stubs keep the record hidden. This
module decides, for values in and values out:

* ``erased_by`` / ``is_erased``   — which records a set of changes erases;
* ``hidden``                       — whether a record is shown at all;
* ``rows_to_redact``               — the rows of a segment that erasure removes;
* ``redact``                       — its redacted form (or why it cannot be made);
* ``on_arrival``                   — what happens to an arriving segment: the records
                                     it erases and the form it is stored in;
* ``redactions``                   — which held segments to redact after an order;
* ``merge``                        — the record's state as the replica stores it
                                     (no fields: not visible), over the policy's merge;
* ``alone_is_state``               — whether a change may take the bulk path.

Why a stub without an order hides its record too: a put reaches a replica as a stub
(``Change.is_erased``) only because some replica redacted it under an order it admitted,
and that order travels in the record's partition right behind it. Showing the fold of
the puts that are left would show a state no replica ever had; hiding the record shows
what every replica shows once the order is here (docs/design.md, "Erasure").

Sans-IO: segments and changes in, plans out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..change import PUT, Change
from ..errors import ForkError
from ..limits import DEFAULT_LIMITS, Limits
from ..policies import Policy, RecordState, heads
from ..schemas import Schemas
from ..segment import DEFAULT_LEVEL, AnySegment
from .schema import for_fold

__all__ = [
    "Admitted",
    "Arrival",
    "Record",
    "Redaction",
    "alone_is_state",
    "erased_by",
    "hidden",
    "is_erased",
    "merge",
    "on_arrival",
    "redact",
    "redactions",
    "rows_to_redact",
    "visible_changes",
]

#: (collection, key)
Record = tuple[str, str]
#: The trust check's verdict on one change: whether it is admitted here.
Admitted = Callable[[Change], bool]


def _record(change: Change) -> Record:
    return (change.collection, change.key)


def erased_by(changes: Iterable[Change], admitted: Admitted) -> set[Record]:
    """The records that the admitted erase orders among ``changes`` erase."""
    return {_record(c) for c in changes if c.is_erase and admitted(c)}


def is_erased(changes: Iterable[Change], admitted: Admitted) -> bool:
    """Whether a record whose held changes are ``changes`` is erased: an admitted
    erase order is among them."""
    return any(c.is_erase and admitted(c) for c in changes)


def hidden(changes: Iterable[Change], admitted: Admitted) -> bool:
    """Whether the record is not shown: erased, or a put of it reached here only as a
    stub (its order is on the way; see the module's docstring)."""
    return any((c.is_erase and admitted(c)) or c.is_erased for c in changes)


def rows_to_redact(changes: Sequence[Change], erased: Collection[Record]) -> tuple[int, ...]:
    """Indexes (0: the segment's first seq) of the puts of erased records whose values
    a segment still holds: what a redaction removes. Deletes and erase orders hold no
    personal data and stay; rows already erased are not named again."""
    return tuple(
        i
        for i, c in enumerate(changes)
        if c.op == PUT and c.fields is not None and _record(c) in erased
    )


@dataclass(frozen=True, slots=True)
class Redaction:
    """A held segment's new form after an erasure.

    ``segment`` is the redacted form to keep instead (same hash, so chains, knowledge
    and duplicates do not change). ``false_commitment``: its origin signed a
    commitment that is not its block's, so no redacted form can verify; the replica
    keeps it as evidence with reason ``fork: false commitment`` (§6.3, §11) and
    forwards it no more. ``segment`` is then the segment as it was."""

    segment: AnySegment
    rows: tuple[int, ...]
    false_commitment: bool = False


def redact(
    segment: AnySegment,
    changes: Sequence[Change],
    erased: Collection[Record],
    *,
    level: int | None = DEFAULT_LEVEL,
    limits: Limits = DEFAULT_LIMITS,
) -> Redaction | None:
    """``segment`` (whose opened ``changes`` are given) without the values of the puts
    of ``erased`` records; None when it holds none (nothing to do). A redacted segment
    is redacted further from its redacted form, never from the whole one (which the
    replica no longer has)."""
    rows = rows_to_redact(changes, erased)
    if not rows:
        return None
    try:
        out = segment.redact(rows, level=level, limits=limits)
    except ForkError:
        return Redaction(segment, rows, false_commitment=True)
    return Redaction(out, rows)


@dataclass(frozen=True, slots=True)
class Arrival:
    """What becomes of an arriving segment under erasure."""

    #: Records this segment's admitted orders erase that were not erased before.
    newly_erased: frozenset[Record]
    #: The form to store: the segment itself, or its redaction (never the whole form
    #: of a segment that carries values of an erased record).
    redaction: Redaction | None


def on_arrival(
    segment: AnySegment,
    changes: Sequence[Change],
    erased: Collection[Record],
    admitted: Admitted,
    *,
    level: int | None = DEFAULT_LEVEL,
    limits: Limits = DEFAULT_LIMITS,
) -> Arrival:
    """Judge an arriving, verified ``segment`` whose opened ``changes`` are given;
    ``erased``: the records erased here before it. Its own admitted orders count: a
    segment holding a put and the order that erases it is stored redacted. The held
    segments of ``newly_erased`` records are redacted next (``redactions``)."""
    new = erased_by(changes, admitted).difference(erased)
    now = set(erased) | new if new else erased
    return Arrival(frozenset(new), redact(segment, changes, now, level=level, limits=limits))


def redactions(
    held: Iterable[tuple[AnySegment, Sequence[Change]]],
    erased: Collection[Record],
    *,
    level: int | None = DEFAULT_LEVEL,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Redaction]:
    """The held segments to redact once ``erased`` records are erased, in the order
    given; ``held``: (segment, its opened changes) of every held segment that may
    hold a put of one of them (applied or quarantined alike: a held copy is a copy).
    The replica finds them by record; segments with nothing to redact are left out."""
    out = []
    for segment, changes in held:
        done = redact(segment, changes, erased, level=level, limits=limits)
        if done is not None:
            out.append(done)
    return out


def visible_changes(changes: Iterable[Change]) -> list[Change]:
    """The changes a policy folds for a record that is not erased: puts and deletes
    (an erase order held but not admitted is held, not applied, and its ``reason`` is
    no field of the record)."""
    return [c for c in changes if not c.is_erase]


def alone_is_state(change: Change, schemas: Schemas | None = None) -> bool:
    """Whether ``change``, alone and parentless, is its record's state as written, for a
    policy whose ``single_change_is_identity`` holds: the bulk path of
    ``plan.merge.split`` (which asks it). Not an erase order
    (its reason is no field), not a stub (hidden), not a put of an older schema version
    (it is read upcast)."""
    if change.is_erase or change.is_erased:
        return False
    if schemas is None or change.fields is None:
        return True
    return max(change.schema, 1) == max(schemas.version(change.collection), 1)


def merge(
    changes: Sequence[Change],
    policy: Policy,
    admitted: Admitted,
    schemas: Schemas | None = None,
) -> RecordState | None:
    """A record's state from every applied change of it, as ``plan.merge.recompute``
    stores it (what it calls instead of ``policy.merge``); None: nothing to
    show or keep. A hidden record's state has no fields (so it is in neither ``get``
    nor the state digest, which skip absent records) and keeps the heads of every
    change held, erase orders included: a write made after seeing them lists them.
    Puts are read in the current schema version first (``schema.for_fold``)."""
    if not changes:
        return None
    if hidden(changes, admitted):
        return RecordState(None, heads(cast(Sequence[Any], changes)), False)
    folded = visible_changes(changes)
    if not folded:
        return None
    if schemas is not None:
        folded = for_fold(folded, schemas)
    return policy.merge(cast(Sequence[Any], folded))
