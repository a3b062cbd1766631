"""Sealing own changes into signed segments, as ``offsync.plan.seal`` cuts them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..change import Change
from ..errors import StorageError
from ..plan import seal as plan
from ..plan.seal import OutboxRow, cut, may_seal, seal_rows, segment_ends
from ..segindex import HeldSegment, Stream, own_meta
from ..segment import NO_PREVIOUS, Segment
from ..status import APPLIED
from ..stores.base import SegmentRow
from .redacting import _Redacting

__all__: list[str] = []

#: An own unsealed change held in memory: the change, its decoded fields (None for a
#: delete) and the length of its outbox row.
Held = tuple[Change, dict[str, Any] | None, int]


log = logging.getLogger("offsync")


class _Sealing(_Redacting):
    def _seal(self, *, complete_only: bool = False) -> None:
        """Seal own changes written since the last seal into signed segments, each own
        stream its own chain.

        Takes them from memory when this process wrote them all since it opened (the
        usual case), else pages through the outbox, so sealing a long offline backlog
        needs memory for one page, not for the backlog. With ``complete_only`` (called
        as writes accumulate), only segments that reached their size limit are sealed
        and the tail waits in the outbox for more writes or for the next pack.
        """
        st = self._st
        streams = [s for s in sorted(st.own) if may_seal(*st.seqs(s))]  # (seq, sealed, claim)
        if len(streams) == 1:
            self._seal_stream(streams[0], complete_only=complete_only)
        elif streams:  # one commit for all of them: a commit costs more than a segment
            with self._transaction():
                for stream in streams:
                    self._seal_stream(stream, complete_only=complete_only)

    def _seal_erased(self) -> None:
        """After a commit that erased records with own puts still unsealed: seal own
        changes now, so that those values leave the outbox for a redacted segment
        (``_redacted_own``). A failure is logged (the commit stands); the next pack
        seals. While a peer's claim stops sealing, they wait (docs/threat-model.md)."""
        if not self._reseal:
            return
        self._reseal = False
        try:
            self._seal()
        except Exception as exc:
            log.warning(
                "records were erased, but sealing own changes after it failed and will be"
                " tried again at the next pack: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, StorageError),
            )

    def _seal_stream(self, stream: Stream, *, complete_only: bool) -> None:
        """Seal one own stream's unsealed changes (``_seal``)."""
        st = self._st
        own = st.segments.get(stream, ())
        prev = own[-1].hash if own else NO_PREVIOUS
        sealed: list[tuple[Stream, HeldSegment]] = []
        with self._transaction():
            self._flush_fresh()
            st = self._st
            mine = st.seqs(stream)
            held = self._held_unsealed(stream, mine.sealed, mine.seq)
            if held is not None:
                for changes, values in _chunks(held, complete_only):
                    seg = Segment.seal(self.identity, changes, prev, self.level, values=values)
                    prev = self._store_sealed(seg, prev, sealed)
            else:
                pages = self._outbox_pages(stream, mine.sealed)
                for rows in cut(pages, complete_only=complete_only):
                    seg = seal_rows(self.identity, rows, prev, self.level)
                    prev = self._store_sealed(seg, prev, sealed)
            if not sealed:
                return
            last = sealed[-1][1].last
            self.store.clear_outbox(stream.partition, last)
            self.store.set_meta(own_meta("sealed", stream.partition), str(last).encode())
            st = st._replace(segments=st.segments.updated(add=sealed))
            self._put(st.with_seqs(stream, sealed=last))
        self._forget_sealed(stream, mine.sealed, last)

    def _store_sealed(
        self, seg: Segment, prev: bytes, sealed: list[tuple[Stream, HeldSegment]]
    ) -> bytes:
        """Store one own segment just sealed (chained to ``prev``); returns its hash."""
        h = seg.hash  # hashes all the data: once, not per use
        encoded = self._redacted_own(seg).encode()  # puts of erased records: redacted
        self.store.add_segments(
            [SegmentRow(seg.stream, seg.first_seq, seg.last_seq, h, prev, encoded, "applied")]
        )
        sealed.append(
            (seg.stream, HeldSegment(seg.first_seq, seg.last_seq, h, prev, APPLIED, len(encoded)))
        )
        return h

    def _held_unsealed(self, stream: Stream, after: int, upto: int) -> list[Held] | None:
        """Own changes of ``stream`` ``after`` < seq <= ``upto`` as held in memory
        (committed, or written in this transaction and in the outbox already); None if
        any is not."""
        recent = self._recent.get(stream, {})
        fresh = {
            c.seq: (c, value, size)
            for (c, value), size in zip(self._fresh, self._fresh_sizes, strict=False)
            if c.stream == stream
        }
        out: list[Held] = []
        for seq in range(after + 1, upto + 1):
            entry = recent.get(seq) or fresh.get(seq)
            if entry is None:
                return None
            out.append(entry)
        return out

    def _forget_sealed(self, stream: Stream, after: int, upto: int) -> None:
        """Drop sealed changes from memory."""
        recent = self._recent.get(stream)
        if recent is None:
            return
        for seq in range(after + 1, upto + 1):
            recent.pop(seq, None)
        if not recent:
            del self._recent[stream]

    def _outbox_pages(self, stream: Stream, after: int) -> Iterator[list[OutboxRow]]:
        """The outbox of own stream ``stream`` after seq ``after``, one page at a time."""
        self._flush_fresh()
        while page := self.store.outbox_page(stream.partition, after, plan.SEAL_PAGE):
            yield page
            after = page[-1][0]


def _chunks(
    held: list[Held], complete_only: bool
) -> Iterator[tuple[list[Change], list[dict[str, Any] | None]]]:
    """The changes of each segment to seal, as ``cut`` would cut them, with their
    decoded fields (so that sealing does not decode them again)."""
    start = 0
    for end in segment_ends([size for _, _, size in held], complete_only=complete_only):
        chunk = held[start:end]
        yield [c for c, _, _ in chunk], [value for _, value, _ in chunk]
        start = end
