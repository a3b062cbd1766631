"""Delivery status from receipts: has this change, this record, reached the centre?

Every bundle carries its sender's signed receipt (a statement of what it holds, bounded
by what its receiver needs), and relays pass on the receipts they hear that concern
their receiver, so a sub-district learns through its district what the centre holds.
From what the receipts of each peer said (their union) this module answers, per change
and per record, one of:

* ``LOCAL``  — held here; no receipt yet says anyone else holds it;
* ``RELAY``  — some peer that is not the centre holds it (it is on its way);
* ``CENTRE`` — a replica configured as the centre holds it;

and ``UNKNOWN`` for a change that neither this replica nor any receipt mentions.
Which keys count as the centre is configuration: several central servers may share
the role (a deployment of several centres that peer with each other, docs/scale.md),
and a change is at the centre once *any* of them holds it. In trust mode a centre's
receipt counts only while its key is certified and not revoked (or is an authority),
the same rule that decides whose receipts may stop this site from writing
(``offsync.plan.claims``): delivery, fork safety and ``offsync status`` agree on which
receipts count. A receipt is never wrong, only out of date: the status only moves
forward.

Format 3 numbers changes per stream ``(origin, partition)`` (docs/spec-v3.md §4), so a
change is named with its stream: a ``Change`` (``replica.record_changes``) or a pair
``(Stream, seq)``. A bare ``ChangeId`` (what ``put`` returns) is accepted where it is
unambiguous: the one stream of its origin, here or in a receipt, that holds its seq
(a site writing in several partitions has several seq 1s; then name the stream, else
``UsageError``). A change is held where a receipt's knowledge of its stream contains
its seq.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .change import Change, ChangeId
from .errors import UsageError
from .identity import SiteRef, key_of
from .knowledge import Knowledge
from .plan.claims import claim_counts
from .replica import Replica
from .scope import Stream

__all__ = ["Delivery", "PeerPending", "Status", "Where"]

#: A change named with its stream: the change itself, or ``(stream, seq)``; or a
#: ``ChangeId`` where only one stream of its origin holds its seq.
Where = Change | tuple[Stream, int] | ChangeId


def _where(change: Where, known: Iterable[Knowledge]) -> tuple[Stream, int] | None:
    """``(stream, seq)`` of ``change``; for a bare id, the one stream of ``known`` that
    holds it (None if none does)."""
    if isinstance(change, Change):
        return change.stream, change.seq
    first, seq = change
    if type(seq) is not int:
        raise UsageError("a change is named (Stream, seq), a Change or a ChangeId")
    if isinstance(first, Stream):
        return first, seq
    found = {
        stream
        for k in known
        for stream in k.restrict_origins([first]).streams()
        if k.contains(stream, seq)
    }
    if len(found) > 1:
        raise UsageError(
            f"change id {first.hex()[:12]}/{seq} is in {len(found)} streams: name its stream,"
            " as (Stream, seq) or with the Change"
        )
    return (found.pop(), seq) if found else None


class Status(enum.IntEnum):
    """How far a change has travelled, ordered: a later status implies an earlier one."""

    UNKNOWN = 0
    LOCAL = 1
    RELAY = 2
    CENTRE = 3


@dataclass(frozen=True, slots=True)
class PeerPending:
    """What a peer still lacks, as far as its newest receipt tells."""

    peer: bytes
    is_centre: bool
    heard: int  # HLC of the newest receipt from this peer
    missing: Knowledge  # held here, not (yet) held there

    @property
    def count(self) -> int:
        return self.missing.count()


@dataclass(frozen=True, slots=True)
class _Heard:
    created: int
    knowledge: Knowledge


class Delivery:
    """Answers delivery questions for ``replica``; ``centre`` names the central keys."""

    def __init__(self, replica: Replica, centre: Iterable[SiteRef]) -> None:
        self.replica = replica
        self.centre = frozenset(key_of(c) for c in centre)

    def _receipts(self) -> dict[bytes, _Heard]:
        """Per peer: the newest receipt's HLC and the union of what its receipts said
        (a receipt may state only what its receiver needed, docs/spec.md §6)."""
        me = self.replica.id
        union = self.replica.peer_knowledge()
        return {
            p: _Heard(r.created, union.get(p, r.knowledge))
            for p, r in self.replica.receipts().items()
            if p != me
        }

    def counted_centres(self) -> frozenset[bytes]:
        """The centre keys whose receipts count now: all of them in open mode; in trust
        mode those certified and not revoked (or authorities)."""
        trust = self.replica.trust_store
        return frozenset(c for c in self.centre if claim_counts(c, trust))

    def _status(
        self,
        change: Where,
        receipts: dict[bytes, _Heard],
        here: Knowledge,
        centres: frozenset[bytes] | None = None,
    ) -> Status:
        centres = self.counted_centres() if centres is None else centres
        where = _where(change, [here, *(r.knowledge for r in receipts.values())])
        if where is None:
            return Status.UNKNOWN
        stream, seq = where
        holders = [p for p, r in receipts.items() if r.knowledge.contains(stream, seq)]
        if any(p in centres for p in holders):
            return Status.CENTRE
        if holders:
            return Status.RELAY
        return Status.LOCAL if here.contains(stream, seq) else Status.UNKNOWN

    def status(self, change: Where) -> Status:
        """Where one change (with its stream) is known to be."""
        return self._status(change, self._receipts(), self.replica.knowledge())

    def holders(self, change: Where) -> list[bytes]:
        """Peers whose receipts say they hold ``change``."""
        receipts = self._receipts()
        known = [self.replica.knowledge(), *(r.knowledge for r in receipts.values())]
        where = _where(change, known)
        if where is None:
            return []
        stream, seq = where
        return sorted(p for p, r in receipts.items() if r.knowledge.contains(stream, seq))

    def record_status(self, collection: str, key: str) -> Status:
        """The least-travelled of the changes that make up this replica's version of the
        record: ``CENTRE`` means the centre holds the record as it is seen here."""
        ids = list(self.replica.record_changes(collection, key))
        if not ids:
            return Status.UNKNOWN
        receipts, here, centres = self._receipts(), self.replica.knowledge(), self.counted_centres()
        return min(self._status(c, receipts, here, centres) for c in ids)

    def undelivered(self, origin: bytes | None = None) -> Knowledge:
        """Changes of ``origin`` (default: this replica) held here that no centre holds."""
        origin = origin or self.replica.id
        mine = self.replica.knowledge().restrict_origins([origin])
        centres = self.counted_centres()
        for peer, receipt in self._receipts().items():
            if peer in centres:
                mine = mine - receipt.knowledge
        return mine

    def reached_centre(self, origin: bytes | None = None) -> bool:
        """True when a centre holds every change of ``origin`` this replica holds."""
        return not self.undelivered(origin)

    def pending(self, *, own_only: bool = True) -> list[PeerPending]:
        """Per peer heard from, what it lacks of the changes held here: only this
        replica's own changes by default, every origin's with ``own_only=False``."""
        here = self.replica.knowledge()
        me = self.replica.id
        scope = here.restrict_origins([me]) if own_only else here
        centres = self.counted_centres()
        return [
            PeerPending(peer, peer in centres, receipt.created, scope - receipt.knowledge)
            for peer, receipt in sorted(self._receipts().items())
        ]
