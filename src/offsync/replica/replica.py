"""The ``Replica`` class: opening a replica on a store, and its parts by job."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgpack

from ..clock import wall_millis
from ..errors import FormatTwoStoreError, UsageError
from ..identity import Identity, PublicIdentity
from ..limits import DEFAULT_LIMITS, Limits
from ..plan.examine import fingerprint
from ..plan.write import check_author
from ..policies import LastWriterWins, Policy
from ..schemas import Schemas
from ..scope import WHOLE, PartitionRule, Scope, Stream, new_stream
from ..segindex import SegmentIndex
from ..status import Kind
from ..stores.base import Store
from ..trust import TRUST_COLLECTION, Validator
from .applying import _Applying
from .blobs import _Blobs
from .bulk import _Bulk
from .erasing import _Erasing
from .examine import _log_evicted
from .history import _History
from .mailing import _Mailing
from .packing import _Packing
from .state import ReplicaState
from .versions import _Versions

__all__ = ["DEFAULT_LEVEL", "Replica", "ReplicaClock"]

#: zstd level at which own changes are compressed when sealed (once: relays and later
#: packs forward the compressed segments as they are). See benchmarks/README.md.
DEFAULT_LEVEL = 15


class Replica(_Bulk, _Applying, _Packing, _Blobs, _Mailing, _History, _Erasing, _Versions):
    """One site's replica. Open with ``Replica.open(path, identity=..., policies=...)``.

    Every public method takes ``lock``, so one ``Replica`` may be shared by the threads
    of a server; every write to the store happens in one transaction (per write, batch
    or bundle), so a refused or failed bundle leaves it untouched. The decisions are
    ``offsync.plan``'s; this class runs them against its store.
    """

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
        blobs: str | None = None,
        partitions: PartitionRule | Mapping[str, int] | None = None,
        schemas: Schemas | None = None,
        author: str | None = None,
        scope: Scope | None = None,
        reference: Iterable[str] = (),
    ) -> None:
        """``trust``: the authority keys (the root of trust), or None for open mode, in
        which every validly signed origin may write anything. ``validators``: per
        collection, a check every change must pass (``offsync.trust.Validator``).
        ``level``: the zstd level own changes are compressed at when sealed (1-22;
        higher costs write time for fewer bytes; receivers need nothing different).
        ``blobs``: the blob fetch policy, ``"eager"``, ``"lazy"`` or ``"none"``
        (``offsync.replica.blobs``), kept in the store; None: as the store says
        (``"eager"`` for a new one). ``partitions``: the deployment's partition rule
        (``offsync.scope.PartitionRule``, or ``{collection: prefix length}``; default:
        every collection one partition), kept in the store when it is created: opening
        it with another rule raises ``UsageError``. ``schemas``: the application's schema
        versions and upcasters (``offsync.schemas``; default: every collection
        unversioned); the versions are kept in the store, opening it with an older
        version of a collection raises ``UsageError`` and with a newer one applies the
        changes held for their version. ``author``: who local writes are entered by
        when a write names no author (a clerk id, 1-64 UTF-8 bytes).
        ``scope``: the partitions this
        replica holds (``offsync.scope.Scope``; None: as the store keeps it, everything
        for a new one); another scope than the kept one is a scope change
        (``set_scope``).
        ``reference``: the deployment's reference collections, held whole by every
        replica like ``_trust`` (pass the same list every time, like ``partitions``)."""
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
        self.authorities = (
            None
            if trust is None
            else frozenset(k.public_key if isinstance(k, PublicIdentity) else k for k in trust)
        )
        self.validators = dict(validators or {})
        if schemas is not None and not isinstance(schemas, Schemas):
            raise UsageError("schemas is an offsync.schemas.Schemas")
        self.schemas = schemas if schemas is not None else Schemas()
        self.author = check_author(author)
        self._lock = threading.RLock()
        self._wall = wall
        self._fresh, self._fresh_sizes, self._recent = [], [], {}
        self.rule = _rule_of(partitions)
        self._claim_store()
        self._check_rule()
        kept_schemas = self._check_schemas()  # the versions the store was opened with
        self._open_scope(scope, reference)
        self._open_blob_fetch(blobs)
        self._state = self._loaded_state()
        self._examine_on_open()
        self._upgrade_schemas(kept_schemas)
        self._put(self._with_counted_claims(self._st))
        self._bound_on_open()
        self._settle_scope()

    def _claim_store(self) -> None:
        owner = self.store.get_meta("identity")
        if owner is None and self.store.read_only:
            raise UsageError("this store holds no replica yet: open it for writing first")
        if owner is None:
            with self.store.transaction():
                self.store.set_meta("identity", self.identity.public_key)
        elif owner != self.identity.public_key:
            raise UsageError("this store belongs to another identity")

    def _check_rule(self) -> None:
        """Keep the partition rule in a new store; refuse another rule than the kept one
        (the rule is deployment-wide: a change's partition must mean the same for ever)."""
        kept = self.store.get_meta("partition_rule")
        mine = msgpack.packb(sorted(self.rule.lengths.items()))
        if kept is None:
            if not self.store.read_only:
                with self.store.transaction():
                    self.store.set_meta("partition_rule", mine)
            return
        if bytes(kept) != mine:
            held = PartitionRule(dict(msgpack.unpackb(kept)))
            raise UsageError(
                f"this store was created with partition rule {held!r}, not {self.rule!r}:"
                " the rule is deployment-wide and cannot change"
            )

    def _check_schemas(self) -> dict[str, int]:
        """The versions the store keeps (meta ``schemas``: those it was last opened
        with), by collection; refuse a downgrade (what was applied under the newer
        version could not be read). A read-only open reads the store as it is, under
        any schemas (``offsync history``, backups), and changes nothing."""
        kept = self.store.get_meta("schemas")
        before: dict[str, int] = dict(msgpack.unpackb(kept)) if kept else {}
        for collection, version in sorted(before.items()):
            if self.schemas.version(collection) < version and not self.store.read_only:
                raise UsageError(
                    f"this store was opened with version {version} of '{collection}', newer"
                    f" than {self.schemas.version(collection)}: a replica cannot go back to an"
                    " older schema (it could not read what it applied); open it with the"
                    " newer schemas"
                )
        return before  # kept with the upgrade, collection by collection (_upgrade_schemas)

    def _loaded_state(self) -> ReplicaState:
        """The state as the store holds it. On a shared store other processes add
        segments too: ``_follow_store`` catches up from the cursor."""
        store = self.store
        rows, cursor = store.segments_changed(0) if store.shared else (store.segment_index(), 0)
        segments = SegmentIndex.from_rows(rows)
        outbox = store.outbox_partitions()
        if WHOLE in outbox or any(s.partition == WHOLE for s in segments):
            raise FormatTwoStoreError(
                "this store holds data of wire format 2, which this release cannot use"
                " (segments cannot be re-signed by anyone but their origins): export its"
                " records with the previous release and import them here as fresh writes,"
                " or bootstrap this site again from its centre"
            )
        # Own streams: those held in segments, and those with unsealed changes only.
        streams = {*segments.streams_of(self.id)}
        streams.update(new_stream(self.id, p) for p in outbox)
        return ReplicaState(
            segments=segments,
            own={s: self._stored_seqs(s) for s in sorted(streams)},
            hlc=int(store.get_meta("hlc") or b"0"),
            trust=self._load_trust(),
            forks=self._stored_forks(),
            cursor=cursor,
            erased=self._stored_erased(),
        )

    def _examine_on_open(self) -> None:
        """Opened with other authorities or validators than the store was examined
        under: examine every segment again. Segments held for their clock: find out at
        the next apply or ``reexamine()``."""
        examined = self.store.get_meta("trust_examined")
        current = fingerprint(self._st.trust, self.validators)
        if examined is None and self._st.trust is None and not self.validators:
            examined = current  # a store that never had trust: nothing to do
        if examined != current and not self.store.read_only:
            self._reexamine(full=True)
        elif any(s.status.kind is Kind.CLOCK for segs in self._st.segments.values() for s in segs):
            self._put(self._st._replace(clock_due=0))

    def _bound_on_open(self) -> None:
        """Load the order in which unknown signers were first heard from, and drop what
        is over the limits (a store from before the limits, or opened with lower ones)."""
        if self._st.trust is None or self.store.shared:
            return  # open mode has no unknown signers; a shared store does not evict
        saved = self.store.get_meta("unknown_signers")
        order = tuple(bytes(o) for o in msgpack.unpackb(saved)) if saved else ()
        self._put(self._st._replace(unknown=order))
        if not self.store.read_only:
            with self._transaction():
                st = self._st
                dropped = self._evict_unknown(st.trust, rescan=True)
            _log_evicted(dropped)

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
        from ..stores.sqlite import SQLiteStore

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
        return f"<Replica {self.identity.label!r} {self.identity.short_id} seq={self.seq}>"

    @property
    def public_key(self) -> bytes:
        """The same as ``id``: lets a replica stand wherever a site is named."""
        return self.identity.public_key

    @property
    def seq(self) -> int:
        """How many changes this site has issued: the sum of its own streams' last seqs
        (each own stream numbers its changes from 1: ``seqs``)."""
        return sum(m.seq for m in self._st.own.values())

    @property
    def sealed(self) -> int:
        """How many own changes are sealed into segments (summed over own streams): the
        other ``seq - sealed`` wait unsealed in the outbox. Writing to a stream waits
        while a counted claim is above its sealed seq (``seq_claims``)."""
        return sum(m.sealed for m in self._st.own.values())

    def seqs(self) -> dict[Stream, tuple[int, int]]:
        """Per own stream, (the last seq issued, the last seq sealed)."""
        return {s: (m.seq, m.sealed) for s, m in sorted(self._st.own.items())}

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock every public method takes.

        Meant for servers and helpers: hold it to make several calls see one state, or
        ``lock.acquire(timeout=...)`` to give up on a replica that stays busy
        (``offsync.server`` answers 503 then).
        """
        return self._lock

    @property
    def clock(self) -> ReplicaClock:
        """This site's hybrid logical clock (part of the replica's state)."""
        return ReplicaClock(self)


class ReplicaClock:
    """A replica's clock, with ``offsync.clock.HybridClock``'s interface; its value is
    the replica's state (``last``), so it moves with the replica's transactions."""

    __slots__ = ("_replica",)

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    @property
    def last(self) -> int:
        return self._replica._st.hlc

    @property
    def wall(self) -> Callable[[], int]:
        return self._replica._wall

    def now(self) -> int:
        with self._replica._lock:
            return self._replica._tick()

    def observe(self, remote: int) -> None:
        """Move past a timestamp seen in received data."""
        rep = self._replica
        with rep._lock:
            st = rep._st
            if remote > st.hlc:
                rep._put(st._replace(hlc=remote))


def _rule_of(partitions: PartitionRule | Mapping[str, int] | None) -> PartitionRule:
    if partitions is None:
        return PartitionRule()
    if isinstance(partitions, PartitionRule):
        return partitions
    if isinstance(partitions, Mapping):
        return PartitionRule(partitions)
    raise UsageError("partitions is a PartitionRule or a mapping of collection to prefix length")
