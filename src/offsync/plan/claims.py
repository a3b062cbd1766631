"""Receipts: which to keep, and whose claims on this site's own seqs count.

A peer's receipt says which of this site's own changes it holds. A site restored from
an old backup learns that way that it has issued more seqs than it holds, or holds
unsealed seqs that were sealed before the restore, and must not write
(``SequenceReuseError``) until it has those segments back: the rule is that a site
writes only while no counted claim is above its sealed seq. In open mode
every validly signed key's claim counts (any key can block a site: a denial of service,
docs/threat-model.md); in trust mode only an authority's and a certified, unrevoked
site's. This module is sans-IO.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import SequenceReuseError
from ..knowledge import Knowledge
from ..receipt import Receipt
from ..segindex import SegmentIndex, Stream, stream_intervals, top_seq
from ..trust import TrustStore

__all__ = [
    "claim_counts",
    "counted_claim",
    "cut_own",
    "kept_receipts",
    "raised_claim",
    "reuse_error",
]


def claim_counts(signer: bytes, trust: TrustStore | None) -> bool:
    """Whether ``signer``'s receipts may stop this site from writing."""
    if trust is None or signer in trust.authorities:
        return True
    rule = trust.rule(signer)
    return rule is not None and rule.cert is not None and rule.revocation is None


def counted_claim(
    claims: Iterable[tuple[bytes, Knowledge]], own: Stream, trust: TrustStore | None
) -> int:
    """The highest seq of the own stream ``own`` that a peer whose claims count says it
    holds, from each peer's newest (peer, knowledge)."""
    return max((top_seq(k, own) for p, k in claims if claim_counts(p, trust)), default=0)


def kept_receipts(receipts: Iterable[Receipt], own: bytes) -> list[Receipt]:
    """The receipts of a bundle that are kept as peers' statements (not our own)."""
    return [r for r in receipts if r.replica != own]


def raised_claim(
    claim: int, receipts: Iterable[Receipt], own: Stream, trust: TrustStore | None
) -> int:
    """The counted claim on the own stream ``own`` after a bundle's receipts. Our own
    receipt passed back by a relay is our word: it always counts."""
    me = own.origin
    counted = (r for r in receipts if r.replica == me or claim_counts(r.replica, trust))
    return max([claim, *(top_seq(r.knowledge, own) for r in counted)])


def reuse_error(
    claim: int, seq: int, claimants: Iterable[bytes], *, sealed: int | None = None
) -> SequenceReuseError | None:
    """Why this site may not write (issue seq ``seq + 1``), if peers say they hold own
    changes it has not sealed (``sealed``: its highest sealed seq; None: ``seq``).

    A claim above ``seq`` names seqs this site lost; a claim above ``sealed`` but not
    above ``seq`` names seqs it holds only unsealed (restored from a backup taken before
    they were sealed). Either way the peer's segments must come back first: until then
    nothing can be sealed (sealing could fork), so a change written now could not leave."""
    top = seq if sealed is None else min(sealed, seq)
    if claim <= top:
        return None
    names = ", ".join(c.hex()[:12] for c in claimants)
    if claim > seq:
        held = f"but this replica is at seq {seq}"
    else:
        held = f"that this replica holds but has not sealed (it has sealed up to seq {top})"
    return SequenceReuseError(
        f"peers hold changes of this site up to seq {claim} {held} (restored from a "
        "backup?): sync with a peer to get them back before writing, or move this site "
        f"to a new key (claimed by {names}; see Replica.seq_claims)"
    )


def cut_own(
    index: SegmentIndex, own: Stream, receipts: Iterable[Receipt], trust: TrustStore | None
) -> int:
    """The first seq of the lowest own segment held here that a counted receipt cuts
    (0: none): a seq range it states of the own stream ``own`` begins or ends strictly
    inside the segment. A peer holds segments whole, so it holds another cut of this
    site's history there (sealed again after a restore, the first cut never having
    left): this site's own cut gives way to it from there (``Replica.apply``) and gets
    the peer's back, as ``plan.apply.own_cut_gives_way`` does when the segment itself
    arrives first. A receipt that states less than its signer holds ("at least this")
    costs a round trip, no more: the same segments come back."""
    segs = index.get(own, ())
    if not segs:
        return 0
    starts = {s.first for s in segs}
    ends = {s.last for s in segs}
    cuts: list[int] = []
    for r in receipts:
        if not claim_counts(r.replica, trust):
            continue
        for stream, ivs in stream_intervals(r.knowledge):
            if stream == own:
                cuts += (a for a, _ in ivs if a not in starts)
                cuts += (b + 1 for _, b in ivs if b not in ends)
    lowest = 0
    for seq in cuts:
        for s in segs:  # the segment a cut falls strictly inside
            if s.first < seq <= s.last and (lowest == 0 or s.first < lowest):
                lowest = s.first
    return lowest
