"""What a replica keeps of signers it knows nothing about, and what it drops.

In trust mode a validly signed segment from a key without a certificate is not applied
but held in quarantine, so that it can be applied if the key is certified later. Anyone
can make keys, so without a bound anyone could make a replica store anything: what such
*unknown signers* (no certificate, revocation or successor in the trust store; never
an authority, never the replica itself) leave in quarantine is bounded per signer and
in total, by segments and by bytes (``Limits.max_unknown_*``). Beyond a bound, the
oldest data goes first: within a signer its lowest seqs (stream by stream), across
signers the signers first heard from earliest. Certified sites' data, revoked keys'
(evidence) and everything applied are never candidates.

Dropped data is no longer held: knowledge stops claiming it, so a peer may offer it
again, and it is judged again like anything new (kept if there is room, dropped if
not); a signer certified later has its data fetched again like any missing data.

This module is sans-IO: it decides from values; the replica runs the decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..limits import Limits
from ..segindex import SegmentIndex, Stream
from ..trust import TrustStore

__all__ = ["Eviction", "evictions", "is_unknown", "plan_evictions"]

#: One held segment: its stream, its first seq and its encoded size in bytes.
Held = tuple[Stream, int, int]


def evictions(
    signers: Sequence[tuple[bytes, Sequence[Held]]], limits: Limits
) -> list[tuple[Stream, int]]:
    """The (stream, first seq) of the segments to drop to stay within the bounds.

    ``signers``: every unknown signer holding data, the one first heard from first, each
    with its held segments by stream and seq.
    """
    drop: list[tuple[Stream, int]] = []
    kept: list[tuple[bytes, list[Held]]] = []
    for origin, segments in signers:
        held = list(segments)
        size = sum(s for _, _, s in held)
        cut = 0
        while cut < len(held) and (
            len(held) - cut > limits.max_unknown_signer_segments
            or size > limits.max_unknown_signer_bytes
        ):
            size -= held[cut][2]
            cut += 1
        drop += [(stream, first) for stream, first, _ in held[:cut]]
        kept.append((origin, held[cut:]))
    count = sum(len(h) for _, h in kept)
    total = sum(s for _, h in kept for _, _, s in h)
    for _, held in kept:  # oldest signers first
        for stream, first, size in held:
            if count <= limits.max_unknown_segments and total <= limits.max_unknown_bytes:
                return drop
            drop.append((stream, first))
            count, total = count - 1, total - size
    return drop


def is_unknown(origin: bytes, trust: TrustStore | None, own: bytes) -> bool:
    """Whether ``origin`` is a key ``trust`` says nothing about: no certificate,
    revocation or successor; not an authority, not this site (``own``)."""
    return (
        trust is not None
        and origin != own
        and origin not in trust.authorities
        and trust.rule(origin) is None
    )


@dataclass(frozen=True, slots=True)
class Eviction:
    """What to drop, and the unknown signers holding data after it, oldest first."""

    drop: list[tuple[Stream, int]]  # (stream, first seq) of each segment
    order: tuple[bytes, ...]


def plan_evictions(
    index: SegmentIndex,
    order: Sequence[bytes],
    trust: TrustStore | None,
    own: bytes,
    limits: Limits,
    *,
    new: Iterable[bytes] = (),
    rescan: bool = False,
) -> Eviction:
    """Stay within the bounds. ``index``: what is held, newly stored segments included;
    ``order``: the unknown signers as last planned, first heard from first; ``new``:
    the origins of newly stored segments (heard from last); ``rescan``: also look for
    signers that ``trust`` stopped knowing (a certificate was taken back)."""
    found = sorted({s.origin for s in index if is_unknown(s.origin, trust, own)}) if rescan else []
    candidates = dict.fromkeys([*order, *new, *found])
    held = {
        o: [(stream, s.first, s.size) for stream in index.streams_of(o) for s in index[stream]]
        for o in candidates
        if is_unknown(o, trust, own)
    }
    signers = [o for o, segs in held.items() if segs]
    drop = evictions([(o, held[o]) for o in signers], limits)
    if drop:
        gone = set(drop)
        signers = [o for o in signers if any((st, f) not in gone for st, f, _ in held[o])]
    return Eviction(drop, tuple(signers))
