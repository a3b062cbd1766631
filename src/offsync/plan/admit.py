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
from ..status import APPLIED, CLOCK_AHEAD, Status
from ..trust import TrustStore, Validator, verdict

__all__ = ["Admission", "admit", "admitted_part", "held_reasons"]

_HLC = operator.itemgetter(2)  # of a Change


@dataclass(frozen=True, slots=True)
class Admission:
    """What admission needs besides the changes: the rules and the time, as values."""

    trust: TrustStore | None  # None: open mode
    validators: Mapping[str, Validator]
    limits: Limits
    now_ms: int  # this site's wall clock, ms since the epoch

    @property
    def open(self) -> bool:
        """Open mode and no validators: every validly signed change is admitted."""
        return self.trust is None and not self.validators


def admit(changes: Sequence[Change], rules: Admission) -> tuple[Status, int | None]:
    """``APPLIED``, or the reason the segment's changes are held back; with a clock
    hold, the wall ms from which the segment may be admitted (else None)."""
    ahead = hlc_millis(max(map(_HLC, changes)))
    if ahead > rules.now_ms + rules.limits.max_clock_skew_ms:
        return CLOCK_AHEAD, ahead - rules.limits.max_clock_skew_ms
    if rules.open:
        return APPLIED, None
    for c in changes:
        status = verdict(c, rules.trust, rules.validators)
        if status is not None:
            return status, None
    return APPLIED, None


def admitted_part(status: Status, changes: Sequence[Change], rules: Admission) -> list[Change]:
    """The changes of a segment held with ``status`` that are applied anyway."""
    if status.whole:
        return []
    return [c for c in changes if verdict(c, rules.trust, rules.validators) is None]


def held_reasons(
    status: Status, changes: Sequence[Change], rules: Admission
) -> list[tuple[Change, Status]]:
    """Each change of a segment held with ``status`` that is not applied, and why."""
    applied = {c.id for c in admitted_part(status, changes, rules)}
    out = []
    for c in changes:
        if c.id not in applied:
            reason = status if status.whole else verdict(c, rules.trust, rules.validators)
            out.append((c, reason or status))
    return out
