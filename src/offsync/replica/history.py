"""A record's history: every version of it this replica holds, for audit.

An auditor asks who entered each version of a record, not only which office holds it
now, and a site that edited a record several times while offline must be able to show
each edit, not only the last. Every applied change stays in the store (the state is a
function of the set of changes, docs/spec.md §10), each with its site (origin), seq,
HLC time, op and fields, and the stores index them by record (the ``changes`` table's
key begins with ``(collection, key)``), so a history is one index lookup: no segment
is decoded, and no index was added for it.

Entries come in stamp order ``(hlc, origin, seq)``, the order the merge folds changes
in, so replicas that hold the same changes list the same history. Held changes (in
quarantine, not applied) are listed only when asked for (``held=True``), after the
applied ones, each with its reason: they are not part of the state, and listing them
decodes every held segment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..change import DELETE, Change, ChangeId
from ..clock import hlc_millis
from ..plan.admit import held_reasons
from ..policies import heads
from .core import _Core

__all__ = ["HistoryEntry", "history"]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version of a record: one change, as this replica holds it.

    ``fields``: what the change wrote, as written (a put sets these fields and keeps the
    others; None for a delete). ``head``: no change held for the record names this one
    as a parent (a current version; more than one head is a conflict or a concurrent
    edit). ``author``: who entered it, None until format 3 carries it (format 2 names
    the site alone). ``schema``: the schema version it was written under (0:
    unversioned, all of format 2). ``reason``: None for an applied change; for a held
    one (``history(..., held=True)``) why it is held, as ``quarantined_changes`` says.
    """

    collection: str
    key: str
    origin: bytes
    seq: int
    hlc: int
    op: str  # "put" or "delete"
    fields: dict[str, Any] | None
    parents: tuple[ChangeId, ...]
    head: bool
    author: str | None = None
    schema: int = 0
    reason: str | None = None

    @property
    def id(self) -> ChangeId:
        return ChangeId(self.origin, self.seq)

    @property
    def stamp(self) -> tuple[int, bytes, int]:
        """``(hlc, origin, seq)``: the order entries are listed in (``Change.stamp``)."""
        return (self.hlc, self.origin, self.seq)

    @property
    def ms(self) -> int:
        """When it was written, by its site's clock: ms since 1970 (the HLC's wall part)."""
        return hlc_millis(self.hlc)


def _entry(c: Change, head: bool, reason: str | None = None) -> HistoryEntry:
    return HistoryEntry(
        c.collection,
        c.key,
        c.origin,
        c.seq,
        c.hlc,
        "delete" if c.op == DELETE else "put",
        None if c.op == DELETE else c.values(),
        c.parents,
        head,
        reason=reason,
    )


def history(changes: Iterable[Change]) -> list[HistoryEntry]:
    """The applied changes of one record as its history, in stamp order (sans-IO)."""
    ordered = sorted(changes, key=lambda c: c.stamp)
    current = set(heads(ordered))
    return [_entry(c, c.id in current) for c in ordered]


class _History(_Core):
    def history(self, collection: str, key: str, *, held: bool = False) -> list[HistoryEntry]:
        """Every version of one record this replica holds, oldest first.

        Each applied change of the record, intermediate offline edits that a later
        change superseded included, with its site, seq, time, op and fields, in stamp
        order (the merge order: every replica that holds the same changes lists the
        same entries in the same order). ``held=True`` adds the record's changes held
        in quarantine, after those, each with its ``reason`` (they change nothing;
        finding them reads every held segment). An empty list: nothing is held of it.
        """
        with self._lock:
            out = history(self.store.changes_for(collection, key))
            if not held:
                return out
            self._follow_store()
            st = self._st
            rules = self._rules(st.trust)
            kept = [
                (c, str(reason))
                for origin, s in st.segments.held_back()
                for c, reason in held_reasons(s.status, self._held_segment(origin, s), rules)
                if c.collection == collection and c.key == key
            ]
        kept.sort(key=lambda item: item[0].stamp)
        return out + [_entry(c, False, reason) for c, reason in kept]
