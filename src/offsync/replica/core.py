"""What every part of the replica shares: its configuration, lock, state and store.

``_Core`` holds the one state value (``ReplicaState``) and the transactions that
change it: inside ``_transaction()`` changes go to a working copy, published when the
store commits and dropped when anything fails. It also runs merge plans (writes,
applies and re-examination all merge) and reads what the state is made from.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import msgpack

from ..change import Change
from ..clock import next_hlc
from ..encoding import decode_fields
from ..errors import UsageError
from ..identity import Identity
from ..knowledge import Knowledge
from ..limits import Limits
from ..plan import erasure, merge
from ..plan.admit import Admission
from ..plan.pack import held_knowledge, receipt_knowledge
from ..plan.receipts import HeardReceipts, heard_union, kept_knowledge, restricted
from ..plan.schema import as_stored
from ..policies import Policy
from ..receipt import Receipt
from ..schemas import Schemas
from ..scope import PartitionRule, Scope, new_partition, new_stream
from ..segindex import HeldSegment, SegmentIndex, Stream, knowledge_of, own_meta
from ..segment import AnySegment, decode_segment
from ..stores.base import RecordRow, Store, pack_ids
from ..trust import TRUST_COLLECTION, TrustStore, Validator
from .state import OwnSeqs, ReplicaState

__all__: list[str] = []

#: Own unsealed changes a replica keeps in memory for sealing (``_Core._recent``); past
#: this (a batch of more writes, sealing held back by a restore) it reads them back from
#: the outbox. About a kilobyte each for a registry record.
MAX_RECENT = 20_000


class _Core:
    """State and transactions; the job mixins (reads, writes, apply, pack) build on it."""

    store: Store
    identity: Identity
    policies: dict[str, Policy]
    default_policy: Policy
    limits: Limits
    level: int
    authorities: frozenset[bytes] | None
    validators: dict[str, Validator]
    #: The application's schema versions (``offsync.schemas``); empty: unversioned.
    schemas: Schemas
    #: Who local writes are entered by when a write names no author (None: nobody).
    author: str | None = None
    _lock: threading.RLock
    _wall: Callable[[], int]
    _state: ReplicaState
    _work: ReplicaState | None = None  # the working copy inside a transaction
    _owed_counters = False  # local writes in this transaction: seq and hlc to store
    #: Own changes written in this transaction (with their decoded fields), and how many
    #: of them are in the store's outbox yet: the rest go there in one statement, before
    #: anything reads the outbox and at the latest when the transaction ends.
    _fresh: list[tuple[Change, dict[str, Any] | None]]
    _fresh_stored = 0
    _fresh_sizes: list[int]  # the lengths of the outbox rows stored so far
    #: Committed own changes not sealed yet, per own stream by seq, with their decoded
    #: fields and the length of their outbox row: sealing takes them from here instead
    #: of reading the outbox back and decoding it (it does that for any seq missing here).
    _recent: dict[Stream, dict[int, tuple[Change, dict[str, Any] | None, int]]]
    #: knowledge() cache: the index, the own streams' seqs and the knowledge they give
    _known: tuple[SegmentIndex, Mapping[Stream, OwnSeqs], Knowledge] | None = None
    #: The deployment's partition rule: every own change lies in its record's partition.
    rule: PartitionRule
    #: What this replica holds (its scope, ``_trust`` and the reference collections:
    #: ``replica.scoping``); ``_holds_all``: everything, the unscoped fast path.
    _holds: Scope = Scope.everything()
    _holds_all: bool = True
    #: The newest receipt of each signer, indexed by origin (``_heard_receipts``);
    #: None: to be read from the store (dropped when a transaction rolls back).
    _heard: HeardReceipts | None = None
    #: Receipts bounded by their receiver (issue 18). False restores the sender rule
    #: before it, for comparison (benchmarks/metadata_scale.py); both are format 2.
    bounded_receipts: bool = True

    @property
    def id(self) -> bytes:
        return self.identity.public_key

    def _stream_of(self, collection: str, key: str) -> Stream:
        """The own stream a write of record ``(collection, key)`` goes to; ``UsageError``
        outside this replica's scope."""
        length = self.rule.lengths.get(collection, 0)
        if not length:
            stream = self._whole_collection.get(collection)
            if stream is None:
                self._check_writable(collection, key)
                stream = new_stream(self.id, self.rule.partition_of(collection, key))
                self._whole_collection[collection] = stream
            return stream
        if not self._holds_all:
            self._check_writable(collection, key)
        return new_stream(self.id, self.rule.partition_of(collection, key))

    def _check_writable(self, collection: str, key: str) -> None:
        """``UsageError`` for a local write outside what this replica holds."""
        if not self._holds_all and not self._holds.holds(collection, key):
            raise UsageError(
                f"this record of {collection!r} is outside this replica's scope: a scoped"
                " replica writes only what it holds"
            )

    @functools.cached_property
    def _whole_collection(self) -> dict[str, Stream]:
        """Own streams of collections of one partition, by collection (a write's lookup)."""
        return {}

    @functools.cached_property
    def _versioned(self) -> bool:
        """Whether any collection has a schema version (else nothing is upcast)."""
        return any(True for _ in self.schemas)

    def policy(self, collection: str) -> Policy:
        return self.policies.get(collection, self.default_policy)

    # -- the state value -----------------------------------------------------------------

    @property
    def _st(self) -> ReplicaState:
        """The state as this thread sees it: the working copy inside a transaction."""
        return self._work if self._work is not None else self._state

    def _put(self, state: ReplicaState) -> None:
        """Make ``state`` current: in the working copy inside a transaction (published
        when it commits), else at once (a value refreshed from what the store says)."""
        if self._work is not None:
            self._work = state
        else:
            self._state = state

    def _transaction(self) -> AbstractContextManager[None]:
        """One store transaction (inner ones join it); the state changes made inside
        (``_put``) are published when it commits, and dropped with it when anything
        fails. Inside, ``_st`` is the working copy."""
        if self._work is not None:  # joins: the outermost one publishes
            return self.store.transaction()
        return _Transaction(self)

    def _store_counters(self) -> None:
        """Store what local writes in this transaction owe the store: their outbox rows
        and the working state's own seq and clock, once per transaction (a batch of
        10,000 puts writes them in one statement each), in that transaction."""
        self._flush_fresh()
        st, before = self._st, self._state.own
        for stream, mine in st.own.items():
            was = before.get(stream)
            if was is None or was.seq != mine.seq:
                self.store.set_meta(own_meta("seq", stream.partition), str(mine.seq).encode())
        self.store.set_meta("hlc", str(st.hlc).encode())

    def _flush_fresh(self) -> None:
        """Write the outbox rows of own changes written in this transaction that are not
        in the store yet (before anything reads the outbox)."""
        waiting = self._fresh[self._fresh_stored :]
        if waiting:
            rows = [(c.seq, c.to_row()) for c, _ in waiting]
            by: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
            for (c, _), row in zip(waiting, rows, strict=True):
                by.setdefault((c.collection, c.prefix), []).append(row)
            for (collection, prefix), part_rows in by.items():
                self.store.add_outbox(new_partition(collection, prefix), part_rows)
            self._fresh_sizes += (len(row) for _, row in rows)
            self._fresh_stored = len(self._fresh)

    def _remember_fresh(self) -> None:
        """After a commit: keep the transaction's own changes for sealing (bounded)."""
        recent = self._recent
        # (what the transaction sealed itself is not kept)
        if sum(map(len, recent.values())) + len(self._fresh) <= MAX_RECENT:
            st = self._state
            streams: dict[tuple[str, str], Stream] = {}
            for (c, value), size in zip(self._fresh, self._fresh_sizes, strict=True):
                stream = streams.get((c.collection, c.prefix))
                if stream is None:
                    stream = streams[c.collection, c.prefix] = c.stream
                if c.seq > st.seqs(stream).sealed:
                    recent.setdefault(stream, {})[c.seq] = (c, value, size)

    def _tick(self) -> int:
        """A new timestamp from the clock (``offsync.clock.next_hlc``), kept in the state."""
        st = self._st
        hlc = next_hlc(st.hlc, self._wall())
        self._put(st._replace(hlc=hlc))
        return hlc

    def _rules(self, trust: TrustStore | None) -> Admission:
        """Admission under ``trust`` (None: open mode) and the validators, now."""
        return Admission(trust, self.validators, self.limits, self._wall(), self.schemas)

    # -- what the state is made from ---------------------------------------------------

    def knowledge(self) -> Knowledge:
        with self._lock:
            self._follow_store()
            st = self._st
            known = self._known
            if known is None or known[0] is not st.segments or known[1] != st.own:
                held = held_knowledge(st.segments, st.own)
                known = self._known = (st.segments, st.own, held)
            return known[2]

    def _receipt_knowledge(self) -> Knowledge:
        """What this replica's own receipt states (``offsync.plan.pack.receipt_knowledge``:
        its own changes only as far as they are sealed)."""
        self._follow_store()
        st = self._st
        return receipt_knowledge(st.segments)

    def _bounded_receipt_knowledge(self, origins: frozenset[bytes]) -> Knowledge:
        """``_receipt_knowledge`` restricted to ``origins`` (a receipt bounded by its
        receiver, ``offsync.plan.receipts``), without building the whole of it: this
        replica's own changes as far as sealed, every other origin as held."""
        known = self.knowledge()  # cached; equal to the receipt's for other origins
        held = restricted(known, origins - {self.id})
        if self.id not in origins:
            return held
        st = self._st
        own = {
            s: [(h.first, h.last) for h in st.segments[s]] for s in st.segments.streams_of(self.id)
        }
        return held | knowledge_of(own) if own else held

    # -- receipts heard (docs/spec.md §6: a reader unions what one signer's receipts say) --

    def _heard_receipts(self) -> HeardReceipts:
        """The newest receipt of each signer, indexed by the origins it states; read
        from the store once (again on every use with a shared store, which other
        processes write to)."""
        heard = self._heard
        if heard is None or self.store.shared:
            heard = HeardReceipts()
            for peer, created, _, data in self.store.peers():
                heard.put_kept(peer, created, data)
            self._heard = heard
        return heard

    def _keep_receipt(self, receipt: Receipt, *, direct: bool = False) -> bool:
        """Keep a verified receipt of another replica (inside a transaction): the store
        keeps the newest signed receipt of its signer beside the UNION of what all its
        receipts said, since a receipt may be restricted to what its receiver needs
        and an older one is never false; ``direct`` (its signer's own receipt in the
        bundle it sent us) is taken at its word instead (``heard_union``). True if it
        told us something new."""
        held = self.store.peer(receipt.replica)
        stated = receipt.knowledge
        if held is None:
            union = stated
        else:
            if held[1] >= receipt.created:
                return False  # not newer: the store keeps the newest signed receipt
            before = kept_knowledge(held[2])
            union = heard_union(receipt.replica, before, stated, direct=direct)
        encoded = receipt.encode()
        self.store.set_peer(receipt.replica, receipt.created, union.to_bytes(), encoded)
        if self._heard is not None:
            self._heard.put(receipt.replica, receipt.created, stated, encoded)
        return True

    def _follow_store(self) -> None:
        """On a shared store, take in the segments other processes added or re-statused."""
        if not self.store.shared:
            return
        st = self._st
        rows, cursor = self.store.segments_changed(st.cursor)
        self._put(st._replace(segments=st.segments.updated(rows=rows), cursor=cursor))

    def _load_trust(self) -> TrustStore | None:
        if self.authorities is None:
            return None
        records = [
            (r.key, decode_fields(r.fields))
            for r in self.store.iter_records(TRUST_COLLECTION)
            if r.fields is not None
        ]
        return TrustStore.from_records(self.authorities, records)

    # -- running merge plans (offsync.plan.merge) ----------------------------------------

    def _merge(self, changes: Sequence[Change]) -> list[tuple[str, str]]:
        """Store changes and recompute the records they touch; returns new conflicts."""
        if not changes:
            return []
        if self._versioned:  # the store keeps every put in its collection's current version
            changes = as_stored(changes, self.schemas)
        if len(changes) == 1 and not changes[0].parents:  # a put of a new record: no split
            c = changes[0]
            simple = self.policy(c.collection).single_change_is_identity and erasure.alone_is_state(
                c, self.schemas
            )
            plan = merge.MergeSplit((c,), (), (), ((c.collection, c.key),)) if simple else None
        else:
            plan = None
        if plan is None:
            plan = merge.split(changes, self.policy, self.schemas)
        if plan.rest:
            self.store.add_changes(plan.rest)
        existed = self.store.add_first_changes(plan.firsts)
        if not existed and not plan.to_merge:  # the bulk path took every change
            return []
        keys = merge.to_recompute(plan, existed)
        # Shared stores: one recomputer per record at a time. (A record add_new_records
        # wrote is held by that write already.) Then all their changes in one read.
        self.store.lock_records(keys)
        return self._write_states(keys, self.store.changes_for_many(keys))

    def _recompute(self, keys: Iterable[tuple[str, str]]) -> None:
        """Recompute records after changes were taken back (revocation, narrowed scope)."""
        keys = sorted(keys)
        self._write_states(keys, {k: self.store.changes_for(*k) for k in keys})

    def _write_states(
        self, keys: Sequence[tuple[str, str]], held: dict[tuple[str, str], list[Change]]
    ) -> list[tuple[str, str]]:
        rows: list[RecordRow] = []
        conflicts: list[tuple[str, str]] = []
        for collection, key, state in merge.recompute(keys, held, self.policy):
            if state is None:
                rows.append(RecordRow(collection, key, None, pack_ids([]), False))
                continue
            rows.append(
                RecordRow(collection, key, state.fields, pack_ids(state.heads), state.conflict)
            )
            if state.conflict:
                conflicts.append((collection, key))
        self.store.put_records(rows)
        return conflicts

    def _kept(self, receipt: bytes) -> Receipt:
        """A receipt from the store: verified when it was kept, so not again per read."""
        return Receipt.decode(receipt, self.limits, verify=False)

    def _stored_forks(self) -> tuple[AnySegment, ...]:
        """The fork evidence the store keeps (``Replica.forks``; redacted by erasures)."""
        raw = self.store.get_meta("forks")
        return tuple(decode_segment(x, self.limits) for x in msgpack.unpackb(raw)) if raw else ()

    def _stored_seqs(self, stream: Stream) -> OwnSeqs:
        """Where the own stream ``stream`` stands as the store keeps it (seq, sealed)."""
        get, part = self.store.get_meta, stream.partition
        return OwnSeqs(
            int(get(own_meta("seq", part)) or b"0"), int(get(own_meta("sealed", part)) or b"0")
        )

    def _held_segment(self, stream: Stream, s: HeldSegment) -> list[Change]:
        """The changes of a held segment, read back from the store."""
        data = self.store.segment_data([(stream, s.first)])[0]
        seg = decode_segment(data, self.limits)  # whole, or redacted by an erasure
        return seg.open_changes(self.limits)


class _Transaction:
    """``_Core._transaction()``: a class, not a generator, as it runs once per write."""

    __slots__ = ("_core", "_store")

    def __init__(self, core: _Core) -> None:
        self._core = core

    def __enter__(self) -> None:
        core = self._core
        core._work = core._state
        core._owed_counters = False
        core._fresh, core._fresh_sizes, core._fresh_stored = [], [], 0
        self._store = core.store.transaction()
        try:
            self._store.__enter__()
        except BaseException:
            core._work = None
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        core = self._core
        try:
            if kind is None and (core._owed_counters or core._fresh):
                try:
                    core._store_counters()
                except BaseException as failed:
                    # Rolls back (and raises the store's error for it, if it maps it).
                    self._store.__exit__(type(failed), failed, failed.__traceback__)
                    raise
            if kind is not None:
                core._heard = None  # receipts kept in it may be rolled back
            self._store.__exit__(kind, exc, tb)  # commits, or rolls back and re-raises
            if kind is None:
                assert core._work is not None
                core._state = core._work
                if core._fresh:
                    core._remember_fresh()
        finally:
            core._work = None
            core._owed_counters = False
            core._fresh, core._fresh_sizes, core._fresh_stored = [], [], 0
