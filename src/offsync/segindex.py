"""The in-memory index of the segments a replica holds: per origin, sorted by first seq.

Knowledge, duplicate and fork decisions and pack planning all read it, so it lives in
memory; the store is the truth, and the index is loaded from it on open (and, on a
store that several processes share, followed as they add segments).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import NamedTuple

from .knowledge import Interval
from .segment import NO_PREVIOUS, Segment

__all__ = ["HeldSegment", "SegmentIndex"]


class HeldSegment(NamedTuple):
    first: int
    last: int
    hash: bytes
    prev: bytes
    status: str  # "applied", or why it is quarantined
    size: int  # encoded bytes


def _first(s: HeldSegment) -> int:
    return s.first


class SegmentIndex(dict[bytes, list[HeldSegment]]):
    """origin -> held segments sorted by first seq (a plain dict, plus lookups)."""

    def add(self, origin: bytes, entry: HeldSegment) -> None:
        bisect.insort(self.setdefault(origin, []), entry)

    def upsert(self, rows: Iterable[tuple[bytes, int, int, bytes, bytes, str, int]]) -> bool:
        """Take in store index rows (new, or a newer status); whether anything changed."""
        changed = False
        for origin, first, last, h, prev, status, size in rows:
            entry = HeldSegment(first, last, bytes(h), bytes(prev), status, size)
            segs = self.setdefault(bytes(origin), [])
            i = bisect.bisect_left(segs, first, key=_first)
            if i < len(segs) and segs[i].first == first:
                if segs[i] == entry:
                    continue
                segs[i] = entry
            else:
                segs.insert(i, entry)
            changed = True
        return changed

    def drop_range(self, origin: bytes, first: int, last: int) -> None:
        """Forget the entries of ``origin`` that start within ``first..last``."""
        segs = self.get(origin, [])
        del segs[
            bisect.bisect_left(segs, first, key=_first) : bisect.bisect_right(
                segs, last, key=_first
            )
        ]

    def find(self, origin: bytes, first: int) -> HeldSegment | None:
        segs = self.get(origin, [])
        i = bisect.bisect_left(segs, first, key=_first)
        return segs[i] if i < len(segs) and segs[i].first == first else None

    def overlaps(self, origin: bytes, first: int, last: int) -> bool:
        segs = self.get(origin, [])
        i = bisect.bisect_right(segs, last, key=_first)
        return i > 0 and segs[i - 1].last >= first

    def chain_problem(self, seg: Segment, *, reuses_own: bool = False) -> str | None:
        """Why ``seg`` cannot be part of its origin's hash chain as held, if so.

        ``reuses_own``: the segment is of this site's own origin and claims seqs it has
        issued, with other changes than it holds (a fork of this very site)."""
        if seg.first_seq == 1 and seg.prev_hash != NO_PREVIOUS:
            return "fork: first segment names a predecessor"
        if self.overlaps(seg.origin, seg.first_seq, seg.last_seq):
            return "fork: overlaps a different segment of the same origin"
        if reuses_own:
            return "fork: reuses seqs this site has issued"
        segs = self.get(seg.origin, [])
        i = bisect.bisect_left(segs, seg.first_seq, key=_first)
        if i > 0 and segs[i - 1].last == seg.first_seq - 1 and segs[i - 1].hash != seg.prev_hash:
            return "fork: does not chain to the previous segment"
        if i < len(segs) and segs[i].first == seg.last_seq + 1 and segs[i].prev != seg.hash:
            return "fork: the next segment does not chain to it"
        return None

    def intervals(self) -> dict[bytes, list[Interval]]:
        """The seq ranges held per origin (quarantined segments included: they are held)."""
        return {o: [(s.first, s.last) for s in segs] for o, segs in self.items()}
