"""Sealing: when own changes are sealed, and which go into which segment.

Own changes wait in the outbox until they are sealed into signed segments of at most
``SEGMENT_MAX_CHANGES`` changes and ``SEGMENT_MAX_BYTES`` encoded bytes, chained by
hash. Whole segments are sealed as soon as a whole segment's worth of writes has
committed, so a long offline backlog is already signed when the link comes back; the
tail is sealed when packing. Nothing is sealed while a peer claims own seqs this site
does not hold (a restore from a backup): sealing then would fork. ``cut`` reads the
outbox page by page, so sealing a backlog needs memory for one page. Sans-IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..change import Change
from ..identity import Identity
from ..segment import Segment

__all__ = [
    "SEAL_PAGE",
    "SEGMENT_MAX_BYTES",
    "SEGMENT_MAX_CHANGES",
    "cut",
    "may_seal",
    "row_bound",
    "row_bounds",
    "seal_rows",
    "segment_ends",
    "whole_segment_waits",
]

#: Own changes are sealed into segments of at most this many changes / encoded bytes.
SEGMENT_MAX_CHANGES = 2000
SEGMENT_MAX_BYTES = 256 * 1024
#: Outbox rows read at a time while sealing.
SEAL_PAGE = 20_000

#: One outbox row: (seq, the change's row bytes, ``Change.to_row``).
OutboxRow = tuple[int, bytes]


def may_seal(seq: int, sealed: int, claim: int) -> bool:
    """Whether there is anything to seal, and sealing cannot fork: no peer whose word
    counts claims own seqs above those sealed here."""
    return seq > sealed and claim <= sealed


def whole_segment_waits(seq: int, sealed: int) -> bool:
    """Whether a whole segment's worth of own changes waits unsealed."""
    return seq - sealed >= SEGMENT_MAX_CHANGES


def cut(pages: Iterable[Sequence[OutboxRow]], *, complete_only: bool) -> Iterator[list[OutboxRow]]:
    """The outbox rows of each segment to seal, in seq order. With ``complete_only``,
    only segments that reached their size limit; the tail waits for more writes."""
    chunk: list[OutboxRow] = []
    size = 0
    for page in pages:
        for seq, data in page:
            if chunk and (
                len(chunk) >= SEGMENT_MAX_CHANGES or size + len(data) > SEGMENT_MAX_BYTES
            ):
                yield chunk
                chunk, size = [], 0
            chunk.append((seq, bytes(data)))
            size += len(data)
        if len(chunk) >= SEGMENT_MAX_CHANGES:
            yield chunk
            chunk, size = [], 0
    if chunk and not complete_only:
        yield chunk


def seal_rows(identity: Identity, rows: Sequence[OutboxRow], prev: bytes, level: int) -> Segment:
    """One signed segment of ``identity``'s outbox rows, chained to ``prev``."""
    origin = identity.public_key
    changes = [Change.from_row(origin, seq, data) for seq, data in rows]
    return Segment.seal(identity, changes, prev, level)


def segment_ends(sizes: Sequence[int], *, complete_only: bool) -> list[int]:
    """Where ``cut`` would end each segment of rows of these sizes (row bytes), as
    indexes one past each segment's last row: for a writer that seals changes it holds
    in memory rather than reading the outbox back."""
    ends: list[int] = []
    count = size = 0
    for i, n in enumerate(sizes):
        if count and (count >= SEGMENT_MAX_CHANGES or size + n > SEGMENT_MAX_BYTES):
            ends.append(i)
            count = size = 0
        count += 1
        size += n
    if count and (count >= SEGMENT_MAX_CHANGES or not complete_only):
        ends.append(len(sizes))
    return ends


def _header(n: int, small: int) -> int:
    """Bytes of a msgpack str or bin header for ``n`` bytes (``small``: fixstr's 32, or
    0 for bin, which has no fix form)."""
    return 1 if n < small else 2 if n < 1 << 8 else 3 if n < 1 << 16 else 5


#: The bytes of a bulk put's outbox row besides its names and fields (``row_bound``).
_FIXED = 16


def row_bound(collection_bytes: int, key_bytes: int, fields_bytes: int) -> int:
    """At most the bytes of a bulk put's outbox row (``Change.to_row``: an array of an
    HLC of at most 9 bytes, the names, the op, the fields, no parents, and format 3's
    empty prefix, schema 0 and no author: ``plan_new``'s changes)."""
    return (
        _FIXED  # array header 1, hlc 9, op 1, empty parents 1, prefix/schema/author 3, luck 1
        + _header(collection_bytes, 32)
        + collection_bytes
        + _header(key_bytes, 32)
        + key_bytes
        + _header(fields_bytes, 0)
        + fields_bytes
    )


def row_bounds(
    collection_bytes: int, key_bytes: Sequence[int], fields_bytes: Sequence[int]
) -> list[int]:
    """``row_bound`` of many puts into one collection, in one pass."""
    fixed = _FIXED + _header(collection_bytes, 32) + collection_bytes
    return [
        fixed
        + (1 if k < 32 else 2 if k < 1 << 8 else 3 if k < 1 << 16 else 5)
        + k
        + (2 if f < 1 << 8 else 3 if f < 1 << 16 else 5)
        + f
        for k, f in zip(key_bytes, fields_bytes, strict=True)
    ]
