"""The replica's in-memory state, as one value.

Everything a replica keeps in memory about its store — the segment index, its own seqs,
its clock, the trust store in force, the claims peers make on its seqs, fork evidence,
the unknown signers it holds data of — is one frozen ``ReplicaState``. A transaction
works on a copy (``Replica._transaction``) and the replica publishes it when the store
has committed; if anything fails, the copy is dropped, so nothing is ever put back by
hand. Values that only refresh what the store already says (the trust store after a
committed trust write, segments other processes added) are published as they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..segindex import SegmentIndex
from ..segment import Segment
from ..trust import TrustStore

__all__ = ["Pending", "ReplicaState"]


@dataclass(frozen=True, slots=True)
class Pending:
    """A re-examination that failed after its commit (a full disk) and is owed: the
    next write or bundle runs it, comparing with the trust store it started from."""

    trust: TrustStore | None


class ReplicaState(NamedTuple):
    """One value; a new one is made with ``_replace`` (a tuple: cheap on every write)."""

    segments: SegmentIndex  # the index of the segments held
    seq: int  # the highest own seq issued or held
    sealed: int  # the highest own seq in a segment
    hlc: int  # the clock: the last timestamp issued or seen
    trust: TrustStore | None  # in force; None in open mode
    claim: int = 0  # the highest own seq a peer whose word counts says it holds
    forks: tuple[Segment, ...] = ()  # evidence: validly signed segments that fork held ones
    unknown: tuple[bytes, ...] = ()  # unknown signers holding data, first heard from first
    clock_due: int | None = None  # wall ms when a segment held for its clock may be admitted
    pending: Pending | None = None
    cursor: int = 0  # shared stores: where following other processes' segments resumes

    def wrote(self, seq: int, hlc: int) -> ReplicaState:
        """After one local write: ``_replace(seq=seq, hlc=hlc)``, built directly, as it
        runs once per write."""
        return ReplicaState(self[0], seq, self[2], hlc, *self[4:])
