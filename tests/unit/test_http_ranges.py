"""Content-Range of resumable uploads: exactly two forms, parsed and formatted."""

from __future__ import annotations

import re

import pytest

from offsync.http.ranges import (
    CONTENT_RANGE_PATTERN,
    ChunkRange,
    CommitRange,
    content_range,
    parse_content_range,
)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bytes 0-99/1000", ChunkRange(0, 99, 1000)),
        ("bytes 900-999/1000", ChunkRange(900, 999, 1000)),
        ("bytes */1000", CommitRange(1000)),
        ("bytes 0-99/*", None),  # the response form, not a request's
        ("bytes=0-99", None),
        ("bytes 0-99/1000 ", None),
        ("bytes -5/10", None),
        ("bytes \u0660-\u0669/\u0661\u0660", None),  # Arabic-Indic digits: \d takes them
        ("", None),
    ],
)
def test_parse(value: str, parsed: ChunkRange | CommitRange | None) -> None:
    assert parse_content_range(value) == parsed
    assert (parsed is None) == (re.search(CONTENT_RANGE_PATTERN, value) is None)
    if parsed is not None:
        assert parsed.header() == value


def test_format_of_a_slice() -> None:
    assert content_range(0, 100, 1000) == ChunkRange(0, 99, 1000)
    assert content_range(1000, 1000, 1000) == CommitRange(1000)  # nothing left: commit
    assert content_range(0, 100, 1000).header() == "bytes 0-99/1000"


@pytest.mark.parametrize(
    ("rng", "length", "fits"),
    [
        (ChunkRange(0, 99, 1000), None, True),
        (ChunkRange(0, 99, 1000), 100, True),
        (ChunkRange(0, 99, 1000), 99, False),  # the body is not the range
        (ChunkRange(0, 999, 1000), None, True),
        (ChunkRange(0, 1000, 1000), None, False),  # past the total
        (ChunkRange(5, 4, 1000), None, False),  # backwards
    ],
)
def test_a_chunk_fits_its_total_and_its_body(
    rng: ChunkRange, length: int | None, fits: bool
) -> None:
    assert rng.fits(length) is fits
