"""Replica: what the blob lane over mailboxes (``offsync.sync.mailblobs``) reads and
keeps in the store, so that nothing outside the replica touches it.

A mailbox cannot be asked what a peer holds; the lane decides from the records (which
changes made each record that references blobs, against the peer's receipt) and keeps
a small log of what it wrote for each peer.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..blobs import BlobRef
from ..knowledge import Knowledge
from ..scope import new_stream
from ..stores.base import BlobRefRow, unpack_ids
from .blobs import BLOB_PAGE
from .core import _Core

__all__ = ["LANE_LOG"]

#: Store meta name (+ the peer's key in hex) of the in-transit log of the mailbox lane.
LANE_LOG = "blob-mail:"


class _Mailing(_Core):
    def blobs_beyond(
        self, known: Knowledge, also: frozenset[bytes] = frozenset(), *, page: int = 0
    ) -> Iterator[BlobRef]:
        """References (once per hash) of visible records that ``known`` does not cover
        (a change of their heads is not in it), and of those naming a hash in ``also``,
        in record order (a recording's blobs go together): what a peer holding ``known``
        lacks, as far as can be told. Read from the store's index ``page`` rows at a
        time (default ``BLOB_PAGE``), each page with the records that reference its
        hashes: a hash goes with the first such record in record order, so no set of
        the hashes already seen is kept and an export of 200,000 blobs holds a page."""
        size = page or BLOB_PAGE
        after: BlobRefRow | None = None
        last: tuple[str, str, bytes] | None = None  # a record may list a hash twice
        while True:
            rows = self.store.blob_ref_rows(after, size)
            for c, k, ref in self._first_lacking(rows, known, also):
                if last != (c, k, ref.hash):
                    last = (c, k, ref.hash)
                    yield ref
            if len(rows) < size:
                return
            after = rows[-1]

    def _first_lacking(
        self, rows: list[BlobRefRow], known: Knowledge, also: frozenset[bytes]
    ) -> Iterator[BlobRefRow]:
        """The rows whose record is the first in record order among those referencing
        their hash that the peer lacks (``known`` does not cover it, or the hash is in
        ``also``)."""
        first: dict[bytes, tuple[bytes, bytes]] = {}  # hash -> its first lacking record
        records = self.store.blob_ref_records(sorted({r[2].hash for r in rows}))
        for c, k, ref, heads in records:
            part = self.rule.partition_of(c, k)  # a record's changes are in its partition
            lacks = ref.hash in also or not all(
                known.contains(new_stream(h.origin, part), h.seq) for h in unpack_ids(heads)
            )
            at = (c.encode(), k.encode())
            if lacks and (ref.hash not in first or at < first[ref.hash]):
                first[ref.hash] = at
        for c, k, ref in rows:
            if first.get(ref.hash) == (c.encode(), k.encode()):
                yield c, k, ref

    def lane_log(self, peer: bytes) -> bytes:
        """The mailbox lane's in-transit log for ``peer`` (empty: none)."""
        return self.store.get_meta(LANE_LOG + peer.hex()) or b""

    def set_lane_log(self, peer: bytes, log: bytes) -> None:
        with self._lock, self.store.transaction():
            self.store.set_meta(LANE_LOG + peer.hex(), log)
