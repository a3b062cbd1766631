"""The replica's in-memory state, as one value.

Everything a replica keeps in memory about its store — the segment index, its own
streams' seqs and the claims peers make on them, its clock, the trust store in force,
fork evidence, the unknown signers it holds data of — is one frozen ``ReplicaState``.
A transaction works on a copy (``Replica._transaction``) and the replica publishes it
when the store has committed; if anything fails, the copy is dropped, so nothing is
ever put back by hand. Values that only refresh what the store already says (the trust store after a
committed trust write, segments other processes added) are published as they are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ..segindex import SegmentIndex, Stream
from ..segment import AnySegment
from ..trust import TrustStore

__all__ = ["NO_SEQS", "OwnSeqs", "Pending", "ReplicaState"]


class OwnSeqs(NamedTuple):
    """Where one of this site's own streams stands."""

    seq: int = 0  # the highest seq issued or held
    sealed: int = 0  # the highest seq in a segment
    claim: int = 0  # the highest seq a peer whose word counts says it holds


#: An own stream nothing was written to yet.
NO_SEQS = OwnSeqs()


@dataclass(frozen=True, slots=True)
class Pending:
    """A re-examination that failed after its commit (a full disk) and is owed: the
    next write or bundle runs it, comparing with the trust store it started from."""

    trust: TrustStore | None


class ReplicaState(NamedTuple):
    """One value; a new one is made with ``_replace`` (a tuple: cheap on every write)."""

    segments: SegmentIndex  # the index of the segments held
    own: Mapping[Stream, OwnSeqs]  # per own stream (format 2: the one); replaced, never mutated
    hlc: int  # the clock: the last timestamp issued or seen
    trust: TrustStore | None  # in force; None in open mode
    forks: tuple[AnySegment, ...] = ()  # evidence: signed segments that fork held ones
    unknown: tuple[bytes, ...] = ()  # unknown signers holding data, first heard from first
    clock_due: int | None = None  # wall ms when a segment held for its clock may be admitted
    pending: Pending | None = None
    cursor: int = 0  # shared stores: where following other processes' segments resumes
    #: Records erased here, (collection, key): never shrinks (``offsync.plan.erasure``).
    erased: frozenset[tuple[str, str]] = frozenset()

    def seqs(self, stream: Stream) -> OwnSeqs:
        """Where the own stream ``stream`` stands."""
        return self.own.get(stream, NO_SEQS)

    def with_seqs(self, stream: Stream, **changes: int) -> ReplicaState:
        """With the own stream ``stream``'s seqs changed (``OwnSeqs`` fields)."""
        return self._replace(own={**self.own, stream: self.seqs(stream)._replace(**changes)})

    def wrote(self, stream: Stream, seq: int, hlc: int) -> ReplicaState:
        """After one local write to ``stream``: its seq and the clock, built directly, as
        it runs once per write."""
        now = self.own.get(stream, NO_SEQS)
        mine = tuple.__new__(OwnSeqs, (seq, now[1], now[2]))
        return tuple.__new__(ReplicaState, (self[0], {**self.own, stream: mine}, hlc, *self[3:]))
