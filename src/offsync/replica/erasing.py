"""``Replica.erase``: an authority's erase order for one record (docs/spec.md §10.3).

An erase order is an ordinary change (op 2, fields ``{"reason": ...}``) in the erased
record's partition, written by an authority key and forwarded like any change; every
replica that admits it removes the record's field values from its store
(``_Redacting``). Here it is written, and the record erased at once in the same
transaction. Who may erase: with a trust store, only an authority key
(``NotAuthorisedError`` otherwise, as peers would hold the order); in open mode, any
site, as any site may write anything there (docs/design.md, "Erasure in the replica").
"""

from __future__ import annotations

from ..change import ERASE, Change, ChangeId, erase_fields
from ..clock import next_hlc
from ..errors import NotAuthorisedError, UsageError
from ..plan.write import check_name
from ..stores.base import unpack_ids
from ..trust import TRUST_COLLECTION
from .writes import _Writes

__all__: list[str] = []


class _Erasing(_Writes):
    def erase(
        self, collection: str, key: str, reason: str, *, author: str | None = None
    ) -> ChangeId | None:
        """Erase a record: write an erase order (``reason``: why, e.g. the request's
        reference; no personal data) and remove the record's field values from this
        store now and from every replica that admits the order. The record is not
        shown, not in the state digest, and cannot be written again. Returns the
        order's id; None if the record is erased here already.

        Only an authority key may erase (``NotAuthorisedError``); in open mode any site
        may. The ``_trust`` collection cannot be erased (``UsageError``).
        """
        check_name(collection, "collection", self.limits.max_collection_bytes)
        check_name(key, "key", self.limits.max_key_bytes)
        if collection == TRUST_COLLECTION:
            raise UsageError(f"the {TRUST_COLLECTION} collection cannot be erased")
        fields = erase_fields(reason)
        with self._lock:
            author = self._author_of(author)
            if self.authorities is not None and self.id not in self.authorities:
                raise NotAuthorisedError(
                    "only an authority key may erase a record (peers would hold the order)"
                )
            if (collection, key) in self._st.erased:
                return None
            outermost = self._work is None
            st = self._state if outermost else self._st
            stream = self._stream_of(collection, key)
            mine = st.seqs(stream)
            if mine.claim > mine.sealed:
                self._refuse_reuse(stream)
            row = self.store.get_record(collection, key)
            change = Change(
                self.id,
                mine.seq + 1,
                next_hlc(st.hlc, self._wall()),
                collection,
                key,
                ERASE,
                fields,
                unpack_ids(row.heads) if row is not None else (),
                stream.prefix,
                self.schemas.version(collection),
                author,
            )
            with self._transaction():
                self._merge([change])
                self._wrote(change, {"reason": reason}, stream)
                self._erase_records([(collection, key)])
            if outermost:
                self._after_commit()  # seals own puts of it still unsealed (_seal_erased)
            return change.id
