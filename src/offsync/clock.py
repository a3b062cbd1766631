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

__all__ = ["MAX_HLC", "HybridClock", "hlc_millis", "make_hlc", "next_hlc"]

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
#: The largest valid HLC (and ms value in trust records): fits a signed 64-bit integer.
MAX_HLC = (1 << 63) - 1


def make_hlc(millis: int, logical: int = 0) -> int:
    return (millis << LOGICAL_BITS) | logical


def hlc_millis(hlc: int) -> int:
    return hlc >> LOGICAL_BITS


def wall_millis() -> int:
    return time.time_ns() // 1_000_000


def next_hlc(last: int, wall_ms: int) -> int:
    """The timestamp to issue after ``last`` when the wall clock reads ``wall_ms``."""
    candidate = make_hlc(wall_ms)
    issued = candidate if candidate > last else last + 1
    if issued > MAX_HLC:
        raise OverflowError("hybrid logical clock exhausted")
    return issued


class HybridClock:
    """Issues timestamps; ``wall`` is injectable so tests can set any clock."""

    __slots__ = ("last", "wall")

    def __init__(self, last: int = 0, wall: Callable[[], int] = wall_millis) -> None:
        self.last = last
        self.wall = wall

    def now(self) -> int:
        self.last = next_hlc(self.last, self.wall())
        return self.last

    def observe(self, remote: int) -> None:
        """Move past a timestamp seen in received data."""
        if remote > self.last:
            self.last = remote
