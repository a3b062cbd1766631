"""The index of the segments a replica holds: per stream, sorted by first seq.

Knowledge, duplicate and fork decisions and pack planning all read it, so it lives in
memory; the store is the truth, and the index is loaded from it on open (and, on a
store that several processes share, followed as they add segments).

A ``SegmentIndex`` is a value: ``updated`` returns a new index and leaves the old one
as it was (only the streams it touches are copied), so a replica can plan against one
index and publish the next once its transaction has committed. A stream is an origin
in format 2 (``Stream``); format 3 keys it by (origin, partition) with the same API.
This module is sans-IO.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from .knowledge import Interval
from .segment import NO_PREVIOUS, Segment
from .status import Kind, Status

__all__ = ["HeldSegment", "IndexRow", "SegmentIndex", "Stream"]

#: What the index is keyed by: the stream a segment belongs to (its origin, format 2).
Stream = bytes
#: A store's index row: (origin, first, last, hash, prev_hash, status text, size).
IndexRow = tuple[bytes, int, int, bytes, bytes, str, int]


class HeldSegment(NamedTuple):
    first: int
    last: int
    hash: bytes
    prev: bytes
    status: Status  # applied, or why it is quarantined
    size: int  # encoded bytes


def held(row: IndexRow) -> tuple[Stream, HeldSegment]:
    """A store index row as an index entry."""
    origin, first, last, h, prev, status, size = row
    return bytes(origin), HeldSegment(
        first, last, bytes(h), bytes(prev), Status.parse(status), size
    )


def _first(s: HeldSegment) -> int:
    return s.first


_OVERLAPS = Status(Kind.FORK, "overlaps a different segment of the same origin")
_NAMES_PREDECESSOR = Status(Kind.FORK, "first segment names a predecessor")
_REUSES_OWN = Status(Kind.FORK, "reuses seqs this site has issued")
_BREAKS_CHAIN_BEFORE = Status(Kind.FORK, "does not chain to the previous segment")
_BREAKS_CHAIN_AFTER = Status(Kind.FORK, "the next segment does not chain to it")


class SegmentIndex(Mapping[Stream, tuple[HeldSegment, ...]]):
    """stream -> held segments sorted by first seq; immutable (see ``updated``)."""

    __slots__ = ("_by",)

    def __init__(self, by: Mapping[Stream, tuple[HeldSegment, ...]] | None = None) -> None:
        self._by: dict[Stream, tuple[HeldSegment, ...]] = {k: v for k, v in (by or {}).items() if v}

    @classmethod
    def from_rows(cls, rows: Iterable[IndexRow]) -> SegmentIndex:
        return cls().updated(rows=rows)

    def __getitem__(self, stream: Stream) -> tuple[HeldSegment, ...]:
        return self._by[stream]

    def __iter__(self) -> Iterator[Stream]:
        return iter(self._by)

    def __len__(self) -> int:
        return len(self._by)

    def __repr__(self) -> str:
        return f"SegmentIndex({self._by!r})"

    def updated(
        self,
        *,
        drop: Iterable[tuple[Stream, int, int]] = (),
        add: Iterable[tuple[Stream, HeldSegment]] = (),
        rows: Iterable[IndexRow] = (),
    ) -> SegmentIndex:
        """A new index: without the entries whose first seq lies in each dropped
        (stream, first, last), then with ``add`` and the store ``rows`` (an entry at a
        held first seq replaces it). ``self`` itself when nothing changes."""
        touched: dict[Stream, list[HeldSegment]] = {}

        def entries(stream: Stream) -> list[HeldSegment]:
            segs = touched.get(stream)
            if segs is None:
                segs = touched[stream] = list(self._by.get(stream, ()))
            return segs

        for stream, first, last in drop:
            segs = entries(stream)
            del segs[
                bisect.bisect_left(segs, first, key=_first) : bisect.bisect_right(
                    segs, last, key=_first
                )
            ]
        for stream, entry in itertools.chain(add, map(held, rows)):
            segs = entries(stream)
            i = bisect.bisect_left(segs, entry.first, key=_first)
            if i < len(segs) and segs[i].first == entry.first:
                segs[i] = entry
            else:
                segs.insert(i, entry)
        changed = {s: tuple(v) for s, v in touched.items() if tuple(v) != self._by.get(s, ())}
        if not changed:
            return self
        new = SegmentIndex()
        new._by = {**self._by, **changed}
        for stream, now in changed.items():
            if not now:
                del new._by[stream]
        return new

    def find(self, stream: Stream, first: int) -> HeldSegment | None:
        segs = self._by.get(stream, ())
        i = bisect.bisect_left(segs, first, key=_first)
        return segs[i] if i < len(segs) and segs[i].first == first else None

    def overlaps(self, stream: Stream, first: int, last: int) -> bool:
        segs = self._by.get(stream, ())
        i = bisect.bisect_right(segs, last, key=_first)
        return i > 0 and segs[i - 1].last >= first

    def chain_problem(self, seg: Segment, *, reuses_own: bool = False) -> Status | None:
        """Why ``seg`` cannot be part of its origin's hash chain as held, if so.

        ``reuses_own``: the segment is of this site's own origin and claims seqs it has
        issued, with other changes than it holds (a fork of this very site)."""
        if seg.first_seq == 1 and seg.prev_hash != NO_PREVIOUS:
            return _NAMES_PREDECESSOR
        if self.overlaps(seg.origin, seg.first_seq, seg.last_seq):
            return _OVERLAPS
        if reuses_own:
            return _REUSES_OWN
        segs = self._by.get(seg.origin, ())
        i = bisect.bisect_left(segs, seg.first_seq, key=_first)
        if i > 0 and segs[i - 1].last == seg.first_seq - 1 and segs[i - 1].hash != seg.prev_hash:
            return _BREAKS_CHAIN_BEFORE
        if i < len(segs) and segs[i].first == seg.last_seq + 1 and segs[i].prev != seg.hash:
            return _BREAKS_CHAIN_AFTER
        return None

    def intervals(self) -> dict[Stream, list[Interval]]:
        """The seq ranges held per stream (quarantined segments included: they are held)."""
        return {o: [(s.first, s.last) for s in segs] for o, segs in self._by.items()}

    def held_back(self) -> Iterator[tuple[Stream, HeldSegment]]:
        """Every segment that is not applied, by stream (sorted) and seq."""
        for stream in sorted(self._by):
            for s in self._by[stream]:
                if not s.status.applied:
                    yield stream, s
