"""A record's history: every version of it this replica holds, for audit.

An auditor asks who entered each version of a record, not only which office holds it
now, and a site that edited a record several times while offline must be able to show
each edit, not only the last. Every applied change stays in the store (the state is a
function of the set of changes, docs/spec.md §10), each with its site (origin), seq,
HLC time, op and fields, and the stores index them by record (the ``changes`` table's
key begins with ``(collection, key)``), so a history is one index lookup, and no index
was added for it. The store keeps changes to fold (upcast to the current schema
version, without their author), so who entered each one, the version it was written
under and its fields as written are read from the segments that hold the record's
changes (each decoded once) and the outbox (own unsealed changes): an audit read, not
the merge's hot path.

Entries come in stamp order ``(hlc, origin, seq)``, the order the merge folds changes
in, so replicas that hold the same changes list the same history. Held changes (in
quarantine, not applied) are listed only when asked for (``held=True``), after the
applied ones, each with its reason: they are not part of the state, and listing them
decodes every held segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..change import DELETE, ERASE, Change, ChangeId
from ..clock import hlc_millis
from ..plan.admit import held_reasons
from ..policies import heads
from ..scope import Stream, new_stream
from ..segment import decode_segment
from .core import _Core
from .redacting import _containing

__all__ = ["HistoryEntry", "history"]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version of a record: one change, as this replica holds it.

    ``fields``: what the change wrote, as written (a put sets these fields and keeps the
    others; None for a delete). ``head``: no change held for the record names this one
    as a parent (a current version; more than one head is a conflict or a concurrent
    edit). ``author``: who entered it (the clerk id its writer gave), None if none
    was given. ``schema``: the schema version it was written under (0:
    unversioned, all of format 2). ``reason``: None for an applied change; for a held
    one (``history(..., held=True)``) why it is held, as ``quarantined_changes`` says.
    """

    collection: str
    key: str
    origin: bytes
    seq: int
    hlc: int
    op: str  # "put", "delete" or "erase" (an erase order; a put erased since: fields None)
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


_OPS = {DELETE: "delete", ERASE: "erase"}


def _entry(c: Change, head: bool, reason: str | None = None) -> HistoryEntry:
    return HistoryEntry(
        c.collection,
        c.key,
        c.origin,
        c.seq,
        c.hlc,
        _OPS.get(c.op, "put"),
        None if c.op == DELETE or c.fields is None else c.values(),
        c.parents,
        head,
        author=c.author,
        schema=c.schema,
        reason=reason,
    )


def history(
    changes: Iterable[Change], written: Mapping[ChangeId, Change] | None = None
) -> list[HistoryEntry]:
    """The applied changes of one record as its history, in stamp order (sans-IO);
    ``written``: the changes as their segments hold them, by id (author, schema version
    and fields as written, which the store's copy to fold does not keep)."""
    ordered = sorted(changes, key=lambda c: c.stamp)
    current = set(heads(ordered))
    got = written or {}
    return [_entry(got.get(c.id, c), c.id in current) for c in ordered]


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
            changes = self.store.changes_for(collection, key)
            out = history(changes, self._as_written(collection, key, changes))
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

    def _as_written(
        self, collection: str, key: str, changes: Iterable[Change]
    ) -> dict[ChangeId, Change]:
        """The record's changes as written, by id: read from the segments that hold
        them (each decoded once) and from the own outbox (unsealed own changes). The
        store keeps changes to fold (upcast, without their author), not as written."""
        partition = self.rule.partition_of(collection, key)
        st = self._st
        wanted = {c.id for c in changes}
        places: dict[tuple[Stream, int], None] = {}
        unsealed = False
        for c in changes:
            stream = new_stream(c.origin, partition)
            s = _containing(st.segments.get(stream, ()), c.seq)
            if s is not None:
                places[stream, s.first] = None
            elif c.origin == self.id:
                unsealed = True
        out: dict[ChangeId, Change] = {}
        for stream, first in places:
            data = self.store.segment_data([(stream, first)])[0]
            for c in decode_segment(data, self.limits).open_changes(self.limits):
                if c.id in wanted and c.collection == collection and c.key == key:
                    out[c.id] = c
        if unsealed:
            self._flush_fresh()
            for seq, row in self.store.outbox(partition):
                c = Change.from_row(self.id, seq, bytes(row))
                if c.id in wanted and c.collection == collection and c.key == key:
                    out[c.id] = c
        return out
