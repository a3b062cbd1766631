"""Replica: blobs beside records (issue 14, docs/integrator-guide.md "Photos and
fingerprints").

A blob is put first (``put_blob``: hashed, verified and stored once per hash), its
reference then written in a record field like any value. Records never wait for blobs:
a record from a peer whose blob has not arrived is applied and visible, and listed by
``missing_blobs`` until the blob is here. ``collect_blobs`` deletes blobs that no visible
record references, once they are older than a grace period, so that a blob put but not
yet referenced (or arrived ahead of its record) is kept.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ..blobs import BLOB_MARK, DEFAULT_MEDIA_TYPE, BlobHasher, BlobRef, BlobVerifier, references
from ..encoding import decode_fields
from ..errors import UsageError
from ..lane import BlobChunk
from ..stores.base import unpack_ids
from ..stores.blobs import BlobStore
from .core import _Core

__all__ = ["BLOB_GRACE_MS", "MissingBlobs"]

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
        return ref

    def has_blob(self, ref: BlobRef | Mapping[str, Any]) -> bool:
        return self.blob_store.has(_ref(ref, self).hash)

    def open_blob(self, ref: BlobRef | Mapping[str, Any]) -> BinaryIO:
        """The blob's bytes as a stream, checked against its hash before this returns
        (a blob not held: ``MissingBlobError``; held but altered: ``BlobError``).
        ``ref`` is a ``BlobRef`` or the field value that holds one."""
        ref = _ref(ref, self)
        store = self.blob_store
        check = BlobVerifier(ref, self.limits)
        with store.open(ref) as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                check.update(chunk)
        check.finish()
        return store.open(ref)

    def blob_references(self) -> Iterator[tuple[str, str, BlobRef]]:
        """``(collection, key, ref)`` of every reference held by a visible record."""
        for row in self.store.iter_records():
            if row.fields is None or BLOB_MARK not in row.fields:
                continue
            for ref in references(decode_fields(row.fields)):
                yield row.collection, row.key, ref

    def missing_blobs(self) -> MissingBlobs:
        """References of visible records whose blobs are not here (yet), per record."""
        store = self.blob_store
        held: dict[bytes, bool] = {}
        by_record: dict[tuple[str, str], list[BlobRef]] = {}
        for collection, key, ref in self.blob_references():
            if ref.hash not in held:
                held[ref.hash] = store.has(ref.hash)
            if not held[ref.hash]:
                refs = by_record.setdefault((collection, key), [])
                if ref not in refs:
                    refs.append(ref)
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

    def offered_blobs(self) -> list[BlobRef]:
        """The blobs held whole here that visible records reference: what the lane
        offers a peer that holds those records (once per hash)."""
        store = self.blob_store
        seen: dict[bytes, BlobRef] = {}
        for _, _, ref in self.blob_references():
            if ref.hash not in seen and store.has(ref.hash):
                seen[ref.hash] = ref
        return list(seen.values())

    def blob_index(self) -> dict[bytes, tuple[BlobRef, frozenset[bytes]]]:
        """Every blob visible records reference: its reference and the origins of the
        changes that made those records (whose readers may read it). A server builds
        it once per change of its knowledge, to take and serve only these blobs."""
        out: dict[bytes, tuple[BlobRef, set[bytes]]] = {}
        for row in self.store.iter_records():
            if row.fields is None or BLOB_MARK not in row.fields:
                continue
            origins = {h.origin for h in unpack_ids(row.heads)}
            for ref in references(decode_fields(row.fields)):
                entry = out.setdefault(ref.hash, (ref, set()))
                entry[1].update(origins)
        shared: dict[frozenset[bytes], frozenset[bytes]] = {}  # most share one set of origins
        return {
            h: (ref, shared.setdefault(frozenset(o), frozenset(o))) for h, (ref, o) in out.items()
        }

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
            referenced = {ref.hash for _, _, ref in self.blob_references()}
            gone = [
                b.hash for b in store.blobs() if b.hash not in referenced and b.created < before
            ]
            store.delete(gone)
        return gone


def _ref(ref: BlobRef | Mapping[str, Any], replica: _Core) -> BlobRef:
    if isinstance(ref, BlobRef):
        return ref
    return BlobRef.from_field(dict(ref), replica.limits)
