"""Bulk writes: ``put_many``, many records of one collection in one transaction.

For importing an existing registry or a stack of re-keyed forms. The result is what
``put`` of each record inside one ``batch()`` gives (same changes, same merge rules,
same refusals, atomic), only cheaper: the records are encoded and checked before the
transaction starts, which of them exist already is asked once, the new ones are
written with one statement each for their rows and sealed into segments in the same
transaction, from the values in memory, without outbox rows to write, read back and
decode. Records that exist (or a key given twice) take ``put``'s own path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..change import Change
from ..clock import next_hlc
from ..encoding import decode_fields
from ..errors import UsageError
from ..plan.seal import may_seal, row_bounds, segment_ends
from ..plan.write import EncodedWrites, encode_writes, plan_new
from ..segindex import HeldSegment, Stream, own_meta
from ..segment import NO_PREVIOUS, Segment
from ..trust import TRUST_COLLECTION
from .applying import _gc_paused
from .writes import _Writes

__all__ = ["BULK_LEVEL"]

#: The zstd level ``put_many`` seals at unless told otherwise (or the replica's own
#: level, if lower): a one-off import is sealed at about 2.5x the speed of level 15 for
#: about 17 % more bytes (benchmarks/README.md).
BULK_LEVEL = 3

#: What ``put_many`` takes: (key, fields) pairs, or a mapping of key to fields.
Records = Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]]


class _Bulk(_Writes):
    def put_many(
        self,
        collection: str,
        records: Records,
        *,
        level: int | None = None,
        author: str | None = None,
    ) -> int:
        """Put many records of ``collection`` at once; returns how many were written.

        The same as ``put(collection, key, fields)`` for each record inside one
        ``batch()``: all of them or, if any is refused (bad fields, a first-writer-wins
        record that exists, the trust store or a validator), none. New records take
        consecutive own seqs in key order rather than in the order given, and whole
        segments of them are sealed before this returns, at zstd ``level`` (default:
        ``BULK_LEVEL``, or the replica's level if that is lower). One transaction: for
        millions of records, call it with chunks of about 100,000. ``author``: as
        ``put``'s, for every record.
        """
        items = records.items() if isinstance(records, Mapping) else records
        with _gc_paused():
            writes = encode_writes(collection, items, self.limits)
        if level is None:
            level = min(self.level, BULK_LEVEL)
        elif not 1 <= level <= 22:
            raise UsageError("level must be a zstd level from 1 to 22")
        with self._lock, _gc_paused():
            author = self._author_of(author)
            if self._st.erased and any((collection, k) in self._st.erased for k in writes.keys):
                raise UsageError("a record given is erased: it cannot be written again")
            outermost = self._work is None
            with self._transaction():
                if self.rule.length(collection) == 0:
                    mine = self._st.seqs(self._stream_of(collection, ""))
                    if mine.claim > mine.sealed:
                        self._refuse_reuse(self._stream_of(collection, ""))
                new, rest = self._split_new(collection, writes)
                if new:
                    self._write_new(collection, writes, new, level, author)
                for i in rest:  # in the order given, after the new ones
                    self._write(
                        collection,
                        writes.keys[i],
                        writes.values[i],
                        resolving=False,
                        author=author,
                    )
            if outermost:
                self._after_commit(reexamine=collection == TRUST_COLLECTION)
        return len(writes.keys)

    def _split_new(self, collection: str, writes: EncodedWrites) -> tuple[list[int], list[int]]:
        """The positions of records that do not exist yet (each key's first), in key
        order; and of the rest (records that exist, keys given again), in input order."""
        keys = writes.keys
        # Each key's first position: assigned from the last to the first, the first wins.
        first = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))
        rest: list[int] = []
        if len(first) < len(keys):  # keys given twice: the later ones take put's path
            rest = [i for i, key in enumerate(keys) if first[key] != i]
        if collection == TRUST_COLLECTION or self.rule.length(collection):
            # Trust writes re-examine as they go, and the records of a collection of
            # many partitions go to many streams: put's path.
            return [], list(range(len(keys)))
        held = self.store.existing([(collection, k) for k in first])
        if not held:
            return list(map(first.__getitem__, sorted(first))), rest
        rest.extend(i for k, i in first.items() if (collection, k) in held)
        rest.sort()
        return [first[k] for k in sorted(first) if (collection, k) not in held], rest

    def _write_new(
        self,
        collection: str,
        writes: EncodedWrites,
        new: list[int],
        level: int,
        author: str | None = None,
    ) -> None:
        """Write the records at positions ``new`` (which do not exist) as own changes,
        and seal every whole segment of own changes now, in the caller's transaction."""
        st = self._st
        keys = list(map(writes.keys.__getitem__, new))
        encoded = list(map(writes.encoded.__getitem__, new))
        stream = self._stream_of(collection, "")
        changes = plan_new(
            self.id,
            st.seqs(stream).seq + 1,
            next_hlc(st.hlc, self._wall()),
            collection,
            keys,
            encoded,
            trust=st.trust,
            validators=self.validators,
            schema=self.schemas.version(collection),
            author=author,
        )
        self._merge(changes)
        self._owed_counters = True
        self._put(st.wrote(stream, changes[-1].seq, changes[-1].hlc))
        values: list[dict[str, Any] | None] = list(map(writes.values.__getitem__, new))
        key_bytes = list(map(writes.key_bytes.__getitem__, new))
        sizes = row_bounds(len(collection.encode()), key_bytes, list(map(len, encoded)))
        self._seal_with(stream, changes, values, sizes, level)

    def _seal_with(
        self,
        stream: Stream,
        changes: list[Change],
        values: list[dict[str, Any] | None],
        sizes: list[int],
        level: int,
    ) -> None:
        """Seal the own changes waiting in the outbox and then ``changes`` (just written,
        not in the outbox) into whole segments; write what does not fill one to the
        outbox, where it waits for more writes like any put's change."""
        st = self._st
        mine = st.seqs(stream)
        if not may_seal(mine.seq, mine.sealed, mine.claim):  # sealing now could fork
            self._to_outbox(changes, values)
            return
        first_new = changes[0].seq
        self._flush_fresh()
        waiting = self._held_unsealed(stream, mine.sealed, first_new - 1)
        if waiting is None:  # not all in memory: read them back
            waiting = [
                (c, None if c.fields is None else decode_fields(c.fields), len(data))
                for page in self._outbox_pages(stream, mine.sealed)
                for c, data in ((Change.from_row(self.id, s, bytes(d)), d) for s, d in page)
            ]
        if waiting:  # older own changes go first, into the first segment
            sizes = [size for _, _, size in waiting] + sizes
            values = [value for _, value, _ in waiting] + values
            changes = [c for c, _, _ in waiting] + changes
        own = st.segments.get(stream, ())
        prev = own[-1].hash if own else NO_PREVIOUS
        sealed: list[tuple[Stream, HeldSegment]] = []
        start = 0
        for end in segment_ends(sizes, complete_only=True):
            seg = Segment.seal(
                self.identity, changes[start:end], prev, level, values=values[start:end]
            )
            prev = self._store_sealed(seg, prev, sealed)
            start = end
        tail = [i for i in range(start, len(changes)) if changes[i].seq >= first_new]
        self._to_outbox([changes[i] for i in tail], [values[i] for i in tail])
        if sealed:
            last = sealed[-1][1].last
            if waiting:
                self.store.clear_outbox(stream.partition, min(last, first_new - 1))
            self.store.set_meta(own_meta("sealed", stream.partition), str(last).encode())
            st = st._replace(segments=st.segments.updated(add=sealed))
            self._put(st.with_seqs(stream, sealed=last))
            self._forget_sealed(stream, mine.sealed, last)

    def _to_outbox(self, changes: list[Change], values: list[dict[str, Any] | None]) -> None:
        """Write own changes to the outbox, where they wait to be sealed; remembered as
        this transaction's own changes (``_fresh``), so that sealing finds them in memory."""
        self._flush_fresh()  # (rows of earlier writes first: all of _fresh is then stored)
        rows = [(c.seq, c.to_row()) for c in changes]
        if rows:
            self.store.add_outbox(changes[0].partition, rows)
        self._fresh += zip(changes, values, strict=True)
        self._fresh_sizes += (len(row) for _, row in rows)
        self._fresh_stored = len(self._fresh)
