"""Knowledge of format 3: which changes a replica holds, as seq intervals per stream.

Each stream ``(origin, partition)`` numbers its changes 1, 2, 3 … without gaps, so
what a replica holds of it is a handful of closed intervals. The delta to send a peer
is ``mine - theirs``; a receipt is a signed knowledge statement; a scoped replica's
knowledge is exact because it holds whole streams.

A centre holds some 300 000 streams, so this value is kept compact and its operations
touch as little as they can: per origin one dict of partition to a flat tuple of
interval bounds ``(a1, b1, a2, b2, …)``; partitions are shared between origins when
decoded; an operation shares every per-origin dict it does not change (values are
immutable, so sharing is safe) and skips streams whose intervals are the same tuple.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import FrozenInstanceError
from itertools import chain
from typing import Any

from .encoding import packb
from .errors import BundleFormatError, LimitExceededError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .scope import Partition, Scope, Stream, check_collection, check_prefix, new_partition
from .scope import new_stream as _new_stream
from .unpack import Budget, unpack

__all__ = [
    "GROUP_DOMAIN",
    "INTERVAL_COST",
    "ORIGIN_COST",
    "STREAM_COST",
    "Interval",
    "Knowledge",
    "group_digest",
]

Interval = tuple[int, int]
Flat = tuple[int, ...]  # (a1, b1, a2, b2, ...): sorted, disjoint, non-adjacent
MAX_SEQ = (1 << 63) - 1
#: Upper bounds (bytes of CPython objects) of what decoding knowledge keeps, charged to
#: a ``Budget`` before it is built: per origin (its key, its dict), per stream (a dict
#: slot, the partition and its strings, the flat tuple's header) and per interval (two
#: slots and two ints).
ORIGIN_COST = 256
STREAM_COST = 256
INTERVAL_COST = 64
_Streams = dict[bytes, dict[Partition, Flat]]


def _normalise(intervals: Iterable[Interval]) -> Flat:
    out: list[int] = []
    for a, b in sorted(intervals):
        if a > b:
            continue
        if out and a <= out[-1] + 1:
            if b > out[-1]:
                out[-1] = b
        else:
            out += (a, b)
    return tuple(out)


def _merge(x: Flat, y: Flat) -> Flat:
    if x == y or not y:
        return x
    if not x:
        return y
    return _normalise(chain(_pairs(x), _pairs(y)))


def _subtract(mine: Flat, theirs: Flat) -> Flat:
    """``mine`` minus ``theirs`` (both normalised)."""
    if len(theirs) == 2 and theirs[0] <= mine[0] and mine[-1] <= theirs[1]:
        return ()  # the common case: theirs covers mine
    out: list[int] = []
    j, k_end = 0, len(theirs)
    for i in range(0, len(mine), 2):
        a, b = mine[i], mine[i + 1]
        start = a
        while j < k_end and theirs[j + 1] < start:
            j += 2
        k = j
        while k < k_end and theirs[k] <= b:
            ta, tb = theirs[k], theirs[k + 1]
            if ta > start:
                out += (start, ta - 1)
            start = max(start, tb + 1)
            if start > b:
                break
            k += 2
        if start <= b:
            out += (start, b)
    return tuple(out)


def _pairs(flat: Flat) -> tuple[Interval, ...]:
    return tuple(zip(flat[::2], flat[1::2], strict=True))


class Knowledge:
    """An immutable map of stream -> normalised seq intervals.

    ``Knowledge({Stream(origin, Partition("residents", "351901")): [(1, 40)]})``.
    """

    __slots__ = ("_streams",)

    _streams: _Streams

    def __init__(self, streams: Mapping[Stream, Iterable[Interval]] | None = None) -> None:
        if streams is None:
            streams = {}
        if not isinstance(streams, Mapping):
            raise UsageError("knowledge maps streams to seq intervals")
        out: _Streams = {}
        for stream, ivs in streams.items():
            if not isinstance(stream, Stream):
                raise UsageError("knowledge is keyed by Stream(origin, partition)")
            try:
                pairs = [(a, b) for a, b in ivs]
            except (TypeError, ValueError) as exc:
                raise UsageError("seq intervals are (first, last) pairs of ints") from exc
            for a, b in pairs:
                if type(a) is not int or type(b) is not int or not 1 <= a <= b <= MAX_SEQ:
                    raise UsageError(f"seq interval ({a!r}, {b!r}) out of range")
            flat = _normalise(pairs)
            if flat:
                parts = out.setdefault(stream.origin, {})
                parts[stream.partition] = _merge(parts.get(stream.partition, ()), flat)
        object.__setattr__(self, "_streams", out)

    @classmethod
    def _of(cls, streams: _Streams) -> Knowledge:
        """Knowledge from checked, normalised parts (no empty dict, no empty tuple)."""
        knowledge = object.__new__(cls)
        object.__setattr__(knowledge, "_streams", streams)
        return knowledge

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"Knowledge is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"Knowledge is immutable: cannot delete {name!r}")

    @classmethod
    def of(cls, stream: Stream, first: int, last: int) -> Knowledge:
        if not isinstance(stream, Stream):
            raise UsageError("knowledge is keyed by Stream(origin, partition)")
        return cls({stream: [(first, last)]})

    def __repr__(self) -> str:
        inner = ", ".join(f"{s!r}: {self.get(s)!r}" for s in self.streams())
        return f"Knowledge({{{inner}}})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Knowledge):
            return NotImplemented
        return self._streams == other._streams

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        return bool(self._streams)

    # -- reading ------------------------------------------------------------------------

    def origins(self) -> Iterator[bytes]:
        return iter(sorted(self._streams))

    def partitions(self, origin: bytes) -> Iterator[Partition]:
        return iter(sorted(self._streams.get(origin, {})))

    def streams(self) -> Iterator[Stream]:
        """Every stream, in wire order (origin bytes, then collection and prefix)."""
        for origin in sorted(self._streams):
            for partition in sorted(self._streams[origin]):
                yield _new_stream(origin, partition)

    def stream_count(self) -> int:
        return sum(map(len, self._streams.values()))

    def _flat(self, stream: Stream) -> Flat:
        parts = self._streams.get(stream[0])
        return () if parts is None else parts.get(stream[1], ())

    def get(self, stream: Stream) -> tuple[Interval, ...]:
        return _pairs(self._flat(stream))

    def contains(self, stream: Stream, seq: int) -> bool:
        flat = self._flat(stream)
        return any(flat[i] <= seq <= flat[i + 1] for i in range(0, len(flat), 2))

    def contains_range(self, stream: Stream, first: int, last: int) -> bool:
        flat = self._flat(stream)
        return any(flat[i] <= first and last <= flat[i + 1] for i in range(0, len(flat), 2))

    def overlaps(self, stream: Stream, first: int, last: int) -> bool:
        flat = self._flat(stream)
        return any(flat[i] <= last and first <= flat[i + 1] for i in range(0, len(flat), 2))

    def max_seq(self, stream: Stream) -> int:
        flat = self._flat(stream)
        return flat[-1] if flat else 0

    def count(self, stream: Stream | None = None) -> int:
        """Changes held, of one stream or of all."""
        flats = (
            [self._flat(stream)]
            if stream is not None
            else chain.from_iterable(p.values() for p in self._streams.values())
        )
        return sum(flat[i + 1] - flat[i] + 1 for flat in flats for i in range(0, len(flat), 2))

    # -- algebra ------------------------------------------------------------------------

    def union(self, other: Knowledge) -> Knowledge:
        if not isinstance(other, Knowledge):
            raise UsageError("knowledge combines with knowledge")
        out: _Streams = dict(self._streams)
        for origin, theirs in other._streams.items():
            mine = out.get(origin)
            if mine is None or mine is theirs:
                out[origin] = theirs
                continue
            merged = dict(mine)
            for partition, flat in theirs.items():
                held = merged.get(partition)
                merged[partition] = flat if held is None else _merge(held, flat)
            out[origin] = merged
        return Knowledge._of(out)

    def difference(self, other: Knowledge) -> Knowledge:
        """What this knowledge holds that ``other`` lacks."""
        if not isinstance(other, Knowledge):
            raise UsageError("knowledge combines with knowledge")
        out: _Streams = {}
        theirs_by_origin = other._streams
        for origin, mine in self._streams.items():
            theirs = theirs_by_origin.get(origin)
            if theirs is None:
                out[origin] = mine
                continue
            if theirs is mine:
                continue
            kept: dict[Partition, Flat] = {}
            for partition, flat in mine.items():
                held = theirs.get(partition)
                if held is None:
                    kept[partition] = flat
                elif held != flat:
                    rest = _subtract(flat, held)
                    if rest:
                        kept[partition] = rest
            if kept:
                out[origin] = kept
        return Knowledge._of(out)

    def intersection(self, other: Knowledge) -> Knowledge:
        return self - (self - other)

    def issubset(self, other: Knowledge) -> bool:
        return not (self - other)

    __or__ = union
    __sub__ = difference
    __and__ = intersection
    __le__ = issubset

    def with_range(self, stream: Stream, first: int, last: int) -> Knowledge:
        return self | Knowledge.of(stream, first, last)

    def restrict(self, scope: Scope) -> Knowledge:
        """The streams whose partition is in ``scope``."""
        if not isinstance(scope, Scope):
            raise UsageError("knowledge is restricted to a Scope")
        if scope.is_everything:
            return self
        verdict: dict[Partition, bool] = {}  # partitions repeat across origins
        out: _Streams = {}
        for origin, mine in self._streams.items():
            kept = {}
            for partition, flat in mine.items():
                inside = verdict.get(partition)
                if inside is None:
                    inside = verdict[partition] = scope.holds(*partition)
                if inside:
                    kept[partition] = flat
            if len(kept) == len(mine):
                out[origin] = mine
            elif kept:
                out[origin] = kept
        return Knowledge._of(out)

    def restrict_origins(self, origins: Iterable[bytes]) -> Knowledge:
        """The streams of ``origins`` only."""
        streams = self._streams
        return Knowledge._of({o: streams[o] for o in set(origins) if o in streams})

    def only_streams(self, streams: Iterable[Stream]) -> Knowledge:
        """The intervals of the given streams only."""
        out: _Streams = {}
        for origin, partition in streams:
            flat = self._streams.get(origin, {}).get(partition)
            if flat:
                out.setdefault(origin, {})[partition] = flat
        return Knowledge._of(out)

    # -- digests for knowledge exchange ---------------------------------------------------

    def group_digests(self, length: int) -> list[tuple[str, str, bytes]]:
        """``(collection, group, digest)`` of every group of partitions this knowledge
        names, a group being a collection and the first ``length`` code points of the
        partition prefix (docs/spec.md §7.2). Two replicas whose digests of a group
        are equal hold the same intervals of every stream of that group (up to a
        collision of a 128-bit hash), so a knowledge exchange sends the detail only of
        the groups whose digests differ."""
        if type(length) is not int or length < 0:
            raise UsageError("a group length is a number of code points, at least 0")
        groups: dict[tuple[str, str], _Streams] = {}
        for origin, parts in self._streams.items():
            for partition, flat in parts.items():
                group = (partition.collection, partition.prefix[:length])
                groups.setdefault(group, {}).setdefault(origin, {})[partition] = flat
        return [
            (collection, group, group_digest(Knowledge._of(groups[collection, group])))
            for collection, group in sorted(groups)
        ]

    # -- encoding -----------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """``[[origin, [[collection, prefix, [a1, b1, …]], …]], …]``, origins sorted by
        bytes, partitions by (collection, prefix) UTF-8 bytes (docs/spec.md §7.1)."""
        streams = self._streams
        return [
            [origin, [[p.collection, p.prefix, list(flat)] for p, flat in sorted(parts.items())]]
            for origin, parts in sorted(streams.items())
        ]

    def to_bytes(self) -> bytes:
        return packb(self.to_wire())

    @classmethod
    def from_wire(
        cls, value: Any, limits: Limits = DEFAULT_LIMITS, budget: Budget | None = None
    ) -> Knowledge:
        """Knowledge from its decoded wire form (untrusted). What it builds is charged to
        ``budget`` (one shared by everything decoded from one header, say) before it is
        built; by default a budget of its own of ``limits.max_decode_bytes``."""
        if type(value) is not list:
            raise BundleFormatError("knowledge must be an array")
        if len(value) > limits.max_origins:
            raise LimitExceededError(f"knowledge names more than {limits.max_origins} origins")
        if budget is None:
            budget = Budget(limits.max_decode_bytes, "knowledge")
        out: _Streams = {}
        shared: dict[tuple[str, str], Partition] = {}
        streams = 0
        previous = b""
        for item in value:
            if type(item) is not list or len(item) != 2:
                raise BundleFormatError("a knowledge entry is [origin, partitions]")
            origin, parts = item
            if type(origin) is not bytes or len(origin) != 32 or origin <= previous:
                raise BundleFormatError("knowledge origins must be sorted 32-byte keys")
            previous = origin
            if type(parts) is not list or not parts:
                raise BundleFormatError("a knowledge entry names at least one partition")
            streams += len(parts)
            if streams > limits.max_streams:
                raise LimitExceededError(f"knowledge names more than {limits.max_streams} streams")
            budget.charge(ORIGIN_COST + len(parts) * STREAM_COST)
            out[origin] = _partitions(parts, shared, budget, limits)
        return cls._of(out)

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Knowledge:
        if type(data) is not bytes:
            raise BundleFormatError("a knowledge statement is bytes")
        if len(data) > limits.max_header_bytes:
            raise LimitExceededError("knowledge statement too large")
        # [[origin, [[collection, prefix, [a1, b1, ...]], ...]], ...]: five arrays deep.
        return cls.from_wire(unpack(data, "knowledge", limits, max_depth=5), limits)


def _partitions(
    parts: list[Any], shared: dict[tuple[str, str], Partition], budget: Budget, limits: Limits
) -> dict[Partition, Flat]:
    out: dict[Partition, Flat] = {}
    previous: tuple[str, str] | None = None
    for entry in parts:
        if type(entry) is not list or len(entry) != 3:
            raise BundleFormatError("a knowledge partition is [collection, prefix, intervals]")
        collection, prefix, flat = entry
        key = (collection, prefix)
        partition = shared.get(key) if type(collection) is str and type(prefix) is str else None
        if partition is None:
            check_collection(collection, BundleFormatError, LimitExceededError)
            check_prefix(prefix, BundleFormatError, LimitExceededError)
            partition = shared[key] = new_partition(collection, prefix)
        if previous is not None and key <= previous:
            raise BundleFormatError("knowledge partitions must be sorted and unique")
        previous = key
        out[partition] = _intervals(flat, budget, limits)
    return out


def _intervals(flat: Any, budget: Budget, limits: Limits) -> Flat:
    if type(flat) is not list or not flat or len(flat) % 2:
        raise BundleFormatError("knowledge intervals must be a non-empty even array")
    if len(flat) == 2:  # the common case: one interval
        a, b = flat
        if type(a) is not int or type(b) is not int or not 1 <= a <= b <= MAX_SEQ:
            raise BundleFormatError("knowledge interval out of range")
        budget.charge(INTERVAL_COST)
        return (a, b)
    if len(flat) // 2 > limits.max_intervals:
        raise LimitExceededError(f"more than {limits.max_intervals} intervals in a stream")
    budget.charge(len(flat) // 2 * INTERVAL_COST)
    last_end = -1
    for i in range(0, len(flat), 2):
        a, b = flat[i], flat[i + 1]
        if type(a) is not int or type(b) is not int or not 1 <= a <= b <= MAX_SEQ:
            raise BundleFormatError("knowledge interval out of range")
        if a <= last_end + 1:
            raise BundleFormatError("knowledge intervals must be sorted, disjoint, non-adjacent")
        last_end = b
    return tuple(flat)


GROUP_DOMAIN = b"offsync/knowledge-group/v3\x00"


def group_digest(knowledge: Knowledge) -> bytes:
    """The first 16 bytes of ``H("offsync/knowledge-group/v3" ‖ 0x00 ‖ knowledge)``,
    the knowledge in its wire form (one group's streams)."""
    return hashlib.blake2b(GROUP_DOMAIN + knowledge.to_bytes(), digest_size=32).digest()[:16]
