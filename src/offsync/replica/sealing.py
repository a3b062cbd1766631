"""Sealing own changes into signed segments, as ``offsync.plan.seal`` cuts them."""

from __future__ import annotations

from collections.abc import Iterator

from ..plan import seal as plan
from ..plan.seal import OutboxRow, cut, may_seal, seal_rows
from ..segindex import HeldSegment
from ..segment import NO_PREVIOUS
from ..status import APPLIED
from ..stores.base import SegmentRow
from .core import _Core

__all__: list[str] = []


class _Sealing(_Core):
    def _seal(self, *, complete_only: bool = False) -> None:
        """Seal own changes written since the last seal into signed segments.

        Pages through the outbox, so sealing a long offline backlog needs memory for one
        page, not for the backlog. With ``complete_only`` (called as writes accumulate),
        only segments that reached their size limit are sealed and the tail waits in the
        outbox for more writes or for the next pack.
        """
        st = self._st
        if not may_seal(st.seq, st.sealed, st.claim):
            return
        own = st.segments.get(self.id, ())
        prev = own[-1].hash if own else NO_PREVIOUS
        sealed: list[tuple[bytes, HeldSegment]] = []
        with self._transaction():
            st = self._st
            for rows in cut(self._outbox_pages(st.sealed), complete_only=complete_only):
                seg = seal_rows(self.identity, rows, prev, self.level)
                h = seg.hash  # hashes all the data: once, not per use
                encoded = seg.encode()
                self.store.add_segments(
                    [SegmentRow(self.id, seg.first_seq, seg.last_seq, h, prev, encoded, "applied")]
                )
                entry = HeldSegment(seg.first_seq, seg.last_seq, h, prev, APPLIED, len(encoded))
                sealed.append((self.id, entry))
                prev = h
            if not sealed:
                return
            last = sealed[-1][1].last
            self.store.clear_outbox(last)
            self.store.set_meta("sealed", str(last).encode())
            self._put(st._replace(sealed=last, segments=st.segments.updated(add=sealed)))

    def _outbox_pages(self, after: int) -> Iterator[list[OutboxRow]]:
        """The outbox after seq ``after``, one page at a time."""
        while page := self.store.outbox_page(after, plan.SEAL_PAGE):
            yield page
            after = page[-1][0]
