"""The store interface a replica runs on.

A store is dumb persistence: it never decides a merge and never decodes untrusted
bytes. Every write happens inside ``transaction()``; if the block raises, the store
is left exactly as before. ``offsync.testing.check_store`` checks an implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

import msgpack

from ..blobs import BlobRef, field_references, ref_order
from ..change import Change, ChangeId
from ..errors import StorageError, UsageError
from ..limits import DEFAULT_LIMITS, Limits
from ..scope import WHOLE, Partition, Stream, new_partition, new_stream, whole

if TYPE_CHECKING:
    from .blobs import BlobStore

__all__ = [
    "BlobRefRow",
    "IndexRow",
    "RecordRow",
    "SegmentRow",
    "Store",
    "first_record",
    "in_partition",
    "prefix_end",
    "pack_ids",
    "sole_head",
    "stream_of",
    "unpack_ids",
]


def pack_ids(ids: Sequence[ChangeId]) -> bytes:
    """Change ids as stores keep them (a record's heads, a change's parents):
    msgpack ``[[origin, seq], ...]``."""
    return msgpack.packb([[i.origin, i.seq] for i in ids])  # type: ignore[no-any-return]


def unpack_ids(data: bytes | None) -> tuple[ChangeId, ...]:
    """The inverse of ``pack_ids``; no bytes (a change without parents) is no ids."""
    return tuple(ChangeId(o, s) for o, s in msgpack.unpackb(data)) if data else ()


def sole_head(origin: bytes, seq: int) -> bytes:
    """``pack_ids([ChangeId(origin, seq)])`` without building lists or calling msgpack:
    the heads of a record that one change made (once per new record on the bulk path)."""
    if len(origin) != 32 or not 0 < seq < 1 << 32:
        return pack_ids([ChangeId(origin, seq)])
    if seq < 0x80:  # positive fixint, uint8, uint16, uint32: msgpack's shortest forms
        tail = seq.to_bytes(1, "big")
    elif seq < 0x100:
        tail = b"\xcc" + seq.to_bytes(1, "big")
    elif seq < 0x10000:
        tail = b"\xcd" + seq.to_bytes(2, "big")
    else:
        tail = b"\xce" + seq.to_bytes(4, "big")
    return b"\x91\x92\xc4\x20" + origin + tail  # [[bin8(32), uint]]


def stream_of(origin: bytes, collection: str, prefix: str) -> Stream:
    """The stream a store row names by its (origin, collection, prefix) columns: a
    format-2 stream (``whole``) when the collection is empty. Not validated: the row
    was validated when it was written."""
    if not collection and not prefix:
        return whole(bytes(origin))
    return new_stream(bytes(origin), new_partition(collection, prefix))


def in_partition(partition: Partition, length: int, collection: str, key: str) -> bool:
    """Whether record ``(collection, key)`` lies in ``partition`` under a rule of prefix
    length ``length`` for its collection (``Store.drop_partition``)."""
    return collection == partition.collection and key[:length] == partition.prefix


def prefix_end(prefix: str) -> str | None:
    """The least str above every str starting with ``prefix`` (in code point order,
    which is UTF-8 byte order), or None when there is none (an empty prefix, or one of
    U+10FFFF only): the upper bound of a range scan of the keys with that prefix."""
    while prefix:
        last = ord(prefix[-1]) + 1
        if last == 0xD800:  # surrogates are no text: the next code point is U+E000
            last = 0xE000
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(last)
        prefix = prefix[:-1]
    return None


class SegmentRow(NamedTuple):
    stream: Stream  # whose segment: (origin, partition); format 2: ``whole(origin)``
    first_seq: int
    last_seq: int
    hash: bytes
    prev_hash: bytes
    data: bytes  # the encoded segment, byte for byte as received or sealed
    status: str  # "applied", or why it is quarantined


class RecordRow(NamedTuple):
    collection: str
    key: str
    fields: bytes | None  # None: deleted
    heads: bytes  # msgpack [[origin, seq], ...]
    conflict: bool


def first_record(c: Change) -> RecordRow:
    """The record a change makes on its own (a put or a tombstone, no conflict)."""
    return RecordRow(c.collection, c.key, c.fields, sole_head(c.origin, c.seq), False)


#: A segment as the index reads it: (stream, first, last, hash, prev_hash, status,
#: size of the encoded segment).
IndexRow = tuple[Stream, int, int, bytes, bytes, str, int]
#: ``(collection, key, ref)``: one blob reference held by one visible record.
BlobRefRow = tuple[str, str, BlobRef]


def ref_row_order(row: BlobRefRow) -> tuple[bytes, bytes, tuple[bytes, int, bytes]]:
    """How reference rows are listed: by record (UTF-8 bytes, as ``iter_records``),
    then ``offsync.blobs.ref_order``."""
    return row[0].encode(), row[1].encode(), ref_order(row[2])


def referenced_by_hash(store: Store, *, missing: bool, page: int) -> Iterator[BlobRef]:
    """Each blob visible records reference, once, by hash (its first reference in
    record order), read ``page`` rows at a time (``Store.blob_ref_page``). The store may
    change between pages: each starts after the last hash read."""
    after: bytes | None = None
    while True:
        rows = store.blob_ref_page(after, page, missing=missing)
        for ref in rows:
            if ref.hash != after:
                after = ref.hash
                yield ref
        if len(rows) < page:
            return


def _by_hash_row(row: BlobRefRow) -> tuple[bytes, bytes, bytes, tuple[bytes, int, bytes]]:
    """The order of ``Store.blob_ref_page``: by hash, then ``ref_row_order``."""
    return (row[2].hash, *ref_row_order(row))


class Store(ABC):
    """Persistence for one replica. Not thread-safe; the replica serialises calls."""

    #: True when other processes may write this store at the same time (several server
    #: workers on one PostgreSQL database). A replica on a shared store then locks the
    #: origins and records it is about to decide on, and reads its segment index from
    #: the store instead of trusting the copy it loaded at open (see ``Replica.apply``).
    shared: bool = False
    #: True for a store opened only to be read (``SQLiteStore(..., read_only=True)``):
    #: ``transaction()`` raises ``UsageError``, so nothing can write through it.
    read_only: bool = False

    _depth = 0  # transaction() blocks open; only the outermost is a real transaction
    _doomed = False  # an inner block raised: the outermost must not commit

    def transaction(self) -> AbstractContextManager[None]:
        """All-or-nothing block; re-entrant (inner blocks join the outer one).

        An inner block that raises cannot be undone alone, so it dooms the whole
        transaction: if its error is caught and the outer block goes on, the outermost
        block still rolls everything back, with ``StorageError``. The store's own errors
        leave every block as offsync errors (``_storage_error``).
        """
        if self._depth:
            return _Joined(self)  # a class, not a generator: one per write in a batch
        return self._outermost_transaction()

    @contextmanager
    def _outermost_transaction(self) -> Iterator[None]:
        if self.read_only:
            raise UsageError(
                "this replica is open read-only (for inspection): write through the"
                " process that owns it"
            )
        self._doomed = False
        with self._outermost():
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
            if self._doomed:
                raise StorageError(
                    "a failed step inside this transaction was ignored; rolled back, "
                    "nothing was changed"
                )

    def _storage_error(self, exc: BaseException) -> BaseException:
        """``exc`` as an offsync error if it is the database's own (else ``exc``)."""
        return exc

    def _abandon(self) -> None:
        """An inner block failed and the transaction will be rolled back: a store whose
        database may have rolled back by itself makes sure that nothing the block's
        caller does next is committed on its own."""
        return None

    @abstractmethod
    def _outermost(self) -> AbstractContextManager[None]:
        """One real transaction: committed when the block ends, rolled back (leaving the
        store exactly as before) when it raises."""

    @abstractmethod
    def close(self) -> None: ...

    def blobs(self, limits: Limits = DEFAULT_LIMITS) -> BlobStore:
        """Where this store keeps blobs (``offsync.stores.blobs``), in the same database
        so that one backup holds records and blobs alike."""
        raise UsageError(f"{type(self).__name__} keeps no blobs")

    def probe(self) -> None:
        """Check that the store can be reached and is at the schema this offsync uses;
        ``StorageError`` if not. What a server's ``GET /readyz`` asks: callable from any
        thread without the replica's lock (a store with a database of its own asks on a
        connection of its own), and cheap (one short query). A store in memory has
        nothing to reach."""
        return None

    # meta: small named values (own seq, clock, identity, schema version)
    @abstractmethod
    def get_meta(self, name: str) -> bytes | None: ...

    @abstractmethod
    def set_meta(self, name: str, value: bytes) -> None: ...

    # segments, keyed by (stream, first seq); a stream is (origin, partition), and
    # format 2's one stream per origin is the WHOLE partition (``whole(origin)``)
    @abstractmethod
    def segment_index(self) -> list[IndexRow]:
        """(stream, first, last, hash, prev_hash, status, size) of every held segment,
        ordered by stream (origin bytes, then collection and prefix as UTF-8 bytes),
        then first seq."""

    @abstractmethod
    def add_segments(self, rows: Sequence[SegmentRow]) -> None: ...

    @abstractmethod
    def segment_data(self, keys: Sequence[tuple[Stream, int]]) -> list[bytes]:
        """Encoded segments by (stream, first_seq), in the order asked."""

    @abstractmethod
    def set_segment_status(self, stream: Stream, first_seq: int, status: str) -> None: ...

    @abstractmethod
    def replace_segment_data(self, stream: Stream, first_seq: int, data: bytes) -> None:
        """Keep ``data`` as the held segment's bytes instead (its redacted form after an
        erasure: same hash, seqs and status; docs/spec-v3.md §6.4). Nothing if none is
        held there."""

    def remove_segments(self, keys: Sequence[tuple[Stream, int]]) -> None:
        """Drop the segments at these (stream, first_seq); absent ones are ignored.

        A trust-mode replica drops quarantined data of unknown signers this way when it
        holds more than its limits allow (``offsync.plan.quarantine``).
        """
        raise StorageError(f"{type(self).__name__} cannot drop segments (remove_segments)")

    def drop_partition(self, partition: Partition, length: int) -> None:
        """Remove everything this store holds of ``partition`` (a replica's scope shrank,
        ``Replica.set_scope``): the segments of every origin's stream in it, its outbox
        rows, and the records that lie in it under a rule of prefix length ``length``
        (keys starting with the prefix; a prefix shorter than ``length`` is the key of a
        partition of its own) with their changes and blob references. Kept: meta, peers'
        receipts and blob bytes (``collect_blobs`` drops what no record references)."""
        raise StorageError(f"{type(self).__name__} cannot drop partitions (drop_partition)")

    def segment_index_of(self, origins: Sequence[bytes]) -> list[IndexRow]:
        """``segment_index()`` restricted to the streams of these origins, in the same
        order."""
        wanted = set(origins)
        return [row for row in self.segment_index() if row[0][0] in wanted]

    def segment_index_near(self, spans: Sequence[tuple[Stream, int, int]]) -> list[IndexRow]:
        """For each (stream, first, last): the index rows of that stream's segments whose
        first_seq lies in [first, last + 1], and of the one with the greatest first_seq
        below ``first`` (what deciding on a segment at first..last looks at). Rows may
        repeat; any order."""
        out: list[IndexRow] = []
        for stream, first, last in spans:
            rows = [r for r in self.segment_index_of([stream[0]]) if r[0] == stream]
            below = [r for r in rows if r[1] < first]
            out += below[-1:] + [r for r in rows if first <= r[1] <= last + 1]
        return out

    def segments_changed(self, cursor: int) -> tuple[list[IndexRow], int]:
        """Index rows added or re-statused since ``cursor`` (0: every row), and the next cursor.

        Rows may come again in a later answer. Only a replica on a shared store asks.
        """
        return self.segment_index(), 0

    # locks for shared stores; inside a transaction, held until it ends
    def lock_origins(self, origins: Sequence[bytes]) -> None:
        """Hold these origins' segment chains, every stream of each (no-op for a store
        only one process writes)."""
        return None

    def lock_records(self, keys: Sequence[tuple[str, str]]) -> None:
        """Hold these records while they are recomputed (no-op unless shared)."""
        return None

    def lock_peers(self, peers: Sequence[bytes]) -> None:
        """Hold these signers' kept receipts while their union is read and written again
        (no-op unless shared): two workers keeping receipts of one signer at once must
        not both union with the same old row. Taken last in a transaction."""
        return None

    # own changes not yet sealed into a segment, per own stream: the store belongs to
    # one site, so its partition names the stream (format 2: ``WHOLE``)
    @abstractmethod
    def add_outbox(self, partition: Partition, rows: Sequence[tuple[int, bytes]]) -> None: ...

    @abstractmethod
    def outbox(self, partition: Partition = WHOLE) -> list[tuple[int, bytes]]: ...

    @abstractmethod
    def clear_outbox(self, partition: Partition, upto_seq: int) -> None: ...

    @abstractmethod
    def outbox_partitions(self) -> list[Partition]:
        """The partitions that hold outbox rows, sorted: the own streams with unsealed
        changes, whose counters a replica loads on open."""

    def outbox_page(
        self, partition: Partition, after_seq: int, limit: int
    ) -> list[tuple[int, bytes]]:
        """Up to ``limit`` outbox rows of ``partition`` with seq > ``after_seq``, in seq
        order."""
        return [row for row in self.outbox(partition) if row[0] > after_seq][:limit]

    # applied changes and record states
    @abstractmethod
    def add_changes(self, changes: Sequence[Change]) -> None: ...

    def remove_changes(self, changes: Sequence[Change]) -> None:
        """Take applied changes back (a revocation or narrowed scope arrived after them).

        The replica recomputes the records afterwards. Rare; need not be fast.
        """
        raise StorageError(f"{type(self).__name__} cannot take changes back (remove_changes)")

    @abstractmethod
    def changes_for(self, collection: str, key: str) -> list[Change]: ...

    def changes_for_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Change]]:
        """``changes_for`` of many records at once (a store may answer in one query)."""
        return {(c, k): self.changes_for(c, k) for c, k in keys}

    @abstractmethod
    def existing(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]: ...

    @abstractmethod
    def put_records(self, rows: Sequence[RecordRow]) -> None: ...

    def add_new_records(self, rows: Sequence[RecordRow]) -> list[tuple[str, str]]:
        """Write records the replica expects to be new; leave any that exist untouched.

        Returns the (collection, key) of the rows not written because the record
        already existed (the replica merges those instead). The bulk path of applying a
        backlog: a store can do it in one statement, without asking ``existing`` first.
        A shared store must hold the records it writes here until the transaction ends
        (a row insert does), as ``lock_records`` would.
        """
        found = self.existing([(r.collection, r.key) for r in rows])
        self.put_records([r for r in rows if (r.collection, r.key) not in found])
        return [(r.collection, r.key) for r in rows if (r.collection, r.key) in found]

    def add_first_changes(self, changes: Sequence[Change]) -> list[tuple[str, str]]:
        """``add_changes(changes)`` and ``add_new_records`` of the record each change
        makes alone (``first_record``), for changes that are each the only change of
        their record and whose policy takes that change alone as the state. Returns what
        ``add_new_records`` returns; the changes are stored either way. A store may keep
        such a change in its record's row until the row is replaced (SQLite does: one
        row written per change instead of two).
        """
        self.add_changes(changes)
        return self.add_new_records(list(map(first_record, changes)))

    def try_first_change(self, change: Change) -> bool:
        """Store ``change`` as the first and only change of its record, as
        ``add_first_changes`` does, if the store holds no row of that record at all (not
        even a deleted one); else write nothing and return False. A local put of a new
        record: a store can do it in one statement instead of a read and a write. Only
        asked of stores that are not ``shared``, inside a transaction."""
        if self.get_record(change.collection, change.key) is not None:
            return False
        if self.add_first_changes([change]):
            raise StorageError("a record appeared inside a transaction")
        return True

    @abstractmethod
    def get_record(self, collection: str, key: str) -> RecordRow | None: ...

    @abstractmethod
    def iter_records(self, collection: str | None = None) -> Iterator[RecordRow]:
        """Records ordered by (collection, key) compared as UTF-8 bytes."""

    @abstractmethod
    def conflicted(self) -> list[tuple[str, str]]: ...

    # the blob references of visible records (docs/design.md, "Blobs": the index)
    def blob_refs(self, collection: str | None = None, key: str | None = None) -> list[BlobRefRow]:
        """The references visible records hold (of one collection, or one record), in
        ``ref_row_order``, each once per record. This default reads every record; the
        stores offsync ships keep an index of references, written with the records
        (``check_store`` holds it to this scan)."""
        rows = self.iter_records(collection)
        if key is not None:
            if collection is None:
                raise UsageError("blob_refs: a key is asked for with its collection")
            one = self.get_record(collection, key)
            rows = iter([one] if one is not None else [])
        out: list[BlobRefRow] = []
        for row in rows:
            out += [(row.collection, row.key, ref) for ref in field_references(row.fields)]
        return out

    def missing_blob_refs(self) -> list[BlobRefRow]:
        """The references of visible records whose blobs this store does not hold
        whole, in ``ref_row_order``."""
        blobs = self.blobs()
        held: dict[bytes, bool] = {}
        out = []
        for row in self.blob_refs():
            digest = row[2].hash
            if digest not in held:
                held[digest] = blobs.has(digest)
            if not held[digest]:
                out.append(row)
        return out

    def blob_ref_page(
        self, after: bytes | None, limit: int, *, missing: bool = False
    ) -> list[BlobRef]:
        """At most ``limit`` references of visible records to hashes after ``after``
        (None: from the first), by hash, then by record, then ``ref_order``: one page of
        the index. The lane reads the referenced blobs a page at a time (keyset
        pagination: the next page starts after the last hash read), so that a backlog of
        200,000 blobs is never held at once; the first row of a hash is its first
        reference in record order. ``missing``: only references whose blob is not held
        whole (as ``missing_blob_refs``). This default reads every reference."""
        rows = self.missing_blob_refs() if missing else self.blob_refs()
        start = after or b""
        page = sorted((r for r in rows if r[2].hash > start), key=_by_hash_row)
        return [r[2] for r in page[:limit]]

    def blob_ref_rows(self, after: BlobRefRow | None, limit: int) -> list[BlobRefRow]:
        """At most ``limit`` rows of ``blob_refs()`` after the row ``after`` (None: from
        the first), in the same order (``ref_row_order``): the index in record order, a
        page at a time. This default reads every reference."""
        start = ref_row_order(after) if after is not None else None
        rows = self.blob_refs()
        return [r for r in rows if start is None or ref_row_order(r) > start][:limit]

    def blob_ref_records(self, hashes: Sequence[bytes]) -> list[tuple[str, str, BlobRef, bytes]]:
        """``blob_ref_heads`` with the record's collection and key: each reference to one
        of ``hashes`` held by a visible record, the record and its heads, any order.
        What the lane over disks asks of a page of references (which records the peer
        lacks, and which of them comes first). This default reads every record."""
        wanted = set(hashes)
        return [
            (row.collection, row.key, ref, row.heads)
            for row in self.iter_records()
            for ref in field_references(row.fields)
            if ref.hash in wanted
        ]

    def first_blob_ref(self, digest: bytes) -> BlobRef | None:
        """The first reference (in record order) of a visible record to ``digest``:
        what this replica takes the blob to be (its size), or None when no visible
        record references it. One indexed lookup per chunk taken from a disk. This
        default reads every reference."""
        return next((r[2] for r in self.blob_refs() if r[2].hash == digest), None)

    def blob_ref_heads(self, hashes: Sequence[bytes]) -> list[tuple[BlobRef, bytes]]:
        """For each reference to one of ``hashes`` held by a visible record: the
        reference and that record's heads (``pack_ids``), whose origins may read the
        blob. What a server asks per request instead of indexing every record; any
        order. ``blob_ref_records`` without the record's name (one query for both)."""
        return [(ref, heads) for _, _, ref, heads in self.blob_ref_records(hashes)]

    def referenced_blobs(self, hashes: Sequence[bytes]) -> set[bytes]:
        """Those of ``hashes`` that some visible record references (what
        ``collect_blobs`` must keep)."""
        wanted = set(hashes)
        return {r.hash for _, _, r in self.blob_refs() if r.hash in wanted}

    # what peers said they hold (receipts)
    @abstractmethod
    def set_peer(self, peer: bytes, created: int, knowledge: bytes, receipt: bytes) -> None: ...

    @abstractmethod
    def peers(self) -> list[tuple[bytes, int, bytes, bytes]]:
        """(peer, created, knowledge, receipt) for every peer heard from."""

    def peer(self, peer: bytes) -> tuple[bytes, int, bytes, bytes] | None:
        """``peers()``'s row for one peer, or None. Stores override this with a lookup:
        a centre keeps a row per site, and every receipt it takes in reads one."""
        return next((row for row in self.peers() if row[0] == peer), None)

    # single-use values (the HTTP server's challenges, docs/http.md)
    @abstractmethod
    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        """Record ``nonce`` as used until ``expires``; False if it is recorded already
        and not expired by ``now`` (a replay). Atomic across every process sharing the
        store, so one nonce is accepted once by all of them. A record expired by ``now``
        no longer counts, and the store may drop it (times are the caller's, in ms).
        """


class _Joined:
    """An inner ``Store.transaction()`` block: it joins the outer one, and dooms it if
    it raises (``Store.transaction``)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._depth += 1

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        store = self._store
        if exc is None:
            store._depth -= 1
            return
        try:
            store._doomed = True
            store._abandon()
            mapped = store._storage_error(exc)
        finally:
            store._depth -= 1
        if mapped is not exc:
            raise mapped from exc
