"""Replica: what the blob lane over mailboxes (``offsync.sync.mailblobs``) reads and
keeps in the store, so that nothing outside the replica touches it.

A mailbox cannot be asked what a peer holds; the lane decides from the records (which
changes made each record that references blobs, against the peer's receipt) and keeps
a small log of what it wrote for each peer.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..blobs import BLOB_MARK, BlobRef, references
from ..encoding import decode_fields
from ..knowledge import Knowledge
from ..stores.base import unpack_ids
from .core import _Core

__all__ = ["LANE_LOG"]

#: Store meta name (+ the peer's key in hex) of the in-transit log of the mailbox lane.
LANE_LOG = "blob-mail:"


class _Mailing(_Core):
    def blobs_beyond(
        self, known: Knowledge, also: frozenset[bytes] = frozenset()
    ) -> Iterator[BlobRef]:
        """References (once per hash) of visible records that ``known`` does not cover
        (a change of their heads is not in it), and of those naming a hash in ``also``,
        in record order: what a peer holding ``known`` lacks, as far as can be told."""
        seen: set[bytes] = set()
        for row in self.store.iter_records():
            if row.fields is None or BLOB_MARK not in row.fields:
                continue
            covered = all(known.contains(h.origin, h.seq) for h in unpack_ids(row.heads))
            for ref in references(decode_fields(row.fields)):
                if ref.hash not in seen and (not covered or ref.hash in also):
                    seen.add(ref.hash)
                    yield ref

    def lane_log(self, peer: bytes) -> bytes:
        """The mailbox lane's in-transit log for ``peer`` (empty: none)."""
        return self.store.get_meta(LANE_LOG + peer.hex()) or b""

    def set_lane_log(self, peer: bytes, log: bytes) -> None:
        with self._lock, self.store.transaction():
            self.store.set_meta(LANE_LOG + peer.hex(), log)
