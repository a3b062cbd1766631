"""Hybrid logical clock.

An HLC timestamp is one unsigned integer below 2^63: milliseconds since the Unix epoch
shifted left by 16 bits, and a logical counter in the low 16. It never goes backwards on
one site and always moves past every timestamp the site has received, so a change
written after seeing another always carries a larger timestamp, whatever the wall clocks
say. The 2^63 bound keeps every HLC a signed 64-bit integer (SQL columns, most
languages) and costs nothing: 2^47 ms is the year 6429. Decoders refuse larger values
(docs/spec.md §3).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import ClockError, UsageError

__all__ = ["MAX_HLC", "HybridClock", "hlc_millis", "make_hlc", "next_hlc"]

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
#: The largest valid HLC (and ms value in trust records): fits a signed 64-bit integer.
MAX_HLC = (1 << 63) - 1
#: The encoding is defined for unsigned 64-bit values (tests/vectors/hlc.json); valid
#: HLCs are below 2^63, which ``HybridClock`` and every decoder enforce.
_MAX_U64_MILLIS = (1 << (64 - LOGICAL_BITS)) - 1


def make_hlc(millis: int, logical: int = 0) -> int:
    """The HLC of ``millis`` (ms since the epoch) and a ``logical`` counter."""
    if type(millis) is not int or type(logical) is not int or not 0 <= logical <= LOGICAL_MASK:
        raise UsageError("an HLC is made of int milliseconds and a 16-bit logical counter")
    if not 0 <= millis <= _MAX_U64_MILLIS:
        raise ClockError(f"{millis} ms since the epoch is outside what an HLC can hold")
    return (millis << LOGICAL_BITS) | logical


def hlc_millis(hlc: int) -> int:
    """The wall-clock part of an HLC, ms since the epoch."""
    if type(hlc) is not int or not 0 <= hlc < 1 << 64:
        raise UsageError("an HLC is an unsigned 64-bit int")
    return hlc >> LOGICAL_BITS


def wall_millis() -> int:
    return time.time_ns() // 1_000_000


def next_hlc(last: int, wall_ms: int) -> int:
    """The timestamp to issue after ``last`` when the wall clock reads ``wall_ms``;
    ``ClockError`` if none is left below 2^63 (the wall clock reads before 1970 or after
    the year 6429)."""
    candidate = make_hlc(wall_ms)
    if candidate > MAX_HLC:
        raise ClockError("the wall clock reads after the year 6429: no HLC below 2^63")
    if candidate <= last:
        if last >= MAX_HLC:
            raise ClockError("hybrid logical clock exhausted: no HLC is left below 2^63")
        candidate = last + 1
    return candidate


class HybridClock:
    """Issues timestamps; ``wall`` is injectable so tests can set any clock."""

    __slots__ = ("last", "wall")

    def __init__(self, last: int = 0, wall: Callable[[], int] = wall_millis) -> None:
        if type(last) is not int or not 0 <= last <= MAX_HLC:
            raise UsageError("a clock restarts from an HLC, an int in [0, 2^63)")
        if not callable(wall):
            raise UsageError("wall must be a function returning ms since the epoch")
        self.last = last
        self.wall = wall

    def now(self) -> int:
        self.last = next_hlc(self.last, self.wall())
        return self.last

    def observe(self, remote: int) -> None:
        """Move past a timestamp seen in received data (decoders checked its range)."""
        if type(remote) is not int or not 0 <= remote <= MAX_HLC:
            raise UsageError("an HLC is an int in [0, 2^63)")
        if remote > self.last:
            self.last = remote
