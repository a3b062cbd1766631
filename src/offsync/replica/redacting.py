"""Erasure in the store: redacting what the replica holds of erased records.

The decisions are ``offsync.plan.erasure``'s; this module finds what they apply to
and writes it. An erased record (an admitted erase order of it is held) keeps no field
value anywhere in the store: its state has no fields (``plan.merge.recompute`` runs
``erasure.merge``), its applied puts are kept as stubs (fields gone) in the changes
table, and every held segment holding one of its puts, applied or quarantined, is kept
in its redacted form instead (same hash: knowledge, chains and duplicates do not
change; docs/spec.md §6.4). The set of erased records is kept in the store (meta
``erased``) and never shrinks (docs/design.md, "Erasure").
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable

import msgpack

from ..change import PUT
from ..encoding import packb
from ..plan import erasure
from ..scope import new_stream
from ..segindex import HeldSegment, Stream
from ..segment import AnySegment, Segment, decode_segment
from ..status import Kind, Status
from .reads import _Reads

__all__ = ["FALSE_COMMITMENT"]

#: A segment whose origin signed a commitment that is not its block's: no redacted
#: form of it can verify, so it is kept whole as evidence and no longer applied.
FALSE_COMMITMENT = Status(Kind.FORK, "false commitment")

Record = tuple[str, str]


class _Redacting(_Reads):
    #: Own changes wait unsealed in a partition where a record was erased: their puts
    #: of it hold values until sealed (then redacted, ``_redacted_own``), so the work
    #: after the commit seals at once (``_Sealing._seal_erased``).
    _reseal = False

    def _stored_erased(self) -> frozenset[Record]:
        """The records erased here, as the store keeps them."""
        raw = self.store.get_meta("erased")
        return frozenset((c, k) for c, k in msgpack.unpackb(raw)) if raw else frozenset()

    def _erase_records(self, records: Iterable[Record]) -> None:
        """Inside a transaction, after the orders erasing ``records`` were merged: remove
        their field values from the store (see the module's docstring)."""
        st = self._st
        new = set(records) - st.erased
        if not new:
            return
        erased = st.erased | new
        for record in new:  # own puts of it may wait unsealed: seal them redacted soon
            mine = st.seqs(new_stream(self.id, self.rule.partition_of(*record)))
            if mine.seq > mine.sealed:
                self._reseal = True
        places: dict[tuple[Stream, int], HeldSegment] = {}
        for record in sorted(new):
            puts = [
                c for c in self.store.changes_for(*record) if c.op == PUT and c.fields is not None
            ]
            if puts:
                self.store.remove_changes(puts)
                self.store.add_changes([c._replace(fields=None) for c in puts])
            partition = self.rule.partition_of(*record)
            for c in puts:
                stream = new_stream(c.origin, partition)
                s = _containing(st.segments.get(stream, ()), c.seq)
                if s is not None:
                    places[stream, s.first] = s
        for stream, s in st.segments.held_back():  # a held copy is a copy
            if s.status != FALSE_COMMITMENT:
                places[stream, s.first] = s
        changed: list[tuple[Stream, HeldSegment]] = []
        for (stream, first), s in sorted(places.items()):
            seg = decode_segment(self.store.segment_data([(stream, first)])[0], self.limits)
            changes = seg.open_changes(self.limits)
            done = erasure.redact(seg, changes, erased, level=self.level, limits=self.limits)
            if done is None:
                continue
            if done.false_commitment:
                self.store.set_segment_status(stream, first, str(FALSE_COMMITMENT))
                changed.append((stream, s._replace(status=FALSE_COMMITMENT)))
                continue
            data = done.segment.encode()
            self.store.replace_segment_data(stream, first, data)
            changed.append((stream, s._replace(size=len(data))))
        forks = self._redacted_forks(erased)
        self._recompute(new)
        self.store.set_meta("erased", packb(sorted([c, k] for c, k in erased)))
        st = self._st
        self._put(
            st._replace(
                erased=frozenset(erased), segments=st.segments.updated(add=changed), forks=forks
            )
        )

    def _redacted_forks(self, erased: Collection[Record]) -> tuple[AnySegment, ...]:
        """The fork evidence without values of ``erased`` records (stored if it changed):
        a redacted form keeps the signed header, which is the evidence."""
        held = self._st.forks
        out: list[AnySegment] = []
        for seg in held:
            done = erasure.redact(
                seg, seg.open_changes(self.limits), erased, level=self.level, limits=self.limits
            )
            out.append(seg if done is None or done.false_commitment else done.segment)
        if any(a is not b for a, b in zip(out, held, strict=True)):
            self.store.set_meta("forks", packb([s.encode() for s in out]))
        return tuple(out)

    def _redacted_own(self, seg: Segment) -> AnySegment:
        """An own segment just sealed, in the form to store: redacted when it holds puts
        of records erased here (written before the order, unsealed until now)."""
        erased = self._st.erased
        if not erased:
            return seg
        changes = seg.open_changes(self.limits)
        if not any((c.collection, c.key) in erased for c in changes):
            return seg
        done = erasure.redact(seg, changes, erased, level=self.level, limits=self.limits)
        return seg if done is None else done.segment


def _containing(held: tuple[HeldSegment, ...], seq: int) -> HeldSegment | None:
    """The held segment whose seqs include ``seq`` (held segments are sorted by first)."""
    i = bisect.bisect_right([s.first for s in held], seq) - 1
    if i >= 0 and held[i].last >= seq:
        return held[i]
    return None
