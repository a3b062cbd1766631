"""Admission: whether a segment's changes are applied, and why not when they are held.

A segment is judged as a whole for its clock (a timestamp too far ahead of this site's
wall clock holds every change of it until time catches up) and change by change for
trust and validators (``offsync.trust.verdict``): its status is the first refusal, and
the changes that pass are applied anyway. This module is sans-IO.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..change import Change
from ..clock import hlc_millis
from ..limits import Limits
from ..schemas import Schemas
from ..status import APPLIED, CLOCK_AHEAD, Kind, Status
from ..trust import TrustStore, Validator, verdict

__all__ = [
    "NOT_AN_AUTHORITY_ERASE",
    "Admission",
    "admit",
    "admitted_part",
    "change_verdict",
    "held_reasons",
]

#: An erase order whose origin is no authority key (docs/spec.md §10.3, §13.5 step
#: 1): the same reason as a ``_trust`` change's.
NOT_AN_AUTHORITY_ERASE = Status(Kind.TRUST, "not an authority")

_HLC = operator.itemgetter(2)  # of a Change
_SCHEMA = operator.itemgetter(9)  # of a Change


@dataclass(frozen=True, slots=True)
class Admission:
    """What admission needs besides the changes: the rules and the time, as values."""

    trust: TrustStore | None  # None: open mode
    validators: Mapping[str, Validator]
    limits: Limits
    now_ms: int  # this site's wall clock, ms since the epoch
    #: The application's schema versions (None: every collection unversioned): a
    #: change newer than known is held with reason ``schema: …`` (``plan.schema``).
    schemas: Schemas | None = None

    @property
    def open(self) -> bool:
        """Open mode and no validators: every validly signed change is admitted that
        is not newer than its collection's schema version."""
        return self.trust is None and not self.validators


def change_verdict(change: Change, rules: Admission) -> Status | None:
    """Why one change is held (None: admitted): an erase order not from an authority
    (in open mode anyone may erase, as anyone may write), then the trust store and the
    validators (an erase order is checked by trust only: its reason is no field a
    validator knows), then its schema version (``plan.schema.verdict``)."""
    trust = rules.trust
    if change.is_erase:
        if trust is not None and change.origin not in trust.authorities:
            return NOT_AN_AUTHORITY_ERASE
        return None
    status = verdict(change, trust, rules.validators)
    if status is not None or rules.schemas is None:
        return status
    return rules.schemas.refusal(change.collection, change.schema)


def admit(changes: Sequence[Change], rules: Admission) -> tuple[Status, int | None]:
    """``APPLIED``, or the reason the segment's changes are held back; with a clock
    hold, the wall ms from which the segment may be admitted (else None)."""
    ahead = hlc_millis(max(map(_HLC, changes)))
    if ahead > rules.now_ms + rules.limits.max_clock_skew_ms:
        return CLOCK_AHEAD, ahead - rules.limits.max_clock_skew_ms
    if rules.open and (rules.schemas is None or max(map(_SCHEMA, changes)) <= 1):
        return APPLIED, None  # (versions 0 and 1 are read by every replica, §10.2)
    for c in changes:
        status = change_verdict(c, rules)
        if status is not None:
            return status, None
    return APPLIED, None


def admitted_part(status: Status, changes: Sequence[Change], rules: Admission) -> list[Change]:
    """The changes of a segment held with ``status`` that are applied anyway."""
    if status.whole:
        return []
    return [c for c in changes if change_verdict(c, rules) is None]


def held_reasons(
    status: Status, changes: Sequence[Change], rules: Admission
) -> list[tuple[Change, Status]]:
    """Each change of a segment held with ``status`` that is not applied, and why."""
    applied = {c.id for c in admitted_part(status, changes, rules)}
    out = []
    for c in changes:
        if c.id not in applied:
            reason = status if status.whole else change_verdict(c, rules)
            out.append((c, reason or status))
    return out
