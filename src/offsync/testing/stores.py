"""``check_store(make_store)``: does a store keep the Store contract?

Run it against every store implementation (offsync runs it against the memory, SQLite
and PostgreSQL stores)::

    from offsync.testing import check_store
    check_store(lambda: MyStore(...))   # each call: a new, empty store

It checks each part of the contract on a fresh store (transactions all-or-nothing and
re-entrant, meta, segments, outbox, changes, records in UTF-8 byte order, conflicts,
newest-wins peers, single-use nonces that expire, the index of blob references equal to
a scan of the records by every write path, dropping a partition), then runs seeded random operation
sequences against the store and ``MemoryStore`` (the reference) side by side, and
finally feeds the same bundles to a replica on the store and to one on SQLite and
compares ``state_digest()``, knowledge, quarantine and conflicts. It raises ``AssertionError`` naming what differs.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..blobs import BlobRef, blob_hash, ref_order
from ..change import DELETE, PUT, Change, ChangeId
from ..encoding import packb
from ..errors import RemoteDataError, StorageError, UsageError
from ..scope import WHOLE, Partition, Stream, whole
from ..stores.base import RecordRow, SegmentRow, Store
from ..stores.memory import MemoryStore

if TYPE_CHECKING:
    from ..replica import Replica

__all__ = ["check_store"]

MakeStore = Callable[[], Store]

#: Origins that sort differently as signed and unsigned bytes.
O1 = b"\x00" * 31 + b"\x01"
O2 = b"\x7f" + b"\x00" * 31
O3 = b"\xff" * 32
#: Their format-2 streams.
W1, W2, W3 = whole(O1), whole(O2), whole(O3)
#: Streams of O1 in partitions whose UTF-8 byte order differs from UTF-16's (and one
#: with an empty prefix, which must not read back as WHOLE).
PARTITIONED = [
    Stream(O1, Partition("c", "a")),
    Stream(O1, Partition("c", "")),
    Stream(O1, Partition("c", "\ufb00")),
    Stream(O1, Partition("c", "\U0001f600")),
    Stream(O1, Partition("é", "a")),
]
#: Keys whose UTF-8 byte order differs from case-folded, locale and UTF-16 orders.
TRICKY_KEYS = ["a", "B", "b", "a\x00b", "ab", "Z", "é", "e\u0301", "\ufb00", "\U0001f600", "~", "1"]


class _Boom(Exception):
    """Raised inside transactions to roll them back."""


def check_store(make_store: MakeStore, *, random_runs: int = 6) -> None:
    """Check that the stores ``make_store()`` returns keep the Store contract."""
    for check in (
        _check_meta,
        _check_transactions,
        _check_segments,
        _check_outbox,
        _check_streams,
        _check_changes,
        _check_records,
        _check_locks,
        _check_first_changes,
        _check_peers,
        _check_nonces,
        _check_blob_refs,
        _check_drop_partition,
    ):
        with _fresh(make_store) as store:
            check(store)
    for seed in range(random_runs):
        with _fresh(make_store) as store:
            _check_against_reference(store, seed)
    _check_replica_equivalence(make_store)


@contextmanager
def _fresh(make_store: MakeStore) -> Iterator[Store]:
    store = make_store()
    try:
        assert store.segment_index() == [], "make_store() must return an empty store"
        yield store
    finally:
        store.close()


def _expect_error(fn: Callable[[], Any], what: str) -> None:
    try:
        fn()
    except StorageError:
        return
    raise AssertionError(f"{what}: expected StorageError")


def _seg(stream: Stream, first: int, last: int, status: str = "applied") -> SegmentRow:
    part = (stream.collection + "/" + stream.prefix).encode()
    tag = stream.origin[:1] + first.to_bytes(4, "big")
    return SegmentRow(
        stream,
        first,
        last,
        b"h" * 27 + tag,
        b"p" * 27 + tag,
        b"data" + part + tag * first,
        status,
    )


def _change(
    origin: bytes,
    seq: int,
    key: str = "k",
    *,
    collection: str = "c",
    delete: bool = False,
    parents: tuple[ChangeId, ...] = (),
    hlc: int | None = None,
) -> Change:
    return Change(
        origin,
        seq,
        (1 << 40) + seq if hlc is None else hlc,
        collection,
        key,
        DELETE if delete else PUT,
        None if delete else b"\x81\xa1f" + bytes([seq % 128]),
        parents,
    )


def _row(
    key: str, collection: str = "c", *, conflict: bool = False, gone: bool = False
) -> RecordRow:
    return RecordRow(collection, key, None if gone else b"\x80", b"\x91\x92\xc4\x01x\x01", conflict)


#: Blobs the checks reference: the bytes of the first two, and a third never held.
BLOB_BYTES = (b"photo of a", b"fingerprint")
REFS = (
    BlobRef(blob_hash(BLOB_BYTES[0]), len(BLOB_BYTES[0]), "image/jpeg"),
    BlobRef(blob_hash(BLOB_BYTES[1]), len(BLOB_BYTES[1]), "application/octet-stream"),
    BlobRef(b"\x02" * 32, 123, "image/png"),
)


def _ref_fields(*refs: BlobRef, name: str = "x") -> bytes:
    """Field bytes holding these references (nested, and one twice, as peers may)."""
    return packb({"name": name, "photo": [r.field() for r in refs], "again": refs[0].field()})


def _ref_row(key: str, *refs: BlobRef, heads: bytes = b"\x91\x92\xc4\x01x\x01") -> RecordRow:
    return RecordRow("c", key, _ref_fields(*refs), heads, False)


def _ref_record(item: tuple[str, str, BlobRef, bytes]) -> tuple[Any, ...]:
    return (item[0], item[1], *ref_order(item[2]), item[3])


def _same_as_scan(s: Store, what: str) -> None:
    """The store's index of references equals what a scan of its records finds."""
    scan = Store.blob_refs(s)
    assert s.blob_refs() == scan, f"{what}: the index of blob references differs from a scan"
    for c in {c for c, _, _ in scan} | {"none"}:
        assert s.blob_refs(c) == [r for r in scan if r[0] == c], f"{what}: blob_refs({c!r})"
    for c, k, _ in scan[:5]:
        assert s.blob_refs(c, k) == [r for r in scan if r[:2] == (c, k)], f"{what}: one record"
    assert s.missing_blob_refs() == Store.missing_blob_refs(s), f"{what}: missing_blob_refs"
    hashes = [r.hash for r in REFS] + [b"\x09" * 32]
    assert s.referenced_blobs(hashes) == {r.hash for _, _, r in scan}, f"{what}: referenced"
    for missing in (False, True):
        for after in (None, *sorted({r.hash for _, _, r in scan})):
            for limit in (1, 2, 100):
                got_page = s.blob_ref_page(after, limit, missing=missing)
                assert got_page == Store.blob_ref_page(s, after, limit, missing=missing), (
                    f"{what}: blob_ref_page({after!r}, {limit}, missing={missing})"
                )
    for digest in hashes:
        assert s.first_blob_ref(digest) == Store.first_blob_ref(s, digest), f"{what}: first ref"
    for after_row in (None, *scan):
        for limit in (1, 2, 100):
            assert s.blob_ref_rows(after_row, limit) == Store.blob_ref_rows(s, after_row, limit), (
                f"{what}: blob_ref_rows({after_row!r}, {limit})"
            )
    for some in (hashes, hashes[:1], []):
        got_records = sorted(s.blob_ref_records(some), key=_ref_record)
        scanned_records = sorted(Store.blob_ref_records(s, some), key=_ref_record)
        assert got_records == scanned_records, f"{what}: blob_ref_records"


# -- the parts of the contract ---------------------------------------------------------


def _check_meta(s: Store) -> None:
    assert s.get_meta("absent") is None, "get_meta of an unset name must be None"
    with s.transaction():
        s.set_meta("seq", b"12")
        s.set_meta("empty", b"")
    assert s.get_meta("seq") == b"12"
    assert s.get_meta("empty") == b"", "an empty value is a value, not None"
    with s.transaction():
        s.set_meta("seq", b"13")
    assert s.get_meta("seq") == b"13", "set_meta must replace"
    assert type(s.get_meta("seq")) is bytes


def _snapshot(s: Store) -> tuple[Any, ...]:
    return (
        s.get_meta("m"),
        s.segment_index(),
        s.outbox(),
        s.changes_for("c", "k"),
        list(s.iter_records()),
        s.peers(),
    )


def _write_everything(s: Store, n: int) -> None:
    s.set_meta("m", str(n).encode())
    s.add_segments([_seg(W1, n, n)])
    s.add_outbox(WHOLE, [(n, b"o")])
    s.add_changes([_change(O1, n)])
    s.put_records([_row(f"k{n}")])
    s.set_peer(O2, n, b"k", b"r")


def _check_transactions(s: Store) -> None:
    with s.transaction():
        _write_everything(s, 1)
    committed = _snapshot(s)
    assert committed[1] and committed[2] and committed[3] and committed[4] and committed[5]

    try:
        with s.transaction():
            _write_everything(s, 2)
            raise _Boom
    except _Boom:
        pass
    else:
        raise AssertionError("an exception inside transaction() must propagate unchanged")
    assert _snapshot(s) == committed, "a transaction that raised must leave no trace"

    try:
        with s.transaction():
            _write_everything(s, 3)
            with s.transaction():
                _write_everything(s, 4)
            raise _Boom
    except _Boom:
        pass
    assert _snapshot(s) == committed, "an inner block must join the outer transaction"

    try:
        with s.transaction(), s.transaction():
            _write_everything(s, 5)
            raise _Boom
    except _Boom:
        pass
    assert _snapshot(s) == committed, "an exception in an inner block rolls back the whole"

    try:
        with s.transaction():
            _write_everything(s, 6)
            try:
                with s.transaction():
                    s.set_meta("inner", b"failed")
                    raise _Boom
            except _Boom:
                pass  # caught, and the outer block goes on
            s.set_meta("outer", b"went on")
    except StorageError:
        pass
    else:
        raise AssertionError("a transaction whose inner block raised must not commit")
    assert _snapshot(s) == committed, "a failed inner block dooms the whole transaction"

    with s.transaction():
        with s.transaction():
            s.set_meta("inner", b"1")
        s.set_meta("outer", b"1")
    assert (s.get_meta("inner"), s.get_meta("outer")) == (b"1", b"1")

    def duplicate() -> None:
        with s.transaction():
            s.set_meta("m", b"lost")
            s.add_segments([_seg(W1, 1, 1)])  # already held

    _expect_error(duplicate, "adding a segment at a held position")
    assert _snapshot(s) == committed, "a store error must roll the whole transaction back"

    # Usable again after a failed transaction.
    with s.transaction():
        s.set_meta("after", b"ok")
    assert s.get_meta("after") == b"ok"


def _check_segments(s: Store) -> None:
    rows = [_seg(W3, 1, 5), _seg(W2, 1, 1), _seg(W1, 4, 9), _seg(W1, 1, 3, "fork: test")]
    with s.transaction():
        s.add_segments(rows)
        s.add_segments([])
    index = s.segment_index()
    expected = sorted(
        (r.stream, r.first_seq, r.last_seq, r.hash, r.prev_hash, r.status, len(r.data))
        for r in rows
    )
    assert [tuple(x) for x in index] == expected, (
        "segment_index: every segment, ordered by (stream, first_seq), with len(data)"
    )
    assert all(type(x[0][0]) is bytes and type(x[3]) is bytes for x in index)
    assert [tuple(x) for x in s.segment_index_of([O1])] == expected[:2]
    assert [tuple(x) for x in s.segment_index_of([O3, O2])] == expected[2:]
    assert s.segment_index_of([]) == []
    near = s.segment_index_near([(W1, 4, 6), (W1, 10, 12), (W2, 2, 2), (W3, 1, 1)])
    assert {tuple(x)[:2] for x in near} == {(W1, 1), (W1, 4), (W2, 1), (W3, 1)}, (
        "segment_index_near: segments starting in [first, last + 1] and the one before"
    )
    assert {tuple(x) for x in near} <= set(expected)
    assert s.segment_index_near([]) == []
    rows_changed, cursor = s.segments_changed(0)
    assert {tuple(x) for x in rows_changed} == set(expected), "segments_changed(0): every row"
    keys = [(W3, 1), (W1, 1), (W1, 4), (W2, 1), (W1, 1)]
    by_key = {(r.stream, r.first_seq): r.data for r in rows}
    assert s.segment_data(keys) == [by_key[k] for k in keys], "segment_data: in the order asked"
    _expect_error(lambda: s.segment_data([(W1, 2)]), "segment_data of a missing segment")
    with s.transaction():
        s.set_segment_status(W1, 1, "applied")
    assert s.segment_index()[0][5] == "applied"
    again, _ = s.segments_changed(cursor)
    assert (W1, 1, 3) in {(x[0], x[1], x[2]) for x in again} or cursor == 0, (
        "segments_changed must report a segment whose status changed after the cursor"
    )

    # An erasure keeps a segment's redacted form in place: same row, other bytes.
    before = s.segment_index()
    with s.transaction():
        s.replace_segment_data(W1, 4, b"redacted form")
        s.replace_segment_data(W1, 2, b"no segment starts here")  # nothing happens
    assert s.segment_data([(W1, 4)]) == [b"redacted form"], "replace_segment_data: the bytes"
    assert s.segment_data([(W1, 1)]) == [by_key[W1, 1]], "replace_segment_data: one segment"
    after = {tuple(x)[:6] for x in s.segment_index()}
    assert after == {tuple(x)[:6] for x in before}, "replace_segment_data: hash, seqs, status"
    assert (W1, 4, len(b"redacted form")) in {(x[0], x[1], x[6]) for x in s.segment_index()}, (
        "replace_segment_data: the index's size follows the bytes"
    )
    with s.transaction():
        s.replace_segment_data(W1, 4, by_key[W1, 4])

    def duplicate() -> None:
        with s.transaction():
            s.add_segments([_seg(W2, 1, 1)])

    _expect_error(duplicate, "a second segment at one (stream, first_seq)")

    def twice_in_one_call() -> None:
        with s.transaction():
            s.add_segments([_seg(W2, 7, 7), _seg(W2, 7, 7)])

    _expect_error(twice_in_one_call, "two segments at one position in one call")
    assert len(s.segment_index()) == 4

    with s.transaction():
        s.remove_segments([(W2, 1), (W2, 99)])  # an absent one is ignored
    assert [tuple(x)[:2] for x in s.segment_index()] == [(W1, 1), (W1, 4), (W3, 1)], (
        "remove_segments drops exactly the segments named"
    )
    _expect_error(lambda: s.segment_data([(W2, 1)]), "segment_data of a removed segment")
    try:
        with s.transaction():
            s.remove_segments([(W3, 1)])
            raise _Boom
    except _Boom:
        pass
    assert len(s.segment_index()) == 3, "a rolled-back remove_segments removes nothing"
    with s.transaction():
        s.add_segments([_seg(W2, 1, 1)])  # the position is free again
    assert s.segment_data([(W2, 1)]) == [_seg(W2, 1, 1).data]


def _check_streams(s: Store) -> None:
    """Segments of several streams of one origin: each kept, read, re-statused and
    dropped apart from the others at the same seqs; streams read back as written (a
    format-2 row as ``whole(origin)``), ordered by origin, then collection and prefix
    as UTF-8 bytes."""
    streams = [W1, *PARTITIONED, W2]
    rows = [_seg(x, first, first + 1) for x in streams for first in (1, 3)]
    with s.transaction():
        s.add_segments(list(reversed(rows)))
    expected = sorted(
        (
            (r.stream, r.first_seq, r.last_seq, r.hash, r.prev_hash, r.status, len(r.data))
            for r in rows
        ),
        key=_stream_order,
    )
    index = s.segment_index()
    assert [tuple(x) for x in index] == expected, (
        "segment_index: ordered by origin, collection and prefix (as UTF-8 bytes), first_seq"
    )
    for x in index:
        stream = x[0]
        assert type(stream) is Stream and type(stream.partition) is Partition, (
            "segment_index: every row names its stream as a Stream"
        )
        assert type(stream.origin) is bytes and type(stream.collection) is str
        assert stream == whole(stream.origin) or stream.collection, "WHOLE reads as WHOLE"
    assert [tuple(x) for x in s.segment_index_of([O1])] == [
        x for x in expected if x[0].origin == O1
    ], "segment_index_of: every stream of the origins asked"
    keys = [(x, 3) for x in reversed(streams)]
    assert s.segment_data(keys) == [_seg(x, 3, 4).data for x, _ in keys], (
        "segment_data: each stream's own segment at one seq"
    )
    near = s.segment_index_near([(PARTITIONED[0], 3, 3)])
    assert {tuple(x)[:2] for x in near} == {(PARTITIONED[0], 1), (PARTITIONED[0], 3)}, (
        "segment_index_near: only the stream asked, not its origin's others"
    )
    with s.transaction():
        s.set_segment_status(PARTITIONED[1], 3, "fork: test")
        s.remove_segments([(PARTITIONED[0], 1)])
    after = {tuple(x)[:2]: x[5] for x in s.segment_index()}
    assert after[PARTITIONED[1], 3] == "fork: test"
    assert [k for k, v in after.items() if v != "applied"] == [(PARTITIONED[1], 3)], (
        "set_segment_status: one stream's segment, not the others' at that seq"
    )
    assert (PARTITIONED[0], 1) not in after and len(after) == len(rows) - 1, (
        "remove_segments: one stream's segment, not the others' at that seq"
    )
    with s.transaction():
        s.add_segments([_seg(PARTITIONED[1], 5, 5)])
    _expect_error(
        lambda: _add_in_transaction(s, _seg(PARTITIONED[1], 5, 5)),
        "a second segment at one (stream, first_seq)",
    )
    # The outbox, per own stream's partition.
    parts = [WHOLE, *(x.partition for x in PARTITIONED)]
    with s.transaction():
        for i, part in enumerate(parts):
            s.add_outbox(part, [(2, b"b%d" % i), (1, b"a%d" % i)])
    for i, part in enumerate(parts):
        assert s.outbox(part) == [(1, b"a%d" % i), (2, b"b%d" % i)], "outbox: per partition"
        assert s.outbox_page(part, 1, 5) == [(2, b"b%d" % i)]
    with s.transaction():
        s.clear_outbox(parts[1], 2)
        s.clear_outbox(WHOLE, 1)
    assert s.outbox(parts[1]) == [] and s.outbox(parts[2]) == [(1, b"a2"), (2, b"b2")], (
        "clear_outbox: one partition's rows, not the others'"
    )
    assert s.outbox() == [(2, b"b0")], "outbox(): format 2's WHOLE partition"
    assert s.outbox_partitions() == sorted(p for p in parts if p != parts[1]), (
        "outbox_partitions: those holding rows, sorted"
    )
    with s.transaction():
        for part in parts:
            s.clear_outbox(part, 9)
    assert [s.outbox(part) for part in parts] == [[]] * len(parts)
    assert s.outbox_partitions() == [], "outbox_partitions: none once cleared"


def _add_in_transaction(s: Store, row: SegmentRow) -> None:
    with s.transaction():
        s.add_segments([row])


def _stream_order(row: tuple[Any, ...]) -> tuple[bytes, bytes, bytes, int]:
    stream = row[0]
    return stream.origin, stream.collection.encode(), stream.prefix.encode(), row[1]


def _check_outbox(s: Store) -> None:
    assert s.outbox() == []
    with s.transaction():
        s.add_outbox(WHOLE, [(3, b"c"), (1, b"a")])
        s.add_outbox(WHOLE, [(2, b"b")])
    assert s.outbox() == [(1, b"a"), (2, b"b"), (3, b"c")], "outbox: ordered by seq"

    def duplicate() -> None:
        with s.transaction():
            s.add_outbox(WHOLE, [(2, b"x")])

    _expect_error(duplicate, "an outbox entry at a held seq")
    with s.transaction():
        s.clear_outbox(WHOLE, 2)
    assert s.outbox() == [(3, b"c")], "clear_outbox(n) removes seqs <= n"
    with s.transaction():
        s.clear_outbox(WHOLE, 10)
    assert s.outbox() == []


def _check_changes(s: Store) -> None:
    parents = (ChangeId(O1, 1), ChangeId(O2, 7))
    held = [
        _change(O3, 2, parents=parents),
        _change(O1, 1),
        _change(O2, 7, delete=True),
        _change(O1, 2, "é"),
        _change(O1, 3, "k", collection="other"),
    ]
    with s.transaction():
        s.add_changes(held)
        s.add_changes([])
        # Already held: ignored, even with different content (the first one stays).
        s.add_changes([_change(O1, 1, hlc=5), _change(O1, 9, "new")])
    got = s.changes_for("c", "k")
    assert got == [held[1], held[2], held[0]], "changes_for: the record's changes by (origin, seq)"
    assert got[2].parents == parents and got[1].fields is None and got[0].parents == ()
    assert s.changes_for("c", "é") == [held[3]]
    assert s.changes_for("c", "absent") == []
    many = s.changes_for_many([("c", "k"), ("other", "k"), ("c", "absent"), ("c", "new")])
    assert many == {
        ("c", "k"): got,
        ("other", "k"): [held[4]],
        ("c", "absent"): [],
        ("c", "new"): [_change(O1, 9, "new")],
    }, "changes_for_many must answer like changes_for, for every key asked"
    with s.transaction():
        s.remove_changes([held[0], _change(O1, 9, "new"), _change(O3, 99)])
    assert s.changes_for("c", "k") == got[:2], "remove_changes takes exactly those back"
    assert s.changes_for("c", "new") == []
    with s.transaction():
        s.add_changes([held[0]])
    with s.transaction():
        s.put_records([_row("k"), _row("é", gone=True)])
    assert s.existing([("c", "k"), ("c", "é"), ("c", "x"), ("other", "k")]) == {
        ("c", "k"),
        ("c", "é"),
    }, "existing: the asked records held (deleted ones too)"
    assert s.existing([]) == set()


def _check_records(s: Store) -> None:
    rows = [_row(k, conflict=i % 3 == 0, gone=i % 4 == 1) for i, k in enumerate(TRICKY_KEYS)]
    rows += [_row("k", "b"), _row("k", "ä", conflict=True), _row("k", "B")]
    with s.transaction():
        s.put_records(rows[:5])
        s.put_records(rows[5:])
    for r in rows:
        assert s.get_record(r.collection, r.key) == r, f"get_record({r.collection!r}, {r.key!r})"
    assert s.get_record("c", "absent") is None
    order = sorted(rows, key=lambda r: (r.collection.encode(), r.key.encode()))
    assert list(s.iter_records()) == order, "iter_records: ordered by UTF-8 bytes"
    assert list(s.iter_records("c")) == [r for r in order if r.collection == "c"]
    assert list(s.iter_records("none")) == []
    assert s.conflicted() == [(r.collection, r.key) for r in order if r.conflict]
    replaced = RecordRow("c", "a", b"\x81\xa1z\x01", b"\x90", True)
    with s.transaction():
        s.put_records([replaced._replace(conflict=False), replaced])  # the last row wins
    assert s.get_record("c", "a") == replaced, "put_records replaces the whole row"
    with s.transaction():
        s.put_records([replaced._replace(conflict=False)])
    assert ("c", "a") not in s.conflicted()


def _check_locks(s: Store) -> None:
    with s.transaction():
        s.put_records([_row("held")])
    with s.transaction():
        s.lock_origins([O2, O1, O1])
        s.lock_peers([O2, O1, O1])  # repeated and unsorted: taken once each, in order
        s.lock_records([("c", "new"), ("c", "held"), ("c", "new")])
        assert s.existing([("c", "new"), ("c", "held")]) == {("c", "held")}, (
            "lock_records must not make a record exist"
        )
        s.put_records([_row("new")])
    with s.transaction():
        s.lock_records([("c", "fresh"), ("c", "held")])
        left = s.add_new_records([_row("fresh"), RecordRow("c", "held", None, b"\x90", True)])
    assert left == [("c", "held")], "add_new_records: writes new records, returns the others"
    assert s.get_record("c", "held") == _row("held"), "add_new_records leaves existing ones"
    assert s.get_record("c", "fresh") == _row("fresh")
    with s.transaction():
        other = RecordRow("c", "held", b"\x80", b"\x91", False)
        assert s.add_new_records([_row("fresh2"), other]) == [("c", "held")]
    with s.transaction():
        s.lock_records([("c", "never-written")])
    assert s.get_record("c", "never-written") is None
    assert [(r.collection, r.key) for r in s.iter_records()] == [
        ("c", "fresh"),
        ("c", "fresh2"),
        ("c", "held"),
        ("c", "new"),
    ]
    assert s.existing([("c", "never-written")]) == set()


def _check_first_changes(s: Store) -> None:
    from ..encoding import packb

    def alone(c: Change) -> RecordRow:
        return RecordRow(c.collection, c.key, c.fields, packb([[c.origin, c.seq]]), False)

    held = _change(O3, 1, "held")
    with s.transaction():
        s.add_changes([held])
        s.put_records([alone(held)])
    first, other, late = _change(O1, 1, "new"), _change(O2, 1, "held"), _change(O2, 2, "new")
    with s.transaction():
        left = s.add_first_changes([first, other])
    assert left == [("c", "held")], "add_first_changes: like add_new_records"
    assert s.changes_for("c", "new") == [first], "add_first_changes stores the changes"
    assert s.changes_for("c", "held") == [other, held]
    assert s.get_record("c", "new") == alone(first)
    assert s.get_record("c", "held") == alone(held)
    assert s.existing([("c", "new")]) == {("c", "new")}
    with s.transaction():
        s.add_changes([late])
        s.put_records([RecordRow("c", "new", late.fields, packb([[O2, 2]]), False)])
    assert s.changes_for("c", "new") == [first, late], "a replaced row keeps its changes"
    with s.transaction():
        s.remove_changes([first])
    assert s.changes_for("c", "new") == [late]
    assert s.changes_for_many([("c", "new"), ("c", "held")]) == {
        ("c", "new"): [late],
        ("c", "held"): [other, held],
    }


def _check_peers(s: Store) -> None:
    assert s.peers() == []
    with s.transaction():
        s.set_peer(O2, 10, b"k10", b"r10")
        s.set_peer(O1, 5, b"k5", b"r5")
        s.set_peer(O2, 9, b"k9", b"r9")  # older: ignored
        s.set_peer(O2, 10, b"kx", b"rx")  # not newer: ignored
    assert s.peers() == [(O1, 5, b"k5", b"r5"), (O2, 10, b"k10", b"r10")], (
        "peers: newest receipt per peer wins, ordered by peer"
    )
    with s.transaction():
        s.set_peer(O1, 6, b"k6", b"r6")
    assert s.peers()[0] == (O1, 6, b"k6", b"r6")


def _check_nonces(s: Store) -> None:
    a, b = b"\x00" * 40, b"\xff" * 40
    assert s.record_nonce(a, 2000, 1000), "nonces: a new nonce is recorded"
    assert not s.record_nonce(a, 9000, 1500), "nonces: a recorded nonce is refused (replay)"
    assert not s.record_nonce(a, 9000, 2000), "nonces: still refused at its expiry"
    assert s.record_nonce(b, 2000, 1500), "nonces: another nonce is recorded"
    try:
        with s.transaction():
            assert s.record_nonce(b"\x01" * 40, 5000, 1500)
            raise _Boom
    except _Boom:
        pass
    assert s.record_nonce(b"\x01" * 40, 5000, 1500), "nonces: a rolled-back record is gone"
    assert s.record_nonce(a, 9000, 2001), "nonces: an expired record no longer counts"
    assert not s.record_nonce(b"\x01" * 40, 9000, 4000), "nonces: refused until expiry"
    assert not s.record_nonce(a, 9500, 8000), "nonces: ...and the new record holds"
    for i in range(50):  # many at once, far apart in time: old ones may be swept
        assert s.record_nonce(b"n" + i.to_bytes(39, "big"), 10**6 * (i + 1), 10**6 * i)
    assert not s.record_nonce(b"n" + (49).to_bytes(39, "big"), 10**9, 49 * 10**6 + 1)


def _check_blob_refs(s: Store) -> None:
    a, b, gone = REFS
    assert s.blob_refs() == [] and s.missing_blob_refs() == []
    with s.transaction():  # every way a record is written
        s.put_records([_ref_row("p", a, b), _row("plain"), _ref_row("p2", gone)])
        other = _ref_row("p", gone, heads=b"\x90")  # p exists: left as it is
        assert s.add_new_records([_ref_row("n", b), other]) == [("c", "p")]
        first = Change(O1, 1, 1 << 40, "d", "f", PUT, _ref_fields(a), ())
        taken = Change(O1, 2, 1 << 40, "c", "n", PUT, _ref_fields(gone), ())
        assert s.add_first_changes([first, taken]) == [("c", "n")]
    if not s.shared:
        with s.transaction():
            assert s.try_first_change(Change(O2, 1, 1 << 40, "d", "t", PUT, _ref_fields(b), ()))
    _same_as_scan(s, "after each way of writing records")
    got = {
        (c, k): {r for cc, kk, r in s.blob_refs() if (cc, kk) == (c, k)}
        for c, k, _ in s.blob_refs()
    }
    assert got[("c", "p")] == {a, b} and got[("c", "n")] == {b} and got[("d", "f")] == {a}
    assert {r for _, _, r in s.missing_blob_refs()} == {a, b, gone}, "nothing held: all missing"
    try:
        with s.transaction():
            s.put_records([_ref_row("p", gone), _row("p2"), _ref_row("q", a)])
            raise _Boom
    except _Boom:
        pass
    assert {r for _, _, r in s.blob_refs("c", "p")} == {a, b}, "a rolled back write: index kept"
    _same_as_scan(s, "after a rolled back write")
    try:
        blobs = s.blobs()
    except UsageError:
        blobs = None
    if blobs is not None:  # held blobs are not missing; dropped ones are again
        blobs.put(a, io.BytesIO(BLOB_BYTES[0]), 1)
        blobs.put(b, io.BytesIO(BLOB_BYTES[1]), 1)
        assert {r for _, _, r in s.missing_blob_refs()} == {gone}, "held blobs are not missing"
        _same_as_scan(s, "after putting blobs")
        blobs.delete([b.hash])
        assert {r for _, _, r in s.missing_blob_refs()} == {b, gone}, "a dropped blob is missing"
        _same_as_scan(s, "after dropping a blob")
    with s.transaction():  # replaced, deleted, a conflict row: the index follows each
        s.put_records([_ref_row("p", gone), _row("p2", gone=True), _ref_row("p", b)])
        s.put_records([RecordRow("d", "f", _ref_fields(a, b), b"\x90", True)])
    assert {r for _, _, r in s.blob_refs("c", "p")} == {b}, "of two rows, the last wins"
    assert s.blob_refs("c", "p2") == [], "a deleted record references nothing"
    _same_as_scan(s, "after replacing and deleting records")
    if blobs is not None:
        assert {r for c, k, r in s.missing_blob_refs()} == {b}
    try:
        s.blob_refs(key="p")
    except UsageError:
        pass
    else:
        raise AssertionError("blob_refs: a key without its collection is refused")


# -- random operation sequences against the reference ------------------------------------


def _observe(s: Store) -> tuple[Any, ...]:
    keys = [("c", k) for k in TRICKY_KEYS[:6]]
    return (
        [tuple(x) for x in s.segment_index()],
        s.outbox(),
        s.outbox(PARTITIONED[0].partition),
        s.changes_for_many(keys),
        list(s.iter_records()),
        s.conflicted(),
        s.peers(),
        s.existing(keys),
        s.get_meta("m"),
        s.blob_refs(),
        s.missing_blob_refs(),
    )


def _random_op(rng: random.Random, step: int) -> Callable[[Store], None]:
    origin = rng.choice([O1, O2, O3])
    stream = rng.choice([W1, W2, W3, *PARTITIONED[:2]])
    part = rng.choice([WHOLE, PARTITIONED[0].partition])
    key = rng.choice(TRICKY_KEYS[:6])
    kind = rng.randrange(9)
    if kind == 0:
        first = rng.randrange(1, 6)
        last = first + rng.randrange(3)
        return lambda s: s.add_segments([_seg(stream, first, last)])
    if kind == 1:
        seqs = rng.sample(range(1, 12), 3)
        return lambda s: s.add_changes([_change(origin, q, key) for q in seqs])
    if kind == 2:
        rows = [_row(rng.choice(TRICKY_KEYS[:6]), conflict=rng.random() < 0.3) for _ in range(3)]
        if rng.random() < 0.5:  # records that reference blobs, and replace references
            rows[rng.randrange(3)] = _ref_row(key, *rng.sample(REFS, rng.randrange(1, 3)))
        return lambda s: s.put_records(rows)
    if kind == 3:
        created = rng.randrange(20)
        return lambda s: s.set_peer(origin, created, b"k%d" % step, b"r%d" % step)
    if kind == 4:
        seq = rng.randrange(1, 8)
        return lambda s: s.add_outbox(part, [(seq, b"o%d" % step)])
    if kind == 5:
        upto = rng.randrange(8)
        return lambda s: s.clear_outbox(part, upto)
    if kind == 6:
        status = rng.choice(["applied", "fork: x", "clock: y"])
        first = rng.randrange(1, 6)
        return lambda s: s.set_segment_status(stream, first, status)
    if kind == 7:
        firsts = rng.sample(range(1, 6), 2)
        return lambda s: s.remove_segments([(stream, f) for f in firsts])
    value = str(step).encode()
    return lambda s: s.set_meta("m", value)


def _check_against_reference(s: Store, seed: int) -> None:
    rng = random.Random(seed)
    ref = MemoryStore()
    for step in range(40):
        ops = [_random_op(rng, step) for _ in range(rng.randrange(1, 4))]
        fail = rng.random() < 0.25
        outcomes = []
        for store in (ref, s):
            try:
                with store.transaction():
                    for op in ops:
                        op(store)
                    if fail:
                        raise _Boom
                outcomes.append("ok")
            except _Boom:
                outcomes.append("rolled back")
            except StorageError:
                outcomes.append("store error")
        if fail:  # a store may report a failed write at the statement or at commit
            outcomes = ["failed" if o == "store error" else o for o in outcomes]
            outcomes = ["failed" if o == "rolled back" else o for o in outcomes]
        assert outcomes[0] == outcomes[1], f"seed {seed} step {step}: {outcomes} (reference first)"
        assert _observe(s) == _observe(ref), f"seed {seed} step {step}: differs from MemoryStore"
        assert s.blob_refs() == Store.blob_refs(s), f"seed {seed} step {step}: index != scan"
    ref.close()


# -- replicas on the store and on SQLite see the same bundles ------------------------------


def _site_bundles() -> list[bytes]:
    from .. import policies
    from ..clock import wall_millis
    from ..identity import Identity
    from ..knowledge import Knowledge
    from ..replica import Replica

    pol = {
        "residents": policies.LastWriterWins(),
        "doses": policies.FirstWriterWins(),
        "addresses": policies.MultiValue(),
    }
    a = Replica.open(":memory:", identity=Identity.generate(label="a"), policies=pol)
    b = Replica.open(":memory:", identity=Identity.generate(label="b"), policies=pol)
    ahead = Replica.open(
        ":memory:",
        identity=Identity.generate(label="ahead"),
        policies=pol,
        wall=lambda: wall_millis() + 3 * 24 * 3600 * 1000,
    )
    # One key, two histories (a site restored from a backup): t1 holds seqs 1, 2, 3 in
    # segments [1], [2], [3]; t2 took [1] and then wrote its own 2..3 as one segment.
    # Only [1], [3] and t2's [2-3] travel, so the fork never lands on a held position.
    twin = Identity.generate(label="twin")
    t1 = Replica.open(":memory:", identity=twin, policies=pol)
    t2 = Replica.open(":memory:", identity=twin, policies=pol)
    t1.put("residents", "35190002", {"name": "twin"})
    fork = t1.pack()
    for bundle in fork:
        t2.apply(bundle)
    t1.put("residents", "35190002", {"name": "twin one"})
    t1.pack()
    t1.put("residents", "35190004", {"name": "twin one"})
    residents = Stream(twin.public_key, Partition("residents"))
    fork += t1.pack(Knowledge({residents: [(1, 2)]}))
    t2.put("residents", "35190002", {"name": "twin two"})
    t2.put("residents", "35190004", {"name": "twin two"})
    fork += t2.pack(Knowledge({residents: [(1, 1)]}))
    bundles: list[bytes] = list(fork)
    for i in range(30):
        a.put("residents", f"35190{i:03d}", {"name": f"A{i}", "n": i})
        if i % 3 == 0:
            b.put("residents", f"35190{i:03d}", {"village": "Kare"})
        if i % 5 == 0:
            a.put("doses", f"35190{i:03d}/1", {"vaccine": "X"})
            b.put("doses", f"35190{i:03d}/1", {"vaccine": "Y"})
        if i % 4 == 0:
            a.put("addresses", f"k{i}", {"street": "a"})
            b.put("addresses", f"k{i}", {"street": "b"})
    bundles += a.pack(max_bytes=4096)
    for bundle in a.pack():
        b.apply(bundle)
    b.delete("residents", "35190003")
    b.put("residents", "35190006", {"name": "B6"})
    b.put("résidents", "é\u0301", {"x": 1})
    bundles += b.pack(max_bytes=4096)
    ahead.put("residents", "35190001", {"name": "from the future"})
    bundles += ahead.pack()
    for r in (a, b, ahead, t1, t2):
        r.close()
    return bundles


def _check_replica_equivalence(make_store: MakeStore) -> None:
    from .. import policies
    from ..identity import Identity
    from ..replica import Replica

    pol = {
        "residents": policies.LastWriterWins(),
        "doses": policies.FirstWriterWins(),
        "addresses": policies.MultiValue(),
    }
    bundles = _site_bundles()
    centre = Identity.generate(label="centre")
    order = bundles + random.Random(7).sample(bundles, len(bundles))  # shuffled duplicates
    from ..stores.sqlite import SQLiteStore

    store, reference_store = make_store(), SQLiteStore(":memory:")
    tested = Replica(store, centre, pol)
    reference = Replica(reference_store, centre, pol)
    try:
        for bundle in order:
            got, want = tested.apply(bundle), reference.apply(bundle)
            assert (got.applied, got.duplicates, got.quarantined, got.conflicts) == (
                want.applied,
                want.duplicates,
                want.quarantined,
                want.conflicts,
            ), "apply reports differ between the store and SQLite"
        assert tested.state_digest() == reference.state_digest(), "state_digest differs from SQLite"
        assert tested.knowledge() == reference.knowledge(), "knowledge differs from SQLite"
        assert tested.quarantined() == reference.quarantined(), "quarantine differs from SQLite"
        assert len(tested.quarantined()) >= 2, "the check must exercise quarantine (fork, clock)"
        assert [(c.collection, c.key, c.current) for c in tested.conflicts()] == [
            (c.collection, c.key, c.current) for c in reference.conflicts()
        ], "conflicts differ from SQLite"
        assert tested.conflicts(), "the check must exercise conflicts"
        assert sorted(tested.receipts()) == sorted(reference.receipts())
        before = tested.state_digest()
        broken = bytearray(bundles[0])
        broken[len(broken) // 2] ^= 0x40
        try:
            tested.apply(bytes(broken))
        except RemoteDataError:
            pass
        else:
            raise AssertionError("a corrupted bundle must be refused")
        assert tested.state_digest() == before, "a refused bundle must change nothing"
        copy = Replica.open(":memory:", identity=Identity.generate(label="copy"), policies=pol)
        for bundle in tested.pack(max_bytes=8192):
            copy.apply(bundle)
        assert copy.state_digest() == reference.state_digest(), (
            "bundles packed from the store must carry its whole state"
        )
        copy.close()
        _check_scope_shrink((store, tested), (reference_store, reference), bundles)
    finally:
        tested.close()
        reference.close()


def _check_scope_shrink(
    tested: tuple[Store, Replica], reference: tuple[Store, Replica], bundles: list[bytes]
) -> None:
    """Reopened with a smaller scope (``doses`` leaves), the replica on the store holds
    what the one on SQLite holds: the full state and knowledge restricted to it
    (``Store.drop_partition`` through the replica), and skips what is outside it."""
    from ..replica import Replica
    from ..scope import Scope

    kept = Scope.whole("residents", "addresses", "_trust")
    (store, before), (ref_store, ref_before) = tested, reference
    want, known = ref_before.state_digest(scope=kept), ref_before.knowledge().restrict(kept)
    got = Replica(store, before.identity, before.policies, scope=kept)
    ref = Replica(ref_store, ref_before.identity, ref_before.policies, scope=kept)
    assert got.scope == ref.scope == kept
    assert got.state_digest() == ref.state_digest() == want, "a shrink keeps exactly the scope"
    assert got.knowledge() == ref.knowledge() == known, "a shrink's knowledge is restricted"
    assert list(store.iter_records("doses")) == [], "a shrink removes the records that left"
    skipped = 0
    for bundle in bundles:
        a, b = got.apply(bundle), ref.apply(bundle)
        assert (a.applied, a.duplicates, a.out_of_scope) == (
            b.applied,
            b.duplicates,
            b.out_of_scope,
        ), "out-of-scope segments are skipped alike"
        skipped += a.out_of_scope
    assert skipped, "the check must exercise out-of-scope segments"
    assert got.state_digest() == want and got.knowledge() == known


#: Keys of collection "c" under a rule of L = 2, by whether they lie in ("c", "ab")
#: (multi-byte prefixes too: the rule counts code points, the stores may count bytes).
DROP_KEYS = {
    "ab": ["ab", "abc", "ab\x00", "ab\U0001f600"],
    "a": ["a"],  # shorter than L: a partition of its own
    "\u00e9\U0001f600": ["\u00e9\U0001f600", "\u00e9\U0001f600z"],
    # the ends of the code points, where a range scan's upper bound must not fall short
    "a\U0010ffff": ["a\U0010ffff", "a\U0010ffff\U0010ffff"],
    "x\ud7ff": ["x\ud7ff", "x\ud7ff\ue000"],
}
KEPT_KEYS = ["ac", "Ab", "b", "\u00e9", "\u00e9\u00e9", "a\U0001f600", "x\ue000", "a\U0010fffe"]


def _check_drop_partition(s: Store) -> None:
    """``drop_partition`` (a scope shrank) removes every origin's segments of the
    partition, its outbox rows, and the records that lie in it under the rule's L (with
    their changes and blob references), and nothing else; all or nothing."""
    keys = [k for ks in DROP_KEYS.values() for k in ks] + KEPT_KEYS
    parts = {p: Partition("c", p) for p in [*DROP_KEYS, "ac", "b"]}
    segs = [_seg(Stream(o, parts[p]), 1, 2) for o in (O1, O2) for p in parts]
    other = _seg(Stream(O1, Partition("d", "ab")), 1, 1)  # same prefix, other collection
    changes = [_change(O1, i + 1, k) for i, k in enumerate(keys)]
    changes += [_change(O2, 1, k, collection="d") for k in keys]
    with s.transaction():
        s.add_segments([*segs, other])
        s.add_outbox(parts["ab"], [(1, b"x")])
        s.add_outbox(parts["ac"], [(1, b"y")])
        s.add_changes(changes[: len(keys)])
        s.add_first_changes(changes[len(keys) :])  # records of "d" with their first change
        s.put_records([_ref_row(k, REFS[0]) for k in keys])
    before = (s.segment_index(), s.blob_refs(), list(s.iter_records()))
    try:
        with s.transaction():
            s.drop_partition(parts["ab"], 2)
            raise _Boom
    except _Boom:
        pass
    assert (s.segment_index(), s.blob_refs(), list(s.iter_records())) == before, (
        "drop_partition: rolled back with its transaction"
    )
    with s.transaction():
        for prefix in DROP_KEYS:
            s.drop_partition(parts[prefix], 2)
    gone = {k for ks in DROP_KEYS.values() for k in ks}
    held = {r[0].prefix for r in s.segment_index() if r[0].collection == "c"}
    assert held == {"ac", "b"}, "drop_partition: every origin's segments of the partition"
    assert [r[0] for r in s.segment_index() if r[0].collection == "d"] == [other.stream], (
        "drop_partition: another collection's partition with that prefix is kept"
    )
    assert s.outbox(parts["ab"]) == [] and s.outbox(parts["ac"]) == [(1, b"y")], (
        "drop_partition: the partition's outbox rows, no other's"
    )
    assert s.outbox_partitions() == [parts["ac"]]
    records = {(r.collection, r.key) for r in s.iter_records()}
    assert records == {("c", k) for k in KEPT_KEYS} | {("d", k) for k in keys}, (
        "drop_partition: the records whose key lies in the partition (key[:L] == prefix)"
    )
    for k in keys:
        want = 0 if k in gone else 1
        assert len(s.changes_for("c", k)) == want, f"drop_partition: changes of {k!r}"
        assert len(s.changes_for("d", k)) == 1, "drop_partition: another collection's changes"
    assert {k for c, k, _ in s.blob_refs()} == set(KEPT_KEYS), (
        "drop_partition: the blob references of the records dropped"
    )
    _same_as_scan(s, "after drop_partition")
    with s.transaction():
        s.drop_partition(Partition("d", ""), 0)  # L = 0: the whole collection
    assert {r.collection for r in s.iter_records()} == {"c"}
    assert all(not s.changes_for("d", k) for k in keys), "drop_partition: L = 0, first changes"
