"""A replica: one site's identity, store, merge policies and clock.

This is the layer that ties the sans-IO core to a store. Every public method takes a
lock, so one ``Replica`` may be shared by the threads of a server; every write to the
store happens in one transaction, so a refused or failed bundle leaves it untouched.
"""

from __future__ import annotations

import bisect
import gc
import hashlib
import logging
import operator
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

from .bundle import Bundle, build_bundle, open_bundle
from .change import DELETE, PUT, Change, ChangeId
from .clock import HybridClock, hlc_millis, wall_millis
from .encoding import canonical_fields, decode_fields, packb
from .errors import (
    BundleFormatError,
    ForkError,
    ImmutableRecordError,
    NotAuthorisedError,
    SequenceReuseError,
    StorageConflictError,
    StorageError,
    UsageError,
)
from .identity import Identity, PublicIdentity
from .knowledge import Interval, Knowledge
from .limits import DEFAULT_LIMITS, Limits
from .policies import LastWriterWins, Policy, fold
from .quarantine import evictions
from .receipt import Receipt
from .segindex import HeldSegment, SegmentIndex
from .segment import NO_PREVIOUS, Segment
from .stores.base import IndexRow, RecordRow, SegmentRow, Store, pack_ids, unpack_ids
from .trust import TRUST_COLLECTION, TrustStore, Validator, refusal

__all__ = [
    "APPLIED",
    "ApplyReport",
    "Conflict",
    "Quarantined",
    "QuarantinedChange",
    "Replica",
    "SeqClaim",
]

APPLIED = "applied"
#: The replica logs what it cannot raise: work after a committed write that failed.
#: Messages name no record key or field value (personal data).
log = logging.getLogger("offsync")
_COLLECTION = operator.itemgetter(3)  # of a Change
_RECORD = operator.itemgetter(3, 4)  # (collection, key) of a Change
_PARENTS = operator.itemgetter(7)
_HLC = operator.itemgetter(2)
#: Own changes are sealed into segments of at most this many changes / encoded bytes.
SEGMENT_MAX_CHANGES = 2000
SEGMENT_MAX_BYTES = 256 * 1024
#: Segments kept as evidence of forks (see ``Replica.forks``); the oldest are dropped.
MAX_FORK_EVIDENCE = 100
FORK_AT_SAME_SEQS = "fork: a different segment with the same seqs is held"
#: Changes an apply decodes before writing them (inside the bundle's one transaction):
#: bounds apply memory by this rather than by the bundle's size.
APPLY_CHUNK = 50_000
#: zstd level at which own changes are compressed when sealed (once: relays and later
#: packs forward the compressed segments as they are). See benchmarks/README.md.
DEFAULT_LEVEL = 15
#: Outbox rows read at a time while sealing.
SEAL_PAGE = 20_000
#: Default upper bound for one packed bundle.
DEFAULT_MAX_BUNDLE = 16 * 1024 * 1024
#: Room planned for a bundle's framing, header and receipts beside its segments; a
#: bundle that still comes out too large is split in two.
BUNDLE_OVERHEAD = 4096
#: Tries at applying one bundle to a shared store when another writer got in the way.
SHARED_APPLY_ATTEMPTS = 8


@dataclass(slots=True)
class ApplyReport:
    """What applying one bundle did."""

    bundle_id: bytes
    sender: bytes
    applied: int = 0  # changes newly applied
    duplicates: int = 0  # changes already held
    quarantined: int = 0  # changes held but not applied (see Replica.quarantined)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    receipts: int = 0  # receipts that told us something new
    unlocked: int = 0  # held changes applied because this bundle changed trust (or time passed)


@dataclass(frozen=True, slots=True)
class Conflict:
    """An open conflict: concurrent versions of one record that differ."""

    collection: str
    key: str
    current: dict[str, Any] | None  # the provisional winner, what get() shows
    versions: Mapping[ChangeId, dict[str, Any] | None]  # head -> version (None: deleted)


class Quarantined(NamedTuple):
    origin: bytes
    first_seq: int
    last_seq: int
    reason: str


class QuarantinedChange(NamedTuple):
    """One held change that is not applied, and why (see ``offsync.trust.refusal``)."""

    id: ChangeId
    collection: str
    key: str
    reason: str


class SeqClaim(NamedTuple):
    """What one peer's newest receipt says it holds of this site's own changes.

    ``counted``: whether the claim stops this site from writing above its seq (see
    ``Replica.seq_claims``); in trust mode only certified, unrevoked sites' and
    authorities' claims count.
    """

    peer: bytes
    seq: int  # the highest own seq the peer claims to hold
    counted: bool


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a bundle is applied.

    Decoding and merging a chunk allocates several objects per change (tuples, maps,
    lists) and none of them form cycles, yet each burst of allocations makes the
    collector walk everything still alive, the chunk included: about a tenth of a
    backlog's apply time. Reference counting still frees everything as usual.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _stage_range(staged: list[tuple[int, int]], first: int, last: int) -> None:
    """Add one segment's seq range to a bundle's sorted ranges of its origin; an honest
    sender never packs overlapping segments of one origin, so overlap is a fork."""
    i = bisect.bisect_left(staged, (first, last))
    if (i > 0 and staged[i - 1][1] >= first) or (i < len(staged) and staged[i][0] <= last):
        raise ForkError("bundle carries overlapping segments of one origin")
    staged.insert(i, (first, last))


class Replica:
    """One site's replica. Open with ``Replica.open(path, identity=..., policies=...)``."""

    _trust: TrustStore | None  # None: open mode (see offsync.trust)
    _clock_due: int | None

    def __init__(
        self,
        store: Store,
        identity: Identity,
        policies: Mapping[str, Policy] | None = None,
        *,
        default_policy: Policy | None = None,
        limits: Limits = DEFAULT_LIMITS,
        wall: Callable[[], int] = wall_millis,
        trust: Iterable[bytes | PublicIdentity] | None = None,
        validators: Mapping[str, Validator] | None = None,
        level: int = DEFAULT_LEVEL,
    ) -> None:
        """``trust``: the authority keys (the root of trust), or None for open mode, in
        which every validly signed origin may write anything. ``validators``: per
        collection, a check every change must pass (``offsync.trust.Validator``).
        ``level``: the zstd level own changes are compressed at when sealed (1-22;
        higher costs write time for fewer bytes; receivers need nothing different)."""
        if not 1 <= level <= 22:
            raise UsageError("level must be a zstd level from 1 to 22")
        self.level = level
        self.store = store
        self.identity = identity
        self.policies = dict(policies or {})
        # Every replica must compute the same trust store from the same records.
        trust_policy = self.policies.setdefault(TRUST_COLLECTION, LastWriterWins())
        if type(trust_policy) is not LastWriterWins:
            raise UsageError(f"the {TRUST_COLLECTION} collection is always last-writer-wins")
        self.default_policy = default_policy or LastWriterWins()
        self.limits = limits
        self._lock = threading.RLock()
        owner = store.get_meta("identity")
        if owner is None and store.read_only:
            raise UsageError("this store holds no replica yet: open it for writing first")
        if owner is None:
            with store.transaction():
                store.set_meta("identity", identity.public_key)
        elif owner != identity.public_key:
            raise UsageError("this store belongs to another identity")
        self._seq = int(store.get_meta("seq") or b"0")  # highest own seq issued or held
        self._sealed = int(store.get_meta("sealed") or b"0")  # highest own seq in a segment
        self._batch_depth = 0
        self._reexamine_pending = False  # a re-examination after a commit failed
        self._reexamined_under: TrustStore | None = None  # ... and the trust it started from
        self.clock = HybridClock(int(store.get_meta("hlc") or b"0"), wall)
        self._index = SegmentIndex()
        # On a shared store other processes add segments too: _follow_store() catches up
        # from this cursor (see Store.segments_changed).
        rows, self._cursor = store.segments_changed(0) if store.shared else (None, 0)
        for origin, first, last, h, prev, status, size in rows or store.segment_index():
            self._index.setdefault(bytes(origin), []).append(
                HeldSegment(first, last, bytes(h), bytes(prev), status, size)
            )
        self._knowledge: Knowledge | None = None
        self._peer_claim = 0
        self._init_trust(trust, validators)
        # The highest seq of this origin that a peer whose word counts says it holds.
        self._peer_claim = self._counted_claim()
        self._init_unknown()

    @classmethod
    def open(
        cls,
        path: str,
        *,
        identity: Identity,
        policies: Mapping[str, Policy] | None = None,
        read_only: bool = False,
        **options: Any,
    ) -> Replica:
        """Open (or create) a replica in an SQLite file; ``":memory:"`` for tests.

        One process owns a replica file: while it is open, another ``open`` of the file
        (in any process) raises ``StoreLockedError``. ``read_only=True`` opens an
        existing replica for reading alone, also while another process owns it; its
        knowledge and quarantine are as they were when it was opened, and anything
        that would write raises ``UsageError``.
        """
        from .stores.sqlite import SQLiteStore

        store = SQLiteStore(path, read_only=read_only)
        try:
            return cls(store, identity, policies, **options)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        with self._lock:
            self.store.close()

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Replica {self.identity.label!r} {self.identity.short_id} seq={self._seq}>"

    @property
    def id(self) -> bytes:
        return self.identity.public_key

    @property
    def public_key(self) -> bytes:
        """The same as ``id``: lets a replica stand wherever a site is named."""
        return self.identity.public_key

    @property
    def seq(self) -> int:
        """The last seq this site has issued."""
        return self._seq

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock every public method takes.

        Meant for servers and helpers: hold it to make several calls (or reads of
        ``store``) see one state, or ``lock.acquire(timeout=...)`` to give up on a
        replica that stays busy (``offsync.server`` answers 503 then).
        """
        return self._lock

    def policy(self, collection: str) -> Policy:
        return self.policies.get(collection, self.default_policy)

    # -- reading -----------------------------------------------------------------------

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.store.get_record(collection, key)
        if row is None or row.fields is None:
            return None
        return decode_fields(row.fields)

    def items(self, collection: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Visible records of a collection in key order."""
        with self._lock:
            rows = [r for r in self.store.iter_records(collection) if r.fields is not None]
        for r in rows:
            assert r.fields is not None
            yield r.key, decode_fields(r.fields)

    def state_digest(self) -> bytes:
        """BLAKE2b-256 of the visible state; equal exactly when the states are equal."""
        h = hashlib.blake2b(b"offsync/state/v1\x00", digest_size=32)
        with self._lock:
            for row in self.store.iter_records():
                if row.fields is not None:
                    h.update(packb([row.collection, row.key, row.fields]))
        return h.digest()

    def conflicts(self) -> list[Conflict]:
        with self._lock:
            out = []
            for collection, key in self.store.conflicted():
                changes = self.store.changes_for(collection, key)
                versions = self.policy(collection).versions(changes)
                row = self.store.get_record(collection, key)
                current = decode_fields(row.fields) if row and row.fields is not None else None
                out.append(
                    Conflict(
                        collection,
                        key,
                        current,
                        {
                            h: (decode_fields(v) if v is not None else None)
                            for h, v in versions.items()
                        },
                    )
                )
            return out

    def knowledge(self) -> Knowledge:
        with self._lock:
            self._follow_store()
            if self._knowledge is None:
                held = self._index.intervals()
                if self._seq > self._sealed:  # own changes not yet sealed
                    held.setdefault(self.id, []).append((self._sealed + 1, self._seq))
                self._knowledge = Knowledge(held)
            return self._knowledge

    def quarantined(self) -> list[Quarantined]:
        with self._lock:
            self._follow_store()
            return [
                Quarantined(o, s.first, s.last, s.status)
                for o, segs in sorted(self._index.items())
                for s in segs
                if s.status != APPLIED
            ] + [
                Quarantined(f.origin, f.first_seq, f.last_seq, FORK_AT_SAME_SEQS)
                for f in self._forks
            ]

    def receipts(self) -> dict[bytes, Receipt]:
        """The newest receipt heard from each peer (directly or passed on by relays)."""
        with self._lock:
            return {p: self._kept(r) for p, _, _, r in self.store.peers()}

    def _kept(self, receipt: bytes) -> Receipt:
        """A receipt from the store: verified when it was kept, so not again per read."""
        return Receipt.decode(receipt, self.limits, verify=False)

    def receipt(self) -> Receipt:
        """A fresh signed statement of what this replica holds."""
        with self._lock:
            return Receipt.issue(self.identity, self.clock.now(), self.knowledge())

    def record_receipt(self, receipt: Receipt) -> bool:
        """Take in a peer's receipt heard outside a bundle; True if it told us something new.

        A live peer answers an upload (or ``GET /knowledge``) with its fresh receipt;
        ``offsync.sync`` hands those to this method (``Transport.receipts``) so delivery
        status moves as soon as the peer has the changes, not at the next pull. The
        receipt is verified (``SignatureError`` if it does not), kept if it is newer
        than the one held from its signer, and its claim on this site's seqs counted
        as for a receipt carried in a bundle (``seq_claims``).
        """
        receipt.verify()
        if receipt.replica == self.id:
            return False
        with self._lock:
            held = [c for p, c, _, _ in self.store.peers() if p == receipt.replica]
            if held and held[0] >= receipt.created:
                return False
            with self.store.transaction():
                self.store.set_peer(
                    receipt.replica,
                    receipt.created,
                    receipt.knowledge.to_bytes(),
                    receipt.encode(),
                )
            if self._claim_counts(receipt.replica):
                self._peer_claim = max(self._peer_claim, receipt.knowledge.max_seq(self.id))
            return True

    def seq_claims(self) -> list[SeqClaim]:
        """Peers whose newest receipt claims some of this site's own seqs, highest first.

        While a counted claim is above ``seq``, writes raise ``SequenceReuseError``; while
        one is above the sealed seqs, new changes wait unsealed. Either clears once the
        claimed changes come back from a peer. A claim that is false (a hostile or broken
        peer) clears in trust mode when the authority revokes the claimant's key; in open
        mode the remedy is moving this site to a new key (docs/threat-model.md).
        """
        with self._lock:
            claims = [
                SeqClaim(p, seq, self._claim_counts(p))
                for p, _, k, _ in self.store.peers()
                if p != self.id and (seq := Knowledge.from_bytes(k, self.limits).max_seq(self.id))
            ]
        return sorted(claims, key=lambda c: (-c.seq, c.peer))

    def _claim_counts(self, signer: bytes) -> bool:
        """Whether ``signer``'s receipts may stop this site from writing.

        In open mode every validly signed key's claims count: any key can block a site
        (a denial of service, see docs/threat-model.md). In trust mode only an
        authority's and a certified, unrevoked site's do.
        """
        trust = self._trust
        if trust is None or signer in trust.authorities:
            return True
        rule = trust.rule(signer)
        return rule is not None and rule.cert is not None and rule.revocation is None

    def _counted_claim(self) -> int:
        """The highest own seq that a peer whose claims count says it holds."""
        return max(
            (
                Knowledge.from_bytes(k, self.limits).max_seq(self.id)
                for p, _, k, _ in self.store.peers()
                if self._claim_counts(p)
            ),
            default=0,
        )

    # -- local writes ------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (much faster for bulk entry)."""
        with self._lock:
            seq, hlc = self._seq, self.clock.last
            self._batch_depth += 1
            try:
                with self.store.transaction():
                    yield
            except BaseException:
                self._seq, self.clock.last = seq, hlc
                self._knowledge = None
                raise
            finally:
                self._batch_depth -= 1
            if not self._batch_depth:
                self._after_commit()

    def put(self, collection: str, key: str, fields: Mapping[str, Any]) -> ChangeId:
        """Set ``fields`` of a record (other fields are kept)."""
        return self._write(collection, key, fields, resolving=False)

    def delete(self, collection: str, key: str) -> ChangeId | None:
        """Delete a record (a tombstone); returns None if there was nothing to delete."""
        with self._lock:
            row = self.store.get_record(collection, key)
            if row is None or row.fields is None:
                return None
            return self._write(collection, key, None, resolving=False)

    def resolve(
        self,
        collection: str,
        key: str,
        fields: Mapping[str, Any] | None = None,
        *,
        choose: ChangeId | None = None,
        delete: bool = False,
    ) -> ChangeId:
        """Settle a record: write ``fields``, or the version of head ``choose``, or delete.

        The change written lists every current head as a parent, so it supersedes all
        of them on every replica. Also the way to correct a first-writer-wins record.
        """
        if sum((fields is not None, choose is not None, delete)) != 1:
            raise UsageError("resolve takes exactly one of fields, choose or delete")
        with self._lock:
            if choose is not None:
                changes = self.store.changes_for(collection, key)
                versions = self.policy(collection).versions(changes)
                if choose not in versions:
                    raise UsageError(f"{choose!r} is not a head of that {collection} record")
                chosen = versions[choose]
                if chosen is None:
                    return self._write(collection, key, None, resolving=True)
                values = decode_fields(chosen)
                # A put keeps fields it does not name, so when some version holds a field
                # the chosen one lacks, clear the record first: the resolution is then a
                # tombstone over every head followed by a put of exactly the chosen version.
                merged = fold(changes)
                with self.batch():
                    if merged is not None and not decode_fields(merged).keys() <= values.keys():
                        self._write(collection, key, None, resolving=True)
                    return self._write(collection, key, values, resolving=True)
            return self._write(collection, key, None if delete else fields, resolving=True)

    def _check_name(self, value: str, what: str, max_bytes: int) -> None:
        if not isinstance(value, str) or not value:
            raise UsageError(f"{what} must be a non-empty string")
        if len(value.encode()) > max_bytes:
            raise UsageError(f"{what} longer than {max_bytes} bytes")

    def _write(
        self, collection: str, key: str, fields: Mapping[str, Any] | None, *, resolving: bool
    ) -> ChangeId:
        self._check_name(collection, "collection", self.limits.max_collection_bytes)
        self._check_name(key, "key", self.limits.max_key_bytes)
        encoded = None
        if fields is not None:
            try:
                encoded = canonical_fields(fields)
            except TypeError as exc:
                raise UsageError(str(exc)) from exc
            if len(encoded) > self.limits.max_fields_bytes:
                raise UsageError(f"fields encode to more than {self.limits.max_fields_bytes} bytes")
        with self._lock:
            self._check_can_write()
            row = self.store.get_record(collection, key)
            if (
                not resolving
                and self.policy(collection).immutable
                and row is not None
                and row.fields is not None
            ):
                raise ImmutableRecordError(
                    f"this {collection} record is first-writer-wins and already recorded;"
                    " use resolve()"  # no key in messages: keys (NIKs) are personal data
                )
            parents = unpack_ids(row.heads) if row is not None else ()
            seq, hlc_before = self._seq + 1, self.clock.last
            change = Change(
                self.id,
                seq,
                self.clock.now(),
                collection,
                key,
                PUT if encoded is not None else DELETE,
                encoded,
                parents,
            )
            reason = refusal(change, self._trust, self.validators)
            if reason is not None:
                self.clock.last = hlc_before
                raise NotAuthorisedError(f"this site may not write this record: {reason}")
            try:
                with self.store.transaction():
                    self.store.add_outbox([(seq, change.to_row())])
                    self._merge([change])
                    self.store.set_meta("seq", str(seq).encode())
                    self.store.set_meta("hlc", str(self.clock.last).encode())
            except BaseException:
                self.clock.last = hlc_before
                raise
            self._seq = seq
            self._knowledge = None
            if collection == TRUST_COLLECTION and self._batch_depth:
                self._reexamine()  # inside the batch's transaction: fails with it
            if not self._batch_depth:
                self._after_commit(reexamine=collection == TRUST_COLLECTION)
            return change.id

    def _after_commit(self, *, reexamine: bool = False) -> None:
        """What follows a committed write or batch: re-examining held changes after a
        trust write, and sealing full segments (``_seal_full_segments``).

        The write stands whatever happens here, so a failure (a full disk) is logged,
        not raised: raising would tell the caller the write failed and a retry would
        write it twice. The work is tried again after the next write (and sealing at
        the next pack, which raises if it cannot seal).
        """
        try:
            if reexamine or self._reexamine_pending:
                self._reexamine()
            self._seal_full_segments()
        except Exception as exc:
            log.warning(
                "a write was committed, but the work after it failed and will be tried "
                "again after the next write: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, StorageError),
            )

    def _seal_full_segments(self) -> None:
        """Seal as soon as a whole segment's worth of changes waits, so that packing a
        long backlog later only frames already-signed segments, and sealing costs one
        signature per segment at write time. Done after the writes commit, so a batch
        that fails leaves nothing half-sealed."""
        if self._seq - self._sealed >= SEGMENT_MAX_CHANGES:
            self._seal(complete_only=True)

    def _check_can_write(self) -> None:
        """Refuse to issue seqs that peers say this origin already used."""
        if self._peer_claim > self._seq:
            claimants = ", ".join(
                c.peer.hex()[:12] for c in self.seq_claims() if c.counted and c.seq > self._seq
            )
            raise SequenceReuseError(
                f"peers hold changes of this site up to seq {self._peer_claim} but this replica "
                f"is at seq {self._seq} (restored from a backup?): sync with a peer to get them "
                f"back before writing, or move this site to a new key (claimed by {claimants}; "
                "see Replica.seq_claims)"
            )

    # -- merging -----------------------------------------------------------------------

    def _merge(self, changes: Sequence[Change]) -> list[tuple[str, str]]:
        """Store changes and recompute the records they touch; returns new conflicts.

        The hot path of applying a backlog: a record that receives one parentless change
        under a policy for which that change alone is the state is written as is, in
        one bulk insert, with no policy call and no read (``Store.add_first_changes``).
        When a whole chunk is such changes (a backlog of new records) that is decided
        with a few C-level passes over the chunk, not a Python loop per change.
        """
        if not changes:
            return []
        simple = {
            name: self.policy(name).single_change_is_identity
            for name in set(map(_COLLECTION, changes))
        }
        keys = list(map(_RECORD, changes))
        if all(simple.values()) and len(set(keys)) == len(keys) and not any(map(_PARENTS, changes)):
            firsts: Sequence[Change] = changes
            to_merge: list[tuple[str, str]] = []
            order: Iterable[tuple[str, str]] = keys
        else:
            groups: dict[tuple[str, str], list[Change]] = {}
            for k, c in zip(keys, changes, strict=True):
                group = groups.get(k)
                if group is None:
                    groups[k] = [c]
                else:
                    group.append(c)
            firsts, rest, to_merge = [], [], []
            for k, group in groups.items():
                first = group[0]
                if len(group) == 1 and not first.parents and simple[first.collection]:
                    firsts.append(first)
                else:
                    rest.extend(group)
                    to_merge.append(k)
            if rest:
                self.store.add_changes(rest)
            order = groups
        existed = set(self.store.add_first_changes(firsts))  # existed after all
        if existed:  # merge them too, keeping the records' order (conflicts are reported in it)
            existed.update(to_merge)
            to_merge = [k for k in dict.fromkeys(order) if k in existed]
        # Shared stores: one recomputer per record at a time. (A record add_new_records
        # wrote is held by that write already.) Then all their changes in one read.
        self.store.lock_records(to_merge)
        held = self.store.changes_for_many(to_merge) if to_merge else {}
        rows: list[RecordRow] = []
        conflicts: list[tuple[str, str]] = []
        for collection, key in to_merge:
            state = self.policy(collection).merge(held[collection, key])
            rows.append(
                RecordRow(collection, key, state.fields, pack_ids(state.heads), state.conflict)
            )
            if state.conflict:
                conflicts.append((collection, key))
        self.store.put_records(rows)
        return conflicts

    # -- applying bundles --------------------------------------------------------------

    def apply(self, data: bytes) -> ApplyReport:
        """Verify and apply one bundle; all of it or, on any error, none of it."""
        bundle = open_bundle(data, self.identity, self.limits)
        with self._lock, _gc_paused():
            if self.store.shared:
                return self._apply_shared(bundle)
            return self._apply_bundle(bundle)

    # -- several processes on one store (server workers on PostgreSQL) ---------------------

    def _apply_shared(self, bundle: Bundle) -> ApplyReport:
        """Apply a bundle to a store that other processes write at the same time.

        The in-memory segment index may be stale here (other workers add segments), so in
        one transaction: lock the bundle's origins (bundles of other origins go on in
        parallel), re-read from the store the segments around the bundle's seq ranges,
        and only then decide duplicates and forks and write; ``_merge`` locks each record
        it recomputes. A transaction that lost a race (deadlock) is rolled back and tried
        again.
        """
        origins = sorted({seg.origin for seg in bundle.segments})
        spans = [(seg.origin, seg.first_seq, seg.last_seq) for seg in bundle.segments]
        for attempt in range(SHARED_APPLY_ATTEMPTS):
            try:
                with self.store.transaction():
                    self.store.lock_origins(origins)
                    self._reload_near(spans)
                    return self._apply_bundle(bundle)
            except StorageConflictError:
                self._reload_near(spans)  # forget what the rolled-back try indexed
                if attempt + 1 == SHARED_APPLY_ATTEMPTS:
                    raise
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
            except BaseException:
                self._reload_near(spans)
                raise
        raise AssertionError("unreachable")

    def _reload_near(self, spans: Sequence[tuple[bytes, int, int]]) -> None:
        """Make the index hold what the store holds around these seq ranges: what deciding
        on a segment there reads (``SegmentIndex.find`` and ``chain_problem``). Segments are
        never deleted, so entries elsewhere are real, if perhaps not all there are."""
        for origin, first, last in spans:  # entries a rolled-back try may have added
            self._index.drop_range(origin, first, last)
        self._index_upsert(self.store.segment_index_near(spans))
        self._knowledge = None

    def _index_upsert(self, rows: Sequence[IndexRow]) -> None:
        """Put these store index rows into the in-memory index (new, or newer status)."""
        if self._index.upsert(rows):
            self._knowledge = None

    def _follow_store(self) -> None:
        """On a shared store, take in the segments other processes added or re-statused."""
        if not self.store.shared:
            return
        rows, self._cursor = self.store.segments_changed(self._cursor)
        self._index_upsert(rows)

    def _chain_problem(self, seg: Segment) -> str | None:
        """Why this segment cannot be part of its origin's chain as we hold it, if so."""
        reuses_own = (
            seg.origin == self.id and seg.first_seq <= self._seq and not self._recovers_own(seg)
        )
        return self._index.chain_problem(seg, reuses_own=reuses_own)

    def _admit(self, seg: Segment, changes: Sequence[Change]) -> str:
        """APPLIED, or the reason the segment's changes are held back (quarantine)."""
        horizon = self.clock.wall() + self.limits.max_clock_skew_ms
        ahead = hlc_millis(max(map(_HLC, changes)))
        if ahead > horizon:
            due = ahead - self.limits.max_clock_skew_ms
            self._clock_due = due if self._clock_due is None else min(self._clock_due, due)
            return "clock: timestamp too far in the future"
        if self._trust is None and not self.validators:
            return APPLIED  # open mode: nothing more to check
        for c in changes:
            reason = refusal(c, self._trust, self.validators)
            if reason is not None:
                return reason
        return APPLIED

    # -- trust and quarantine (offsync.trust; docs/threat-model.md) ----------------------

    def _init_trust(
        self,
        trust: Iterable[bytes | PublicIdentity] | None,
        validators: Mapping[str, Validator] | None,
    ) -> None:
        self.authorities: frozenset[bytes] | None = (
            None
            if trust is None
            else frozenset(k.public_key if isinstance(k, PublicIdentity) else k for k in trust)
        )
        self.validators: dict[str, Validator] = dict(validators or {})
        #: Wall ms at which the earliest segment held for its clock may be admitted.
        self._clock_due = None
        forks = self.store.get_meta("forks")
        self._forks: list[Segment] = (
            [Segment.decode(raw, self.limits) for raw in msgpack.unpackb(forks)] if forks else []
        )
        self._trust = self._load_trust()
        examined = self.store.get_meta("trust_examined")
        if examined is None and self._trust is None and not self.validators:
            examined = self._trust_fingerprint()  # a store that never had trust: nothing to do
        if examined != self._trust_fingerprint() and not self.store.read_only:
            self._reexamine(full=True)  # opened with other authorities or validators
        elif any(s.status.startswith("clock") for segs in self._index.values() for s in segs):
            self._clock_due = 0  # find out at the next apply or reexamine()

    def _load_trust(self) -> TrustStore | None:
        if self.authorities is None:
            return None
        records = [
            (r.key, decode_fields(r.fields))
            for r in self.store.iter_records(TRUST_COLLECTION)
            if r.fields is not None
        ]
        return TrustStore.from_records(self.authorities, records)

    def _trust_fingerprint(self) -> bytes:
        base = self._trust.digest() if self._trust is not None else b"open"
        return hashlib.blake2b(packb([base, sorted(self.validators)]), digest_size=32).digest()

    @property
    def trust_store(self) -> TrustStore | None:
        """The certificates and revocations in force; None in open mode."""
        return self._trust

    def _record_forks(self, segs: Sequence[Segment]) -> None:
        """Keep (a bounded number of) validly signed segments that fork a held one."""
        if self.store.shared:  # other processes may have kept some since this one looked
            held = self.store.get_meta("forks")
            self._forks = (
                [Segment.decode(raw, self.limits) for raw in msgpack.unpackb(held)] if held else []
            )
        known = {s.hash for s in self._forks}
        new = [s for s in segs if s.hash not in known]
        if new:
            self._forks = (self._forks + new)[-MAX_FORK_EVIDENCE:]
            self.store.set_meta("forks", packb([s.encode() for s in self._forks]))

    def forks(self) -> list[Segment]:
        """Signed segments that conflict with a held segment at the same seqs.

        Two segments validly signed by one origin for the same seqs prove that the
        origin forked (a restore from an old backup, or a stolen key). The held one
        stays; these are not applied and not forwarded. Also listed by
        ``quarantined()`` with a reason starting with ``fork``.
        """
        with self._lock:
            return list(self._forks)

    def _admitted_part(self, status: str, changes: Sequence[Change]) -> list[Change]:
        """The changes of a segment with this status that are applied anyway."""
        if status.startswith(("fork", "clock")):
            return []
        return [c for c in changes if refusal(c, self._trust, self.validators) is None]

    def _recovers_own(self, seg: Segment) -> bool:
        """Whether an own segment that reaches back into issued seqs holds exactly the
        changes this site holds for them: its own work coming back after a restore."""
        for c in seg.open_changes(self.limits):
            if c.seq > self._seq:
                break
            if c not in self.store.changes_for(c.collection, c.key):
                return False
        return True

    def reexamine(self, *, full: bool = False) -> int:
        """Re-check segments held for their clock, and (``full=True``) every segment
        against the trust store and validators as they are now.

        Runs by itself after a bundle or write that changes ``_trust`` (for the origins
        whose rules changed) and when a segment held for its clock may have become
        admissible; call it with ``full=True`` after changing a validator's behaviour.
        Returns how many changes were newly applied.
        """
        with self._lock:
            return self._reexamine(full=full)

    def quarantined_changes(self) -> list[QuarantinedChange]:
        """Every held change that is not applied, with its reason."""
        with self._lock:
            out = []
            for origin, segs in sorted(self._index.items()):
                for s in segs:
                    if s.status == APPLIED:
                        continue
                    changes = self._held_segment(origin, s)
                    applied = {c.id for c in self._admitted_part(s.status, changes)}
                    for c in changes:
                        if c.id not in applied:
                            reason = s.status
                            if not s.status.startswith(("fork", "clock")):
                                reason = refusal(c, self._trust, self.validators) or s.status
                            out.append(QuarantinedChange(c.id, c.collection, c.key, reason))
            return out

    def _held_segment(self, origin: bytes, s: HeldSegment) -> list[Change]:
        seg = Segment.decode(self.store.segment_data([(origin, s.first)])[0], self.limits)
        return seg.open_changes(self.limits)

    def _reexamine(self, *, full: bool = False) -> int:
        """Make the applied changes of every affected segment what admission says now.

        Candidates: segments held for their clock, and every segment of an origin whose
        certificate or revocation changed (applied ones too: their changes may have to
        be taken back); with ``full``, every segment. Loops because applying ``_trust``
        changes can change trust again. If it fails (a full disk), the next write or
        bundle tries again, comparing with the trust store this one started from.
        """
        before = self._reexamined_under if self._reexamine_pending else self._trust
        try:
            unlocked = self._reexamine_rounds(full, before)
        except BaseException:
            self._reexamined_under, self._clock_due, self._reexamine_pending = before, 0, True
            raise
        self._reexamine_pending = False
        return unlocked

    def _reexamine_rounds(self, full: bool, before: TrustStore | None) -> int:
        unlocked = 0
        for _ in range(16):  # bounded; each round needs a changed trust store
            self._trust = self._load_trust()
            changed = (
                self._trust.changed_keys(before)
                if self._trust is not None and before is not None
                else set()
            )
            self._clock_due = None
            add: list[Change] = []
            drop: list[Change] = []
            statuses: list[tuple[bytes, int, HeldSegment]] = []
            for origin, segs in self._index.items():
                for i, s in enumerate(segs):
                    # A trust or validator verdict changes only with its origin's rules
                    # (or the validators: full); a clock verdict with time.
                    if s.status.startswith("fork") or not (
                        full or origin in changed or s.status.startswith("clock")
                    ):
                        continue
                    changes = self._held_segment(origin, s)
                    seg = Segment(origin, s.first, s.last, s.prev, b"", bytes(64))
                    status = self._admit(seg, changes)
                    want = changes if status == APPLIED else self._admitted_part(status, changes)
                    held = self._applied_ids(changes)
                    wanted = {c.id for c in want}
                    add.extend(c for c in want if c.id not in held)
                    drop.extend(c for c in changes if c.id in held and c.id not in wanted)
                    if status != s.status:
                        statuses.append((origin, i, s._replace(status=status)))
            if add or drop or statuses:
                with self.store.transaction():
                    self.store.remove_changes(drop)
                    self._merge(add)
                    added = {(c.collection, c.key) for c in add}
                    self._recompute({(c.collection, c.key) for c in drop} - added)
                    for origin, _, s in statuses:
                        self.store.set_segment_status(origin, s.first, s.status)
                    top = max((c.hlc for c in add), default=0)
                    if top > self.clock.last:
                        self.store.set_meta("hlc", str(top).encode())
                self.clock.observe(max((c.hlc for c in add), default=0))
                for origin, i, s in statuses:
                    self._index[origin][i] = s
                unlocked += len(add)
            touched = any(c.collection == TRUST_COLLECTION for c in (*add, *drop))
            if not touched:
                break
            before, full = self._trust, False
        with self.store.transaction():
            self.store.set_meta("trust_examined", self._trust_fingerprint())
        self._peer_claim = self._counted_claim()  # whose claims count may have changed
        return unlocked

    def _applied_ids(self, changes: Sequence[Change]) -> set[ChangeId]:
        keys = {(c.collection, c.key) for c in changes}
        return {x.id for k in keys for x in self.store.changes_for(*k)}

    def _recompute(self, keys: Iterable[tuple[str, str]]) -> None:
        """Recompute records after changes were taken back (revocation, narrowed scope)."""
        rows = []
        for collection, key in sorted(keys):
            changes = self.store.changes_for(collection, key)
            if not changes:
                rows.append(RecordRow(collection, key, None, pack_ids([]), False))
                continue
            state = self.policy(collection).merge(changes)
            rows.append(
                RecordRow(collection, key, state.fields, pack_ids(state.heads), state.conflict)
            )
        self.store.put_records(rows)

    def _apply_bundle(self, bundle: Bundle) -> ApplyReport:
        """Verify, decode and write the bundle's segments in one transaction.

        Segments are written and merged every ``APPLY_CHUNK`` changes inside that
        transaction, so memory is bounded by the chunk, not by the bundle; any error
        rolls the whole bundle back.
        """
        report = ApplyReport(bundle.id, bundle.header.sender)
        rows: list[SegmentRow] = []
        staged: dict[tuple[bytes, int], bytes] = {}
        to_merge: list[Change] = []
        ranges: dict[bytes, list[tuple[int, int]]] = {}
        forks: list[Segment] = []
        max_hlc = 0
        conflicts: dict[tuple[str, str], None] = {}  # in order, each record once
        added: list[tuple[SegmentRow, int]] = []  # stored segments (data dropped), sizes
        trust_touched = False

        def flush() -> None:
            nonlocal trust_touched
            self.store.add_segments(rows)
            conflicts.update(dict.fromkeys(self._merge(to_merge)))
            trust_touched = trust_touched or TRUST_COLLECTION in set(map(_COLLECTION, to_merge))
            added.extend((r._replace(data=b""), len(r.data)) for r in rows)
            rows.clear()
            to_merge.clear()

        with self.store.transaction():
            for seg in bundle.segments:
                h = seg.hash
                held = self._index.find(seg.origin, seg.first_seq)
                if (held is not None and held.hash == h) or staged.get(
                    (seg.origin, seg.first_seq)
                ) == h:
                    report.duplicates += seg.count
                    continue
                seg.verify()
                changes = seg.open_changes(self.limits)
                if (seg.origin, seg.first_seq) in staged:
                    raise BundleFormatError("bundle carries two different segments at one position")
                staged[(seg.origin, seg.first_seq)] = h
                _stage_range(ranges.setdefault(seg.origin, []), seg.first_seq, seg.last_seq)
                if held is not None:  # a different segment at these seqs is held: a fork
                    forks.append(seg)  # kept as evidence; the store holds one per position
                    report.quarantined += seg.count
                    continue
                status = self._chain_problem(seg) or self._admit(seg, changes)
                rows.append(
                    SegmentRow(
                        seg.origin,
                        seg.first_seq,
                        seg.last_seq,
                        h,
                        seg.prev_hash,
                        seg.encode(),
                        status,
                    )
                )
                if status == APPLIED:
                    to_merge.extend(changes)
                    report.applied += seg.count
                    max_hlc = max(max_hlc, max(map(_HLC, changes)))
                else:
                    part = self._admitted_part(status, changes)  # trust refusals: per change
                    to_merge.extend(part)
                    report.applied += len(part)
                    report.quarantined += seg.count - len(part)
                    max_hlc = max([max_hlc, *(c.hlc for c in part)])
                if len(to_merge) >= APPLY_CHUNK:
                    flush()
            flush()
            if forks:
                self._record_forks(forks)
            report.conflicts = list(conflicts)
            own_max = max(
                (
                    r.last_seq
                    for r, _ in added
                    if r.origin == self.id and not r.status.startswith("fork")
                ),
                default=0,
            )
            if own_max > self._sealed:  # our own changes, lost in a restore, came back
                self.store.clear_outbox(own_max)  # they are sealed now, by us, before the loss
                self.store.set_meta("seq", str(max(own_max, self._seq)).encode())
                self.store.set_meta("sealed", str(own_max).encode())
            for receipt in bundle.header.receipts:
                if receipt.replica != self.id:
                    self.store.set_peer(
                        receipt.replica,
                        receipt.created,
                        receipt.knowledge.to_bytes(),
                        receipt.encode(),
                    )
                    report.receipts += 1
            if max_hlc > self.clock.last:
                self.store.set_meta("hlc", str(max_hlc).encode())
            evicted = self._bound_unknown(added, trust_touched)
        self.clock.observe(max_hlc)
        if own_max > self._sealed:
            self._seq, self._sealed = max(own_max, self._seq), own_max
        for receipt in bundle.header.receipts:
            # Our own receipt passed back by a relay is our word: it always counts.
            if receipt.replica == self.id or self._claim_counts(receipt.replica):
                self._peer_claim = max(self._peer_claim, receipt.knowledge.max_seq(self.id))
        for r, size in added:
            self._index_add(r, size)
        self._forget_evicted(evicted)
        due = self._clock_due is not None and self.clock.wall() >= self._clock_due
        if due or trust_touched or self._reexamine_pending:
            # The bundle is applied whatever happens now (see ``_after_commit``).
            try:
                report.unlocked = self._reexamine()
            except Exception as exc:
                log.warning(
                    "a bundle was applied, but re-examining held changes after it failed"
                    " and will be tried again after the next write or bundle: %s: %s",
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, StorageError),
                )
        return report

    # -- unknown signers' quarantine, bounded (offsync.quarantine) ------------------------

    def _init_unknown(self) -> None:
        """Load the order in which unknown signers were first heard from, and drop what
        is over the limits (a store from before the limits, or opened with lower ones)."""
        #: Unknown signers holding quarantined data, the one first heard from first.
        self._unknown_order: list[bytes] = []
        if self._trust is None or self.store.shared:
            return  # open mode has no unknown signers; a shared store does not evict
        saved = self.store.get_meta("unknown_signers")
        self._unknown_order = [bytes(o) for o in msgpack.unpackb(saved)] if saved else []
        if not self.store.read_only:
            with self.store.transaction():
                plan = self._evict_unknown(self._trust, rescan=True)
            self._forget_evicted(plan)

    def _is_unknown(self, origin: bytes, trust: TrustStore | None) -> bool:
        """Whether ``origin`` is a key ``trust`` says nothing about: no certificate,
        revocation or successor; not an authority, not this site (offsync.quarantine)."""
        return (
            trust is not None
            and origin != self.id
            and origin not in trust.authorities
            and trust.rule(origin) is None
        )

    def _bound_unknown(
        self, added: Sequence[tuple[SegmentRow, int]], trust_touched: bool
    ) -> tuple[list[tuple[bytes, int]], list[bytes]] | None:
        """Inside an apply's transaction, after its segments are stored: drop unknown
        signers' data beyond the limits. Only when such data arrived, so a bundle of
        known sites costs nothing more. Returns the plan for ``_forget_evicted``."""
        if self._trust is None or self.store.shared:
            return None
        # Trust records applied by this bundle count already (a certificate that came
        # with its site's data).
        trust = self._load_trust() if trust_touched else self._trust
        new = [
            (r.origin, r.first_seq, size) for r, size in added if self._is_unknown(r.origin, trust)
        ]
        if not new and not trust_touched:
            return None
        return self._evict_unknown(trust, new, rescan=trust_touched)

    def _evict_unknown(
        self,
        trust: TrustStore | None,
        new: Sequence[tuple[bytes, int, int]] = (),
        *,
        rescan: bool = False,
    ) -> tuple[list[tuple[bytes, int]], list[bytes]]:
        """Drop from the store what ``offsync.quarantine.evictions`` says, and keep the
        signers' order; ``new``: (origin, first, size) stored but not yet indexed;
        ``rescan``: also look for signers that trust stopped knowing."""
        found = sorted(o for o in self._index if self._is_unknown(o, trust)) if rescan else []
        candidates = dict.fromkeys([*self._unknown_order, *(o for o, _, _ in new), *found])
        held = {
            o: [(s.first, s.size) for s in self._index.get(o, [])]
            for o in candidates
            if self._is_unknown(o, trust)
        }
        for origin, first, size in new:
            bisect.insort(held[origin], (first, size))
        order = [o for o, segs in held.items() if segs]
        drop = evictions([(o, held[o]) for o in order], self.limits)
        if drop:
            self.store.remove_segments(drop)
            gone = set(drop)
            order = [o for o in order if any((o, f) not in gone for f, _ in held[o])]
        if order != self._unknown_order:
            self.store.set_meta("unknown_signers", packb(order))
        return drop, order

    def _forget_evicted(self, plan: tuple[list[tuple[bytes, int]], list[bytes]] | None) -> None:
        """After the commit: the index forgets what was dropped (knowledge with it)."""
        if plan is None:
            return
        drop, self._unknown_order = plan
        if not drop:
            return
        size = 0
        for origin, first in drop:
            held = self._index.find(origin, first)
            size += held.size if held is not None else 0
            self._index.drop_range(origin, first, first)
            if not self._index.get(origin, True):
                del self._index[origin]
        self._knowledge = None
        log.info(
            "dropped %d quarantined segments (%d bytes) of signers without a certificate,"
            " to stay within Limits.max_unknown_*",
            len(drop),
            size,
        )

    def _index_add(self, r: SegmentRow, size: int | None = None) -> None:
        size = len(r.data) if size is None else size
        self._index.add(
            r.origin, HeldSegment(r.first_seq, r.last_seq, r.hash, r.prev_hash, r.status, size)
        )
        self._knowledge = None

    # -- packing bundles ---------------------------------------------------------------

    def _seal(self, *, complete_only: bool = False) -> None:
        """Seal own changes written since the last seal into signed segments.

        Pages through the outbox, so sealing a long offline backlog needs memory for one
        page, not for the backlog. With ``complete_only`` (called as writes accumulate),
        only segments that reached their size limit are sealed and the tail waits in the
        outbox for more writes or for the next pack.
        """
        if self._seq <= self._sealed or self._peer_claim > self._sealed:
            # Nothing to seal, or peers hold seqs of ours that we lost: sealing now would fork.
            return
        own = self._index.get(self.id, [])
        prev = own[-1].hash if own else NO_PREVIOUS
        sealed: list[tuple[SegmentRow, int]] = []
        chunk: list[tuple[int, bytes]] = []
        size = 0
        last_sealed = self._sealed

        def flush() -> SegmentRow:
            nonlocal prev, chunk, size, last_sealed
            changes = [Change.from_row(self.id, seq, data) for seq, data in chunk]
            seg = Segment.seal(self.identity, changes, prev, self.level)
            h = seg.hash  # hashes all the data: once, not per use
            encoded = seg.encode()
            row = SegmentRow(seg.origin, seg.first_seq, seg.last_seq, h, prev, encoded, APPLIED)
            sealed.append((row._replace(data=b""), len(encoded)))
            prev, chunk, size, last_sealed = h, [], 0, seg.last_seq
            return row

        with self.store.transaction():
            after = self._sealed
            while page := self.store.outbox_page(after, SEAL_PAGE):
                rows: list[SegmentRow] = []
                for seq, data in page:
                    if chunk and (
                        len(chunk) >= SEGMENT_MAX_CHANGES or size + len(data) > SEGMENT_MAX_BYTES
                    ):
                        rows.append(flush())
                    chunk.append((seq, bytes(data)))
                    size += len(data)
                after = page[-1][0]
                if len(chunk) >= SEGMENT_MAX_CHANGES:
                    rows.append(flush())
                if rows:
                    self.store.add_segments(rows)
            if chunk and not complete_only:
                self.store.add_segments([flush()])
            if last_sealed == self._sealed:
                return
            self.store.clear_outbox(last_sealed)
            self.store.set_meta("sealed", str(last_sealed).encode())
        self._sealed = last_sealed
        for row, length in sealed:
            self._index_add(row, length)

    def pack(
        self,
        since: Knowledge | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BUNDLE,
        recipient: bytes | PublicIdentity | None = None,
        always: bool = False,
    ) -> list[bytes]:
        """Bundles carrying everything this replica holds that ``since`` lacks.

        ``since=None`` sends everything. Each bundle is at most ``max_bytes`` long, except
        that a single (foreign) segment too large for ``max_bytes`` travels alone. With
        ``always``, one bundle is produced even when there is nothing to send, so that
        this replica's receipt still travels. ``recipient`` encrypts to that site.
        Segments travel as they were sealed (compressed by their origin), so packing
        compresses nothing.
        """
        return list(self.iter_pack(since, max_bytes=max_bytes, recipient=recipient, always=always))

    def iter_pack(
        self,
        since: Knowledge | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BUNDLE,
        recipient: bytes | PublicIdentity | None = None,
        always: bool = False,
    ) -> Iterator[bytes]:
        """Like ``pack``, one bundle at a time, so a large backlog is never all in memory."""
        if isinstance(recipient, PublicIdentity):
            recipient = recipient.public_key
        with self._lock:
            self._seal()
            missing = self.knowledge() - (since or Knowledge())
            plan: list[tuple[bytes, HeldSegment]] = []
            for origin, ivs in missing.intervals.items():
                for seg in self._index.get(origin, []):
                    if seg.status.startswith("fork") or not any(
                        a <= seg.last and seg.first <= b for a, b in ivs
                    ):
                        continue
                    plan.append((origin, seg))
            forwarded = [self._kept(r) for p, _, _, r in self.store.peers() if p != recipient][
                : self.limits.max_receipts - 1
            ]
        if not plan and not always:
            return
        first_bundle = True
        group: list[tuple[bytes, HeldSegment]] = []
        size = 0
        for item in plan:
            if group and size + item[1].size + BUNDLE_OVERHEAD > max_bytes:
                yield from self._build(
                    group, max_bytes, recipient, forwarded if first_bundle else []
                )
                first_bundle = False
                group, size = [], 0
            group.append(item)
            size += item[1].size
        if group or always:
            yield from self._build(group, max_bytes, recipient, forwarded if first_bundle else [])

    def _build(
        self,
        group: list[tuple[bytes, HeldSegment]],
        max_bytes: int,
        recipient: bytes | None,
        forwarded: list[Receipt],
    ) -> Iterator[bytes]:
        with self._lock:
            data = self.store.segment_data([(o, s.first) for o, s in group])
            carried: dict[bytes, list[Interval]] = {}
            for o, s in group:
                carried.setdefault(o, []).append((s.first, s.last))
            ranges = Knowledge(carried)
            now = self.clock.now()
            own = Receipt.issue(self.identity, now, self.knowledge())
        bundle = build_bundle(
            self.identity,
            data,
            ranges=ranges,
            receipts=[own, *forwarded],
            created=now,
            recipient=recipient,
        )
        if len(bundle) <= max_bytes or (
            len(group) == 1 and len(bundle) <= self.limits.max_bundle_bytes
        ):
            yield bundle
        elif len(group) > 1:  # the receipts in the header took more room than planned
            half = len(group) // 2
            yield from self._build(group[:half], max_bytes, recipient, forwarded)
            yield from self._build(group[half:], max_bytes, recipient, [])
        else:
            raise UsageError(
                f"one segment's bundle is {len(bundle)} bytes, over the bundle limit"
                f" of {self.limits.max_bundle_bytes}"
            )
