"""Packing: what to send a peer with given knowledge, grouped into bundles.

Everything held that the peer's knowledge lacks travels, as the whole segments it is
in (segments are never re-cut; duplicates are free), except fork evidence, which is
never passed on. Segments are grouped in priority order (``prioritised``: by their
collection's priority, then stream, then seq; docs/spec.md §9.5) into bundles of
at most ``max_bytes``, leaving ``BUNDLE_OVERHEAD`` for each bundle's framing, header and
receipts; a bundle that still comes out too large is split in two (``fit``), and a
single segment too large for ``max_bytes`` travels alone. ``bundles`` is a generator,
so a backlog is framed one bundle at a time. This module is sans-IO.

The index and knowledge are keyed by stream (origin, partition); what is sent may be
restricted to the receiver's scope (``wanted``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from ..knowledge import Interval, Knowledge
from ..limits import Limits
from ..scope import TRUST_COLLECTION
from ..segindex import HeldSegment, SegmentIndex, Stream, knowledge_of, stream_intervals
from ..status import Kind

__all__ = [
    "BUNDLE_OVERHEAD",
    "DEFAULT_MAX_BUNDLE",
    "DEFAULT_PRIORITY",
    "Fit",
    "bundles",
    "carried",
    "fit",
    "held_knowledge",
    "prioritised",
    "priority_map",
    "receipt_knowledge",
    "select",
]

#: Default upper bound for one packed bundle.
DEFAULT_MAX_BUNDLE = 16 * 1024 * 1024
#: Room planned for a bundle's framing, header and receipts beside its segments; a
#: bundle that still comes out too large is split in two.
BUNDLE_OVERHEAD = 4096

#: The priority of a collection no ``priorities`` option names (lower goes first).
DEFAULT_PRIORITY = 100

Item = tuple[Stream, HeldSegment]


def priority_map(priorities: Mapping[str, int] | None) -> dict[str, int]:
    """The priorities a replica packs by: those given, with ``_trust`` always 0 (a
    certificate or revocation must never wait behind the data it governs)."""
    out = {str(c): int(p) for c, p in (priorities or {}).items()}
    out[TRUST_COLLECTION] = 0
    return out


def prioritised(items: Iterable[Item], priorities: Mapping[str, int]) -> list[Item]:
    """``items`` by (priority of the stream's collection, stream, seq): what matters first
    goes first, so a round cut short by a byte budget has sent that (spec §9.5)."""
    return sorted(
        items,
        key=lambda item: (
            priorities.get(item[0].collection, DEFAULT_PRIORITY),
            item[0],
            item[1].first,
        ),
    )


def held_knowledge(index: SegmentIndex, own: Mapping[Stream, tuple[int, int, int]]) -> Knowledge:
    """What a replica holds: every held segment (quarantined ones too: they are held,
    so they are not sent again), and its own changes not yet sealed (per own stream,
    ``(seq, sealed, claim)``: at ``seq``, sealed to ``sealed``), except those at or
    below ``claim``.

    A counted claim above ``sealed`` means a peer holds own seqs sealed by this site
    before a restore that this site holds only in its outbox (a backup taken before they
    were sealed). Those must come back as the segments the peer holds (sealing them here
    could cut them differently: a fork), so they are not listed: listed, the peer would
    never send them, sealing would wait for them for ever, and every change written
    meanwhile would stay in the outbox."""
    held = index.intervals()
    for stream, (seq, sealed, claim) in own.items():
        first = max(sealed, claim) + 1
        if seq >= first:
            held.setdefault(stream, []).append((first, seq))
    return knowledge_of(held)


def receipt_knowledge(index: SegmentIndex) -> Knowledge:
    """What a replica's own receipt states: what it holds, with only its own changes
    that are sealed. A receipt is a claim on the issuer's own seqs too (relayed back
    after a restore, ``offsync.plan.claims``): a claim on seqs that were never sealed
    could never be met, as no peer can send them back."""
    return knowledge_of(index.intervals())


def select(
    index: SegmentIndex, missing: Knowledge, wanted: Callable[[Stream], bool] | None = None
) -> list[Item]:
    """The held segments that carry some of ``missing``, by stream and seq; never fork
    evidence. ``wanted``: which streams may be sent at all (None: every one)."""
    out: list[Item] = []
    for stream, ivs in stream_intervals(missing):
        if wanted is not None and not wanted(stream):
            continue
        for seg in index.get(stream, ()):
            if seg.status.kind is Kind.FORK or not any(
                a <= seg.last and seg.first <= b for a, b in ivs
            ):
                continue
            out.append((stream, seg))
    return out


def bundles(items: Iterable[Item], max_bytes: int, *, always: bool = False) -> Iterator[list[Item]]:
    """The segments of each bundle, in order. With ``always``, one empty bundle when
    there is nothing to send (so that the sender's receipt still travels)."""
    group: list[Item] = []
    size = 0
    for item in items:
        if group and size + item[1].size + BUNDLE_OVERHEAD > max_bytes:
            yield group
            group, size = [], 0
        group.append(item)
        size += item[1].size
    if group or always:  # the last group is empty only when there is nothing at all
        yield group


def carried(group: Sequence[Item]) -> Knowledge:
    """The seq ranges a bundle of ``group`` says it carries."""
    ranges: dict[Stream, list[Interval]] = {}
    for stream, s in group:
        ranges.setdefault(stream, []).append((s.first, s.last))
    return knowledge_of(ranges)


class Fit(enum.Enum):
    SEND = "send"
    SPLIT = "split"  # the receipts in the header took more room than planned
    TOO_LARGE = "too large"  # one segment over the bundle limit: it cannot travel


def fit(size: int, segments: int, max_bytes: int, limits: Limits) -> Fit:
    """What to do with a built bundle of ``size`` bytes carrying ``segments``."""
    if size <= max_bytes or (segments == 1 and size <= limits.max_bundle_bytes):
        return Fit.SEND
    return Fit.SPLIT if segments > 1 else Fit.TOO_LARGE
