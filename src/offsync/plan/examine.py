"""Re-examining held segments when trust or time changed.

A trust or validator verdict changes only with its origin's rules (or the validators),
a clock verdict only with time, and a fork never: so after a trust change only the
segments of the origins whose certificate or revocation changed are judged again (with
``full``, every segment: validators may have changed), plus those held for their clock.
Applied segments are judged too: a revocation may take their changes back. For each,
the plan says which changes to apply now, which to take back, and the new status. The
replica loops while applying ``_trust`` changes changes trust again. Sans-IO.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ..change import Change, ChangeId
from ..encoding import packb
from ..segindex import HeldSegment, SegmentIndex, Stream
from ..status import Kind, Status
from ..trust import TrustStore, Validator
from .admit import Admission, admit, admitted_part

__all__ = ["Reexamined", "candidates", "changed_origins", "fingerprint", "reexamine_segment"]


def fingerprint(trust: TrustStore | None, validators: Mapping[str, Validator]) -> bytes:
    """Identifies the rules segments were last examined under (kept in the store): a
    replica opened with other authorities or validators examines every segment again."""
    base = trust.digest() if trust is not None else b"open"
    return hashlib.blake2b(packb([base, sorted(validators)]), digest_size=32).digest()


def changed_origins(trust: TrustStore | None, before: TrustStore | None) -> set[bytes]:
    """The keys whose rules differ between two trust stores (none in open mode)."""
    if trust is None or before is None:
        return set()
    return trust.changed_keys(before)


def candidates(
    index: SegmentIndex, changed: Collection[bytes], full: bool
) -> Iterator[tuple[Stream, int, HeldSegment]]:
    """The segments to judge again, as (stream, position in the stream, entry);
    ``changed``: the origins whose rules changed (all of their streams)."""
    for stream, segs in index.items():
        for i, s in enumerate(segs):
            kind = s.status.kind
            if kind is Kind.FORK or not (full or stream.origin in changed or kind is Kind.CLOCK):
                continue
            yield stream, i, s


@dataclass(frozen=True, slots=True)
class Reexamined:
    """The outcome for one segment."""

    status: Status  # what admission says now
    add: list[Change]  # admitted now, not applied before
    drop: list[Change]  # applied before, refused now
    due: int | None  # a clock hold: wall ms from which it may be admitted


def reexamine_segment(
    changes: Sequence[Change], applied: Collection[ChangeId], rules: Admission
) -> Reexamined:
    """Judge a held segment's ``changes`` again; ``applied``: which of the records'
    changes are applied now."""
    status, due = admit(changes, rules)
    want = changes if status.applied else admitted_part(status, changes, rules)
    wanted = {c.id for c in want}
    return Reexamined(
        status,
        [c for c in want if c.id not in applied],
        [c for c in changes if c.id in applied and c.id not in wanted],
        due,
    )
