"""Replica: blobs beside records (issue 14, docs/integrator-guide.md "Photos and
fingerprints").

A blob is put first (``put_blob``: hashed, verified and stored once per hash), its
reference then written in a record field like any value. Records never wait for blobs:
a record from a peer whose blob has not arrived is applied and visible, and listed by
``missing_blobs`` until the blob is here. ``collect_blobs`` deletes blobs that no visible
record references, once they are older than a grace period, so that a blob put but not
yet referenced (or arrived ahead of its record) is kept. Both read the store's index
of references (``Store.blob_refs``), written with the records, not the records.

A site fetches blobs by its **fetch policy** (``BLOB_FETCH``, kept in the store's meta
so that the command line and a server opened on the store follow it): ``"eager"``
fetches every blob its records reference, ``"lazy"`` only those asked for (an
``open_blob`` of a blob not here records the demand and raises ``MissingBlobError``; the
next sync fetches demanded blobs first), ``"none"`` fetches nothing (a vaccination post
needs the names, not the fingerprints). The policy governs fetching only: every site
sends the blobs it holds to its peers.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgpack

from ..blobs import DEFAULT_MEDIA_TYPE, BlobHasher, BlobRef, BlobVerifier, ref_order
from ..errors import MissingBlobError, UsageError
from ..lane import BlobChunk
from ..stores.base import referenced_by_hash, unpack_ids
from ..stores.blobs import BlobStore
from .core import _Core

__all__ = ["BLOB_FETCH", "BLOB_GRACE_MS", "BLOB_PAGE", "MAX_BLOB_DEMANDS", "MissingBlobs"]

#: The fetch policies, the default first (module docstring; docs/design.md, "Blobs").
BLOB_FETCH = ("eager", "lazy", "none")
#: The most blobs a lazy site remembers it was asked for (the oldest are forgotten):
#: bounds the meta value the demands are kept in.
MAX_BLOB_DEMANDS = 10_000

#: Rows of the reference index read at a time by the lane (``referenced_blobs``):
#: what it holds of a backlog, whatever the backlog.
BLOB_PAGE = 1024

#: How long (ms) ``collect_blobs`` keeps a blob no visible record references: a blob is
#: put before the record that refers to it, and may arrive ahead of that record.
BLOB_GRACE_MS = 7 * 24 * 3600 * 1000
#: ``put_blob`` keeps a stream's bytes in memory up to this size while hashing them,
#: and beyond it in a temporary file.
_SPOOL_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class MissingBlobs:
    """Blobs that visible records reference and this replica does not hold (yet)."""

    #: ``(collection, key)`` -> the references of that record whose blobs are absent.
    by_record: Mapping[tuple[str, str], tuple[BlobRef, ...]] = field(default_factory=dict)

    @property
    def blobs(self) -> frozenset[BlobRef]:
        return frozenset(r for refs in self.by_record.values() for r in refs)

    @property
    def count(self) -> int:
        """Distinct blobs missing (a blob referenced twice counts once)."""
        return len({r.hash for r in self.blobs})

    @property
    def bytes(self) -> int:
        sizes = {r.hash: r.size for r in self.blobs}
        return sum(sizes.values())


class _Blobs(_Core):
    _blob_fetch = BLOB_FETCH[0]

    def _open_blob_fetch(self, policy: str | None) -> None:
        """At open: the stored policy, or ``policy`` (then stored, unless read-only)."""
        if policy is not None:
            _check_fetch(policy)
        stored = self.store.get_meta("blob_fetch")
        current = stored.decode() if stored else BLOB_FETCH[0]
        if policy is None or policy == current:
            self._blob_fetch = current if current in BLOB_FETCH else BLOB_FETCH[0]
            return
        if self.store.read_only:
            self._blob_fetch = _check_fetch(policy)
            return
        self.set_blob_fetch(policy)

    @property
    def blob_fetch(self) -> str:
        """This site's fetch policy: ``"eager"``, ``"lazy"`` or ``"none"``."""
        return self._blob_fetch

    def set_blob_fetch(self, policy: str) -> None:
        """Change the fetch policy, kept in the store for every later open."""
        policy = _check_fetch(policy)
        with self._lock, self.store.transaction():
            self.store.set_meta("blob_fetch", policy.encode())
        self._blob_fetch = policy

    def demanded_blobs(self) -> list[BlobRef]:
        """Blobs asked for here (``open_blob``) and not fetched yet, oldest first."""
        raw = self.store.get_meta("blob_demand")
        return (
            [BlobRef.from_bytes(bytes(b), self.limits) for b in msgpack.unpackb(raw)] if raw else []
        )

    def _set_demands(self, refs: list[BlobRef]) -> None:
        refs = list(dict.fromkeys(refs))[-MAX_BLOB_DEMANDS:]
        with self.store.transaction():
            self.store.set_meta("blob_demand", msgpack.packb([r.to_bytes() for r in refs]))

    def _demand(self, ref: BlobRef) -> None:
        """Remember that ``ref`` was asked for (a read-only replica cannot: it asks
        nothing of its peers)."""
        if self.store.read_only:
            return
        with self._lock:
            held = self.demanded_blobs()
            if ref not in held:
                self._set_demands([*held, ref])

    def _fulfil(self, ref: BlobRef) -> None:
        """A blob is here whole now: forget that it was asked for (inside the lock)."""
        raw = self.store.get_meta("blob_demand")
        if raw and ref.to_bytes() in msgpack.unpackb(raw):
            self._set_demands([r for r in self.demanded_blobs() if r.hash != ref.hash])

    def blobs_to_fetch(self) -> tuple[list[BlobRef], list[BlobRef]]:
        """What the lane's pull side asks peers for, by this site's fetch policy: the
        missing blobs asked for (fetched first), then the other missing blobs by hash
        (none unless the policy is ``"eager"``). Demands no longer missing (fetched, or
        no longer referenced by a visible record) are forgotten here. The lane itself
        reads these a batch at a time (``fetch_batches``)."""
        first: list[BlobRef] = []
        rest: list[BlobRef] = []
        for i, batch in enumerate(self._fetch_pages()):
            (first if i == 0 else rest).extend(batch)
        return first, rest

    def fetch_batches(self, size: int, *, page: int = 0) -> Iterator[list[BlobRef]]:
        """``blobs_to_fetch`` in batches of at most ``size`` (one question to a peer
        each), the demanded first, the rest read from the index ``page`` rows at a time
        (default ``BLOB_PAGE``): a site missing 200,000 blobs never lists them at once."""
        batch: list[BlobRef] = []
        for rows in self._fetch_pages(page or BLOB_PAGE):
            for ref in rows:
                batch.append(ref)
                if len(batch) == size:
                    yield batch
                    batch = []
            if batch:  # the demanded blobs are a batch of their own, fetched first
                yield batch
                batch = []

    def _fetch_pages(self, size: int = 0) -> Iterator[list[BlobRef]]:
        """The demanded blobs still missing (one list, bounded by
        ``MAX_BLOB_DEMANDS``), then (eager) the other missing blobs a page at a time."""
        if self._blob_fetch == "none":
            return
        with self._lock:
            first = self._missing_demands()
        yield first
        if self._blob_fetch == "lazy":
            return
        size = size or BLOB_PAGE
        firsts = {r.hash for r in first}
        page: list[BlobRef] = []
        for ref in self.referenced_blobs(missing=True, page=size):
            if ref.hash not in firsts:
                page.append(ref)
                if len(page) == size:
                    yield page
                    page = []
        if page:
            yield page

    def _missing_demands(self) -> list[BlobRef]:
        """The demanded blobs that visible records reference and are not held whole,
        oldest first; the other demands are forgotten (call holding the lock)."""
        asked = self.demanded_blobs()
        if not asked:
            return []
        store = self.blob_store
        referenced = {ref for ref, _ in self.store.blob_ref_heads([r.hash for r in asked])}
        first = [r for r in asked if r in referenced and not store.has(r.hash)]
        if len(first) != len(asked) and not self.store.read_only:
            self._set_demands(first)
        return first

    def first_blob_ref(self, digest: bytes) -> BlobRef | None:
        """The first reference (in record order) of a visible record to ``digest``, or
        None: one indexed lookup (``Store.first_blob_ref``)."""
        return self.store.first_blob_ref(digest)

    def references_blob(self, ref: BlobRef) -> bool:
        """Whether a visible record holds exactly ``ref`` (one indexed query)."""
        return any(r == ref for r, _ in self.store.blob_ref_heads([ref.hash]))

    def referenced_blobs(self, *, missing: bool = False, page: int = 0) -> Iterator[BlobRef]:
        """Each blob visible records reference, once, by hash (its first reference in
        record order), read from the store's index ``page`` rows at a time (default
        ``BLOB_PAGE``): what the lane walks instead of a set of every hash, so that
        its memory does not grow with the backlog. ``missing``: only blobs not held
        whole. The store may change between pages (blobs arriving): each page starts
        after the last hash read."""
        return referenced_by_hash(self.store, missing=missing, page=page or BLOB_PAGE)

    @property
    def blob_store(self) -> BlobStore:
        """Where this replica's store keeps blobs, checked against its limits."""
        return self.store.blobs(self.limits)

    def put_blob(self, data: bytes | BinaryIO, media_type: str = DEFAULT_MEDIA_TYPE) -> BlobRef:
        """Store a blob (bytes, or a binary stream read to its end) and return its
        reference, to put in a record field (``ref.field()``). A blob already held is
        not stored again. Over ``max_blob_bytes``: ``LimitExceededError``, nothing kept."""
        if isinstance(data, bytes | bytearray | memoryview):
            raw = bytes(data)
            hasher = BlobHasher(self.limits)
            hasher.update(raw)
            ref = hasher.ref(media_type)
            with self._lock:
                self.blob_store.put(ref, io.BytesIO(raw), self._wall())
                self._fulfil(ref)
            return ref
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            hasher = BlobHasher(self.limits)
            for chunk in iter(lambda: data.read(self.limits.blob_chunk_bytes), b""):
                if not isinstance(chunk, bytes):
                    raise UsageError("put_blob reads a binary stream")
                hasher.update(chunk)
                spool.write(chunk)
            ref = hasher.ref(media_type)
            spool.seek(0)
            with self._lock:
                self.blob_store.put(ref, spool, self._wall())  # type: ignore[arg-type]
                self._fulfil(ref)
        return ref

    def has_blob(self, ref: BlobRef | Mapping[str, Any]) -> bool:
        return self.blob_store.has(_ref(ref, self).hash)

    def open_blob(self, ref: BlobRef | Mapping[str, Any]) -> BinaryIO:
        """The blob's bytes as a stream, checked against its hash before this returns
        (a blob not held: ``MissingBlobError``, and a lazy site remembers it was asked
        for, to fetch it first at the next sync; held but altered: ``BlobError``).
        ``ref`` is a ``BlobRef`` or the field value that holds one."""
        ref = _ref(ref, self)
        store = self.blob_store
        if not store.has(ref.hash):
            if self._blob_fetch == "lazy":
                self._demand(ref)
                why = (
                    "this site fetches blobs when asked (blobs='lazy'): it is asked for now,"
                    " and the next sync fetches it first"
                )
            elif self._blob_fetch == "none":
                why = "this site does not fetch blobs (blobs='none')"
            else:
                why = "it arrives when a site that holds it syncs with this one"
            raise MissingBlobError(f"blob {ref.hex} is not here yet: {why}")
        check = BlobVerifier(ref, self.limits)
        with store.open(ref) as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                check.update(chunk)
        check.finish()
        return store.open(ref)

    def blob_references(self) -> Iterator[tuple[str, str, BlobRef]]:
        """``(collection, key, ref)`` of every reference held by a visible record (from
        the store's index of references, by record)."""
        yield from self.store.blob_refs()

    def missing_blobs(self, collection: str | None = None, key: str | None = None) -> MissingBlobs:
        """References of visible records whose blobs are not here (yet), per record:
        of every record, of one ``collection``, or of one record (``collection`` and
        ``key``). Read from the store's index, not by decoding records: at a centre of a
        million records this costs what is missing, not what is held."""
        if key is not None:
            if collection is None:
                raise UsageError("missing_blobs: a key is asked for with its collection")
            store = self.blob_store
            rows = [r for r in self.store.blob_refs(collection, key) if not store.has(r[2].hash)]
        else:
            rows = self.store.missing_blob_refs()
            if collection is not None:
                rows = [r for r in rows if r[0] == collection]
        by_record: dict[tuple[str, str], list[BlobRef]] = {}
        for c, k, ref in rows:
            by_record.setdefault((c, k), []).append(ref)
        return MissingBlobs({k: tuple(v) for k, v in by_record.items()})

    # -- the lane (offsync.lane, offsync.sync.blobs) ----------------------------------

    def held_blobs(self, hashes: Iterable[bytes]) -> dict[bytes, int]:
        """For each of ``hashes`` held whole or in part: the bytes held (its size when
        whole, the bytes staged contiguously from its start when not). A hash of which
        nothing is held is absent."""
        store = self.blob_store
        out: dict[bytes, int] = {}
        for digest in hashes:
            n = store.held(digest)
            if n is not None and (n > 0 or store.has(digest)):
                out[digest] = n
        return out

    def blob_entries(
        self, hashes: Iterable[bytes]
    ) -> dict[bytes, tuple[BlobRef, frozenset[bytes]]]:
        """Of ``hashes``, those visible records reference: the reference and the
        origins of the changes that made those records (whose readers may read it).
        One indexed query (``Store.blob_ref_heads``): what a server asks per request.
        Should records reference one hash with different sizes or media types, the
        first reference in ``ref_order`` stands."""
        out: dict[bytes, tuple[BlobRef, set[bytes]]] = {}
        for ref, heads in sorted(self.store.blob_ref_heads(list(hashes)), key=_by_ref):
            entry = out.setdefault(ref.hash, (ref, set()))
            entry[1].update(h.origin for h in unpack_ids(heads))
        return {h: (ref, frozenset(o)) for h, (ref, o) in out.items()}

    def blob_records(self, hashes: Iterable[bytes]) -> list[tuple[str, str, BlobRef]]:
        """Of ``hashes``, each reference a visible record holds, with that record's
        collection and key, any order (one indexed query, ``Store.blob_ref_records``):
        whether a reader's scope holds a record that refers to a blob
        (``offsync.readable.readable_blobs``)."""
        return [(c, k, ref) for c, k, ref, _ in self.store.blob_ref_records(list(hashes))]

    def blob_index(self) -> dict[bytes, tuple[BlobRef, frozenset[bytes]]]:
        """``blob_entries`` of every blob visible records reference."""
        return self.blob_entries({r.hash for _, _, r in self.store.blob_refs()})

    def receive_blob_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        """Keep one chunk of a blob arriving from a peer; the bytes now held. With the
        last byte here, the whole blob is verified: one that does not match its
        reference is dropped whole and refused (``BlobError``), nothing else touched."""
        BlobChunk(ref, offset, data).check(self.limits)
        with self._lock:
            store = self.blob_store
            if ref.size == 0:  # nothing to carry: verified and kept at once
                store.put(ref, io.BytesIO(b""), self._wall())
            elif store.begin(ref, self._wall()):
                store.write_chunk(ref, offset, data)
                held = store.held(ref.hash) or 0
                if held < ref.size:
                    return held
                store.finish(ref)
            self._fulfil(ref)
        return ref.size

    def read_blob_chunk(self, ref: BlobRef, offset: int, length: int) -> bytes:
        """Bytes of a held blob, from ``offset``, at most ``blob_chunk_bytes``."""
        return self.blob_store.read(ref, offset, length)

    def collect_blobs(self, grace_ms: int = BLOB_GRACE_MS) -> list[bytes]:
        """Delete the blobs (whole or half-written) that no visible record references
        and that were begun more than ``grace_ms`` ago; returns their hashes."""
        if type(grace_ms) is not int or grace_ms < 0:
            raise UsageError("grace_ms is an int >= 0")
        with self._lock:
            store = self.blob_store
            before = self._wall() - grace_ms
            old = [b.hash for b in store.blobs() if b.created < before]
            referenced = self.store.referenced_blobs(old)  # the index, not the records
            gone = [h for h in old if h not in referenced]
            store.delete(gone)
        return gone


def _by_ref(item: tuple[BlobRef, bytes]) -> tuple[bytes, int, bytes]:
    return ref_order(item[0])


def _check_fetch(policy: object) -> str:
    if policy not in BLOB_FETCH:
        raise UsageError(f"blobs is one of {', '.join(BLOB_FETCH)}, not {policy!r}")
    return str(policy)


def _ref(ref: BlobRef | Mapping[str, Any], replica: _Core) -> BlobRef:
    if isinstance(ref, BlobRef):
        return ref
    return BlobRef.from_field(dict(ref), replica.limits)
