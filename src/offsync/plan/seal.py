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
    "seal_rows",
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
