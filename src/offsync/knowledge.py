"""Knowledge: which changes a replica holds, as seq intervals per origin.

Because each origin numbers its changes 1, 2, 3 … without gaps, what a replica holds
is a handful of closed intervals per origin, whatever the number of changes. The delta
to send a peer is ``mine - theirs``; a receipt is a signed knowledge statement.
Intervals are kept sorted, disjoint and non-adjacent, so equal knowledge has one form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .encoding import packb
from .errors import BundleFormatError, LimitExceededError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .unpack import Budget, unpack

__all__ = ["Interval", "Knowledge"]

Interval = tuple[int, int]
MAX_SEQ = (1 << 63) - 1
#: Upper bounds (bytes of CPython objects) of what decoding knowledge keeps, charged to
#: a ``Budget`` before it is built: per origin (its key, its dict entry, its tuple) and
#: per interval (a 2-tuple, its slot, two ints).
ORIGIN_COST = 256
INTERVAL_COST = 128


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    out: list[list[int]] = []
    for a, b in sorted(intervals):
        if a > b:
            continue
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1][1] = b
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def _subtract(mine: tuple[Interval, ...], theirs: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    j = 0
    for a, b in mine:
        start = a
        while j < len(theirs) and theirs[j][1] < start:
            j += 1
        k = j
        while k < len(theirs) and theirs[k][0] <= b:
            ta, tb = theirs[k]
            if ta > start:
                out.append((start, ta - 1))
            start = max(start, tb + 1)
            if start > b:
                break
            k += 1
        if start <= b:
            out.append((start, b))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Knowledge:
    """An immutable map of origin public key -> normalised seq intervals."""

    intervals: Mapping[bytes, Sequence[Interval]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.intervals, Mapping):
            raise UsageError("knowledge is a mapping of origin key to seq intervals")
        clean: dict[bytes, tuple[Interval, ...]] = {}
        for origin, ivs in self.intervals.items():
            if type(origin) is not bytes or len(origin) != 32:
                raise UsageError("origins are 32-byte public keys")
            try:
                pairs = [(a, b) for a, b in ivs]
            except (TypeError, ValueError) as exc:
                raise UsageError("seq intervals are (first, last) pairs of ints") from exc
            for a, b in pairs:
                if (
                    type(a) is not int
                    or type(b) is not int
                    or not (1 <= a <= MAX_SEQ and 1 <= b <= MAX_SEQ)
                ):
                    raise UsageError(f"seq interval ({a!r}, {b!r}) out of range")
            norm = _normalise(pairs)
            if norm:
                clean[origin] = norm
        object.__setattr__(self, "intervals", dict(sorted(clean.items())))

    @classmethod
    def _normalised(cls, intervals: dict[bytes, tuple[Interval, ...]]) -> Knowledge:
        """Knowledge from intervals already sorted by origin and normalised (decoded and
        checked by ``from_wire``): nothing is copied or sorted again."""
        knowledge = object.__new__(cls)
        object.__setattr__(knowledge, "intervals", intervals)
        return knowledge

    def __repr__(self) -> str:
        return f"Knowledge({dict(self.intervals)!r})"

    @classmethod
    def of(cls, origin: bytes, first: int, last: int) -> Knowledge:
        if type(origin) is not bytes:
            raise UsageError("origins are 32-byte public keys")
        return cls({origin: ((first, last),)})

    def origins(self) -> Iterator[bytes]:
        return iter(self.intervals)

    def get(self, origin: bytes) -> tuple[Interval, ...]:
        return tuple(self.intervals.get(origin, ()))

    def contains(self, origin: bytes, seq: int) -> bool:
        return any(a <= seq <= b for a, b in self.get(origin))

    def contains_range(self, origin: bytes, first: int, last: int) -> bool:
        return any(a <= first and last <= b for a, b in self.get(origin))

    def overlaps(self, origin: bytes, first: int, last: int) -> bool:
        return any(a <= last and first <= b for a, b in self.get(origin))

    def max_seq(self, origin: bytes) -> int:
        ivs = self.get(origin)
        return ivs[-1][1] if ivs else 0

    def count(self, origin: bytes | None = None) -> int:
        origins = [origin] if origin is not None else list(self.intervals)
        return sum(b - a + 1 for o in origins for a, b in self.get(o))

    def union(self, other: Knowledge) -> Knowledge:
        # Both sides are normalised: only origins they share are normalised again, and
        # the origins sorted again only if ``other`` adds some (a centre's knowledge of
        # 80,000 origins unions with a site's few in milliseconds).
        if not other.intervals:
            return self
        if not self.intervals:
            return other
        merged: dict[bytes, tuple[Interval, ...]] = dict(self.intervals)  # type: ignore[arg-type]
        added = False
        for o, ivs in other.intervals.items():
            mine = merged.get(o)
            if mine is None:
                merged[o] = tuple(ivs)
                added = True
            else:
                merged[o] = _normalise([*mine, *ivs])
        return Knowledge._normalised(dict(sorted(merged.items())) if added else merged)

    __or__ = union

    def difference(self, other: Knowledge) -> Knowledge:
        """What this knowledge holds that ``other`` lacks."""
        # What is left of normalised intervals is normalised (pieces of one interval are
        # separated by what was taken out), in the same origin order.
        out: dict[bytes, tuple[Interval, ...]] = {}
        for o, ivs in self.intervals.items():
            theirs = other.intervals.get(o)
            left = tuple(ivs) if not theirs else _subtract(tuple(ivs), tuple(theirs))
            if left:
                out[o] = left
        return Knowledge._normalised(out)

    __sub__ = difference

    def select(self, keep: Callable[[bytes], bool]) -> Knowledge:
        """The part of this knowledge about the origins ``keep`` accepts."""
        kept = {o: tuple(ivs) for o, ivs in self.intervals.items() if keep(o)}
        return Knowledge._normalised(kept)

    def intersection(self, other: Knowledge) -> Knowledge:
        return self - (self - other)

    __and__ = intersection

    def issubset(self, other: Knowledge) -> bool:
        return not (self - other).intervals

    __le__ = issubset

    def __bool__(self) -> bool:
        return bool(self.intervals)

    def with_range(self, origin: bytes, first: int, last: int) -> Knowledge:
        return self | Knowledge.of(origin, first, last)

    # -- encoding ----------------------------------------------------------------------

    def to_wire(self) -> list[Any]:
        """``[[origin, [a1, b1, a2, b2, ...]], ...]`` sorted by origin (docs/spec.md)."""
        return [[o, [x for iv in ivs for x in iv]] for o, ivs in self.intervals.items()]

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
        out: dict[bytes, tuple[Interval, ...]] = {}
        previous = b""
        for item in value:
            if type(item) is not list or len(item) != 2:
                raise BundleFormatError("knowledge entry must be [origin, intervals]")
            origin, flat = item
            if type(origin) is not bytes or len(origin) != 32 or origin <= previous:
                raise BundleFormatError("knowledge origins must be sorted 32-byte keys")
            previous = origin
            if type(flat) is not list or not flat or len(flat) % 2:
                raise BundleFormatError("knowledge intervals must be a non-empty even array")
            if len(flat) // 2 > limits.max_intervals:
                raise LimitExceededError(f"more than {limits.max_intervals} intervals")
            budget.charge(ORIGIN_COST + len(flat) // 2 * INTERVAL_COST)
            last_end = -1
            ivs: list[Interval] = []
            for i in range(0, len(flat), 2):
                a, b = flat[i], flat[i + 1]
                if type(a) is not int or type(b) is not int or not 1 <= a <= b <= MAX_SEQ:
                    raise BundleFormatError("knowledge interval out of range")
                if a <= last_end + 1:
                    raise BundleFormatError("knowledge intervals must be sorted and disjoint")
                last_end = b
                ivs.append((a, b))
            out[origin] = tuple(ivs)
        return cls._normalised(out)

    def to_bytes(self) -> bytes:
        return packb(self.to_wire())

    @classmethod
    def from_bytes(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Knowledge:
        if type(data) is not bytes:
            raise BundleFormatError("a knowledge statement is bytes")
        if len(data) > limits.max_header_bytes:
            raise LimitExceededError("knowledge statement too large")
        # [[origin, [a1, b1, ...]], ...]: three arrays deep.
        knowledge = cls.from_wire(unpack(data, "knowledge", limits, max_depth=3), limits)
        if knowledge.to_bytes() != data:
            raise BundleFormatError("knowledge statement is not canonically encoded")
        return knowledge
