"""Local writes: put, delete, resolve, batch; and the work that follows a commit."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..change import DELETE, PUT, Change, ChangeId
from ..clock import next_hlc
from ..encoding import decode_fields
from ..errors import StorageError, UsageError
from ..plan.claims import reuse_error
from ..plan.seal import whole_segment_waits
from ..plan.write import encode_write_value, plan_write
from ..policies import fold
from ..scope import Stream
from ..stores.base import unpack_ids
from ..trust import TRUST_COLLECTION, verdict
from .examine import _Examining
from .sealing import _Sealing

__all__: list[str] = []

log = logging.getLogger("offsync")


class _Writes(_Examining, _Sealing):
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many writes into one transaction (much faster for bulk entry)."""
        with self._lock:
            outermost = self._work is None
            with self._transaction():
                yield
            if outermost:
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
            if choose is None:
                return self._write(collection, key, None if delete else fields, resolving=True)
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

    def _write(
        self, collection: str, key: str, fields: Mapping[str, Any] | None, *, resolving: bool
    ) -> ChangeId:
        encoded, value = encode_write_value(collection, key, fields, self.limits)
        with self._lock:
            outermost = self._work is None
            st = self._state if outermost else self._st
            stream = self._stream_of(collection, key)
            mine = st.seqs(stream)
            if mine.claim > mine.sealed:
                self._refuse_reuse(stream)
            seq, hlc = mine.seq + 1, next_hlc(st.hlc, self._wall())
            if not outermost and self._guesses_new(collection):
                change = self._write_if_new(stream, seq, hlc, collection, key, encoded, value)
                if change is not None:
                    return change.id
            row = self.store.get_record(collection, key)
            change = plan_write(
                self.id,
                seq,
                hlc,
                collection,
                key,
                encoded,
                heads=unpack_ids(row.heads) if row is not None else (),
                visible=row is not None and row.fields is not None,
                immutable=self.policy(collection).immutable,
                resolving=resolving,
                trust=st.trust,
                validators=self.validators,
                prefix=stream.prefix,
            )
            with self._transaction():
                self._merge([change])
                self._wrote(change, value, stream)
            if outermost:
                self._after_commit(reexamine=collection == TRUST_COLLECTION)
            elif collection == TRUST_COLLECTION:
                self._reexamine()  # inside the batch's transaction: fails with it
            return change.id

    def _guesses_new(self, collection: str) -> bool:
        """Whether a write into ``collection`` may first try as the first change of a
        new record (``_write_if_new``): a store of its own, a policy that takes a sole
        change as the state, and not the trust collection (its writes re-examine)."""
        return (
            not self.store.shared
            and self.policy(collection).single_change_is_identity
            and collection != TRUST_COLLECTION
        )

    def _write_if_new(
        self,
        stream: Stream,
        seq: int,
        hlc: int,
        collection: str,
        key: str,
        encoded: bytes | None,
        value: dict[str, Any] | None,
    ) -> Change | None:
        """Inside a batch: write the change as its record's first, if the record does
        not exist, in one statement (no read first); None if it exists (or the write
        would be refused): then ``put``'s general path decides, and raises what it raises.

        The change a write makes on a new record has no parents and passes the
        first-writer-wins check, so only the trust store and validators can refuse it.
        """
        op = PUT if encoded is not None else DELETE
        change = Change(self.id, seq, hlc, collection, key, op, encoded, (), stream.prefix)
        if verdict(change, self._st.trust, self.validators) is not None:
            return None
        with self._transaction():
            if not self.store.try_first_change(change):
                return None
            self._wrote(change, value, stream)
        return change

    def _wrote(self, change: Change, value: dict[str, Any] | None, stream: Stream) -> None:
        """Account for an own change just stored (inside its transaction): its outbox
        row, the seq and clock, all written when the transaction ends."""
        self._fresh.append((change, value))
        self._owed_counters = True
        self._put(self._st.wrote(stream, change.seq, change.hlc))

    def _refuse_reuse(self, stream: Stream) -> None:
        """Refuse to write while peers hold own changes of ``stream`` this site has not
        sealed (``offsync.plan.claims.reuse_error``)."""
        mine = self._st.seqs(stream)
        claims = self._seq_claims(stream)
        claimants = [c.peer for c in claims if c.counted and c.seq > mine.sealed]
        error = reuse_error(mine.claim, mine.seq, claimants, sealed=mine.sealed)
        if error is not None:
            raise error

    def _after_commit(self, *, reexamine: bool = False) -> None:
        """What follows a committed write or batch: re-examining held changes after a
        trust write, and sealing whole segments as soon as they fill (so packing a
        long backlog later only frames already-signed segments).

        The write stands whatever happens here, so a failure (a full disk) is logged,
        not raised: raising would tell the caller the write failed and a retry would
        write it twice. The work is tried again after the next write (and sealing at
        the next pack, which raises if it cannot seal).
        """
        try:
            if reexamine or self._st.pending is not None:
                self._reexamine()
            if any(whole_segment_waits(m.seq, m.sealed) for m in self._st.own.values()):
                self._seal(complete_only=True)
        except Exception as exc:
            log.warning(
                "a write was committed, but the work after it failed and will be tried "
                "again after the next write: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, StorageError),
            )
