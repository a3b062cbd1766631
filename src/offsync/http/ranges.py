"""``Content-Range`` of resumable uploads (RFC 9110 section 14.4, as a request header).

A chunk of an upload is ``bytes FIRST-LAST/TOTAL``; ``bytes */TOTAL`` with an empty body
asks the server to apply the TOTAL bytes it holds (after the last chunk met a busy
replica). Nothing else is accepted: ``CONTENT_RANGE_PATTERN`` says exactly what the
server takes, and the OpenAPI document states it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CONTENT_RANGE_PATTERN",
    "ChunkRange",
    "CommitRange",
    "ContentRange",
    "content_range",
    "parse_content_range",
]

# [0-9] rather than \d (which takes any Unicode digit), used with fullmatch.
CONTENT_RANGE_PATTERN = "^bytes ([0-9]+-[0-9]+|\\*)/[0-9]+$"
_CHUNK = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")
_COMMIT = re.compile(r"bytes \*/([0-9]+)")


@dataclass(frozen=True, slots=True)
class ChunkRange:
    """``bytes FIRST-LAST/TOTAL``: bytes ``first`` to ``last`` (inclusive) of ``total``."""

    first: int
    last: int
    total: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def fits(self, length: int | None) -> bool:
        """Whether the range lies in the total and matches a declared body length."""
        return self.first <= self.last < self.total and length in (None, self.size)

    def header(self) -> str:
        return f"bytes {self.first}-{self.last}/{self.total}"


@dataclass(frozen=True, slots=True)
class CommitRange:
    """``bytes */TOTAL``: no bytes; apply the ``total`` bytes the server holds."""

    total: int

    def header(self) -> str:
        return f"bytes */{self.total}"


ContentRange = ChunkRange | CommitRange


def parse_content_range(value: str) -> ContentRange | None:
    """The range a header names, or None if it is not one of the two forms."""
    if m := _CHUNK.fullmatch(value):
        return ChunkRange(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := _COMMIT.fullmatch(value):
        return CommitRange(int(m.group(1)))
    return None


def content_range(first: int, end: int, total: int) -> ContentRange:
    """The range of ``bundle[first:end]`` of ``total`` bytes: a commit when empty."""
    return ChunkRange(first, end - 1, total) if first < end else CommitRange(total)
