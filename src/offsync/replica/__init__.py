"""A replica: one site's identity, store, merge policies and clock.

This is the layer that ties the sans-IO core to a store. The protocol decisions are
pure functions in ``offsync.plan``; ``Replica`` is their executor: it owns the lock and
one store transaction per write, batch or bundle, runs the plans against its store, and
keeps its in-memory state as one value (``state.ReplicaState``) that it publishes when
the transaction has committed. The class is assembled from one part per job:

* ``core``     — configuration, the state value and transactions, merging;
* ``reads``    — records, conflicts, quarantine, receipts and claims;
* ``writes``   — put, delete, resolve, batch, and what follows a commit;
* ``sealing``  — own changes into signed segments;
* ``applying`` — bundles, on a store of its own or shared by several processes;
* ``examine``  — trust: re-examining held segments, bounding unknown signers' data;
* ``packing``  — bundles for a peer;
* ``history``  — every version of a record, for audit;
* ``replica``  — ``Replica`` itself: opening, closing, the lock and the clock.
"""

from .history import HistoryEntry
from .replica import Replica
from .types import APPLIED, ApplyReport, Conflict, Quarantined, QuarantinedChange, SeqClaim

__all__ = [
    "APPLIED",
    "ApplyReport",
    "Conflict",
    "HistoryEntry",
    "Quarantined",
    "QuarantinedChange",
    "Replica",
    "SeqClaim",
]
