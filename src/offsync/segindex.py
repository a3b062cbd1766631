"""The index of the segments a replica holds: per stream, sorted by first seq.

Knowledge, duplicate and fork decisions and pack planning all read it, so it lives in
memory; the store is the truth, and the index is loaded from it on open (and, on a
store that several processes share, followed as they add segments).

A ``SegmentIndex`` is a value: ``updated`` returns a new index and leaves the old one
as it was (only the streams it touches are copied), so a replica can plan against one
index and publish the next once its transaction has committed. It is keyed by
``Stream(origin, partition)``; format 2 is the case of one stream per origin,
``whole(origin)``. The stores key segments by stream too (``IndexRow``); where a
stream meets format 2 is here and nowhere else: format-2 knowledge is keyed by origin
(``knowledge_of``, ``stream_intervals``, ``top_seq``), and an own stream's counters
keep format 2's meta names (``own_meta``); format 3 changes these functions, not their
callers. This module is sans-IO.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

from .knowledge import Interval, Knowledge
from .scope import WHOLE, Partition, Stream, whole
from .segment import NO_PREVIOUS, AnySegment
from .status import Kind, Status
from .stores.base import IndexRow

__all__ = [
    "HeldSegment",
    "IndexRow",
    "SegmentIndex",
    "Stream",
    "knowledge_of",
    "own_meta",
    "stream_intervals",
    "top_seq",
    "whole",
]


class HeldSegment(NamedTuple):
    first: int
    last: int
    hash: bytes
    prev: bytes
    status: Status  # applied, or why it is quarantined
    size: int  # encoded bytes


def held(row: IndexRow) -> tuple[Stream, HeldSegment]:
    """A store index row as an index entry."""
    stream, first, last, h, prev, status, size = row
    return stream, HeldSegment(first, last, bytes(h), bytes(prev), Status.parse(status), size)


def _first(s: HeldSegment) -> int:
    return s.first


_OVERLAPS = Status(Kind.FORK, "overlaps a different segment of the same origin")
_NAMES_PREDECESSOR = Status(Kind.FORK, "first segment names a predecessor")
_REUSES_OWN = Status(Kind.FORK, "reuses seqs this site has issued")
_BREAKS_CHAIN_BEFORE = Status(Kind.FORK, "does not chain to the previous segment")
_BREAKS_CHAIN_AFTER = Status(Kind.FORK, "the next segment does not chain to it")


class SegmentIndex(Mapping[Stream, tuple[HeldSegment, ...]]):
    """stream -> held segments sorted by first seq; immutable (see ``updated``)."""

    __slots__ = ("_by", "_origins")

    def __init__(self, by: Mapping[Stream, tuple[HeldSegment, ...]] | None = None) -> None:
        self._by: dict[Stream, tuple[HeldSegment, ...]] = {k: v for k, v in (by or {}).items() if v}
        #: origin -> its streams held, sorted: built on first use, then kept by
        #: ``updated`` (copied only when streams come or go, which is rare).
        self._origins: dict[bytes, tuple[Stream, ...]] | None = None

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
        moved: dict[bytes, list[Stream]] = {}  # origin -> its streams that came or went
        for stream, now in changed.items():
            if not now:
                del new._by[stream]
                moved.setdefault(stream.origin, []).append(stream)
            elif stream not in self._by:
                moved.setdefault(stream.origin, []).append(stream)
        origins = self._origins
        if moved and origins is not None:
            origins = dict(origins)
            for origin, streams in moved.items():
                mine = sorted({*origins.get(origin, ()), *streams})
                kept = tuple(s for s in mine if s in new._by)
                if kept:
                    origins[origin] = kept
                else:
                    origins.pop(origin, None)
        new._origins = origins
        return new

    def streams_of(self, origin: bytes) -> tuple[Stream, ...]:
        """The streams of ``origin`` held, sorted (format 2: at most its one stream)."""
        origins = self._origins
        if origins is None:
            by: dict[bytes, list[Stream]] = {}
            for stream in sorted(self._by):
                by.setdefault(stream.origin, []).append(stream)
            origins = self._origins = {o: tuple(v) for o, v in by.items()}
        return origins.get(origin, ())

    def find(self, stream: Stream, first: int) -> HeldSegment | None:
        segs = self._by.get(stream, ())
        i = bisect.bisect_left(segs, first, key=_first)
        return segs[i] if i < len(segs) and segs[i].first == first else None

    def overlaps(self, stream: Stream, first: int, last: int) -> bool:
        segs = self._by.get(stream, ())
        i = bisect.bisect_right(segs, last, key=_first)
        return i > 0 and segs[i - 1].last >= first

    def chain_problem(self, seg: AnySegment, *, reuses_own: bool = False) -> Status | None:
        """Why ``seg`` cannot be part of its origin's hash chain as held, if so.

        ``reuses_own``: the segment is of this site's own origin and claims seqs it has
        issued, with other changes than it holds (a fork of this very site)."""
        if seg.first_seq == 1 and seg.prev_hash != NO_PREVIOUS:
            return _NAMES_PREDECESSOR
        stream = seg.stream
        if self.overlaps(stream, seg.first_seq, seg.last_seq):
            return _OVERLAPS
        if reuses_own:
            return _REUSES_OWN
        segs = self._by.get(stream, ())
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


def own_meta(name: str, partition: Partition) -> str:
    """The meta name of one of an own stream's counters (``name``: "seq", "sealed"):
    format 2's own names for its one stream (``WHOLE``), so that the stores, backups and
    ``offsync status`` of format 2 read them where they always were; a partition's
    names carry its collection and prefix (as hex: any text, and unambiguous)."""
    if partition == WHOLE:
        return name
    return f"{name}:{partition[0].encode().hex()}:{partition[1].encode().hex()}"


def knowledge_of(intervals: Mapping[Stream, Sequence[Interval]]) -> Knowledge:
    """Knowledge (keyed by stream) of seq ranges per stream."""
    return Knowledge(intervals)


def top_seq(knowledge: Knowledge, stream: Stream) -> int:
    """The highest seq of ``stream`` that ``knowledge`` holds (0: none)."""
    return knowledge.max_seq(stream)


def stream_intervals(knowledge: Knowledge) -> Iterator[tuple[Stream, Sequence[Interval]]]:
    """The seq ranges of ``knowledge`` per stream, in wire order."""
    for stream in knowledge.streams():
        yield stream, knowledge.get(stream)
