"""A replica's scope: what it holds, and growing or shrinking it (``offsync.plan.scopes``).

The held scope is kept in the store's meta (``SCOPE_META``), so a replica reopened
without ``scope=`` keeps the one it had. A scope that grows needs nothing here: the
replica's knowledge of the new partitions is empty, so its next pull fetches exactly
their history. One that shrinks removes what left it from this store only, in one
transaction, once no own change there waits for a peer to hold it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from ..bundle import Bundle
from ..encoding import packb
from ..errors import UsageError
from ..knowledge import Knowledge
from ..plan.scopes import held_scope, leaving, unconfirmed
from ..scope import Partition, Scope, Stream
from ..segindex import own_meta
from ..segment import RedactedSegment, Segment
from .packing import RESTORED_META
from .reads import _Reads
from .types import ApplyReport

__all__ = ["SCOPE_META"]

log = logging.getLogger("offsync")
_Seg = TypeVar("_Seg", bound=Segment | RedactedSegment)

#: The meta that keeps a replica's held scope (``Scope.to_bytes``); absent: everything.
SCOPE_META = "scope"
#: Every seq of a stream (``SegmentIndex.updated(drop=...)`` of a whole stream).
_ALL_SEQS = (0, 1 << 63)


class _Scoping(_Reads):
    #: The deployment's reference collections, held whole by every replica.
    reference: tuple[str, ...] = ()
    _wanted: Scope | None = None  # at open: the scope asked for, until it is settled

    @property
    def scope(self) -> Scope:
        """What this replica holds: the scope it was opened with (or kept in its store),
        plus ``_trust`` and the reference collections. Everything for an unscoped one."""
        return self._holds

    def reader_scope(self, read: Scope) -> Scope:
        """What a reader whose certified read scope is ``read`` holds: ``read`` plus
        ``_trust`` and this deployment's reference collections, checked against the
        partition rule. What a server passes to ``iter_pack(scope=...)`` for it."""
        return held_scope(read, self.reference, self.rule)

    def _open_scope(self, scope: Scope | None, reference: Iterable[str]) -> None:
        """At open: take the scope kept in the store, or ``scope`` when given (for a new
        store, or a scope change, made once the state is loaded: ``_settle_scope``)."""
        if isinstance(reference, str):  # one name would become its letters
            raise UsageError("reference is a list of collection names, not one str")
        self.reference = tuple(reference)
        kept = self.store.get_meta(SCOPE_META)
        held = Scope.everything() if kept is None else Scope.from_bytes(kept)
        self._set_holds(held)
        if scope is not None or self.reference:
            if scope is None:  # only reference collections named: added to what is kept
                wanted = held | held_scope(Scope.nothing(), self.reference, self.rule)
            else:
                wanted = held_scope(scope, self.reference, self.rule)
            self._wanted = wanted
        else:
            self._wanted = None

    def _settle_scope(self) -> None:
        """At open, once the state is loaded: change to the scope asked for, if any."""
        wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != self._holds:
            if self.store.read_only:
                raise UsageError(
                    "this replica is open read-only: open it for writing to change its scope"
                )
            self._change_scope(wanted, at_open=True)

    def set_scope(self, scope: Scope) -> None:
        """Hold ``scope`` from now on (plus ``_trust`` and the reference collections).

        Growing: nothing is fetched here; the next pull fetches the history of the new
        partitions (this replica's knowledge of them is empty). Shrinking: the records,
        segments and outbox rows of the partitions that left are removed from this
        store (from no other), its knowledge no longer claims them, and segments of
        them that arrive later are not kept. ``UsageError`` while this site's own
        changes there are not known to be held by a peer whose word counts (sync
        first): dropping them would lose them. On a store shared by several processes,
        ``UsageError``: restart them all with ``Replica(..., scope=...)`` instead."""
        with self._lock:
            if self._work is not None:  # the scope in memory could not roll back with it
                raise UsageError("set_scope cannot run inside a batch")
            self._change_scope(held_scope(scope, self.reference, self.rule))

    def _change_scope(self, new: Scope, *, at_open: bool = False) -> None:
        if self.store.shared and not at_open:
            raise UsageError(
                "the scope of a store shared by several processes changes when they are"
                " all restarted with the new scope (Replica(..., scope=...)): a running"
                " process would go on holding the old one"
            )
        self._follow_store()
        st = self._st
        held = {s.partition for s in st.segments} | set(self.store.outbox_partitions())
        gone = leaving(held, new)
        # Held by a peer: what peers' counted receipts claim (``seq_claims``), not the
        # claim that stops seq reuse, which our own receipt coming back also raises.
        claimed: dict[Stream, int] = {}
        for c in self.seq_claims():
            if c.counted and c.stream is not None:
                claimed[c.stream] = max(c.seq, claimed.get(c.stream, 0))
        owns = {s: (m.seq, m.sealed, claimed.get(s, 0)) for s, m in st.own.items()}
        waiting = unconfirmed(owns, new)
        if waiting:
            names = ", ".join(f"{s.collection}/{s.prefix}" for s in waiting[:5])
            raise UsageError(
                f"this site's own changes in {names} are not yet held by a peer: sync"
                " before shrinking the scope past them (they would be lost)"
            )
        with self._transaction():
            for partition in gone:
                self.store.drop_partition(partition, self.rule.length(partition.collection))
            self._forget_streams(gone)
            self.store.set_meta(SCOPE_META, new.to_bytes())
            if gone:
                # Peers believe what we told them we hold: say it all again, so that a
                # quiet round still carries our receipt, taken at its word (as after a
                # restore, ``Replica.forget_told``).
                self.store.set_meta(RESTORED_META, os.urandom(16).hex().encode())
        self._set_holds(new)
        if gone:
            log.info("scope shrank: %d partitions removed from this store", len(gone))

    def _forget_streams(self, gone: list[Partition]) -> None:
        """The state without the streams of the partitions ``gone`` (inside the
        transaction that dropped them). Own streams there are as after a restore that
        lost them: their seqs are the peers' word (the counted claim, at least their seq:
        ``unconfirmed``), so writing there again, once the scope grows back, waits until
        their history came back from a peer (``SequenceReuseError``), never forks."""
        if not gone:
            return
        st = self._st
        out = set(gone)
        drop = [(s, *_ALL_SEQS) for s in st.segments if s.partition in out]
        own = dict(st.own)
        for stream, mine in st.own.items():
            if stream.partition in out:
                own[stream] = mine._replace(seq=0, sealed=0)
                self.store.set_meta(own_meta("seq", stream.partition), b"0")
                self.store.set_meta(own_meta("sealed", stream.partition), b"0")
                self._recent.pop(stream, None)
        forks = tuple(f for f in st.forks if f.stream.partition not in out)
        if forks != st.forks:
            self.store.set_meta("forks", packb([f.encode() for f in forks]))
        self._put(st._replace(segments=st.segments.updated(drop=drop), own=own, forks=forks))

    def _set_holds(self, scope: Scope) -> None:
        self._holds = scope
        self._holds_all = scope.is_everything
        self.__dict__.pop("_whole_collection", None)  # writes look their stream up again

    # -- used by writes and applies -------------------------------------------------------

    def _in_scope(self, segments: Iterable[_Seg], report: ApplyReport) -> Iterator[_Seg]:
        """The segments of a bundle this replica holds; the others are not kept (nor
        verified: they are not for this replica), only counted (``out_of_scope``)."""
        if self._holds_all:
            yield from segments
            return
        holds = self._holds.holds
        for seg in segments:
            collection, prefix = seg.stream.partition
            if holds(collection, prefix):
                yield seg
            else:
                report.out_of_scope += seg.count

    def _held(self, bundle: Bundle) -> Knowledge:
        """The ranges of ``bundle`` this replica holds (an answer's receipt covers them)."""
        ranges = bundle.header.ranges
        return ranges if self._holds_all else ranges.restrict(self._holds)
