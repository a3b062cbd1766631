"""Changes: one write by one site, and their wire encoding.

A change is identified by ``(origin, seq)``. It names the record it writes, the heads of
that record its writer had seen (its causal parents), an HLC timestamp, and either the
canonical encoding of the fields it sets (a put) or nothing (a delete, a tombstone).
Fields stay encoded bytes until a merge needs their values.

On the wire the changes of a segment travel as columns (docs/spec.md §4), not as one
array per change: field values of one name sit next to each other, HLCs as deltas, keys
front-coded. That is what makes a segment compress to a fraction of the row form, and
it lets a receiver decode a segment with a few C-level passes instead of a Python loop
per change and per field. ``encode_changes``/``decode_changes`` convert between the
columns and ``Change`` tuples, whose fields are the canonical map bytes of §4.1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import accumulate, repeat
from operator import add, itemgetter, le
from typing import Any, NamedTuple, TypeAlias

import msgpack

from .clock import MAX_HLC
from .encoding import decode_fields, packb
from .errors import BundleFormatError, LimitExceededError, StorageError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .unpack import unpack

__all__ = ["DELETE", "PUT", "Change", "ChangeId", "decode_changes", "encode_changes"]

PUT = 0
DELETE = 1
MAX_U64 = (1 << 64) - 1


class ChangeId(NamedTuple):
    origin: bytes
    seq: int


class Change(NamedTuple):
    origin: bytes
    seq: int
    hlc: int
    collection: str
    key: str
    op: int
    fields: bytes | None
    parents: tuple[ChangeId, ...] = ()

    @property
    def id(self) -> ChangeId:
        return ChangeId(self.origin, self.seq)

    @property
    def stamp(self) -> tuple[int, bytes, int]:
        """The total order used to break ties: HLC, then origin, then seq."""
        return (self.hlc, self.origin, self.seq)

    @property
    def is_delete(self) -> bool:
        return self.op == DELETE

    def values(self) -> dict[str, Any]:
        return decode_fields(self.fields) if self.fields is not None else {}

    def to_row(self) -> bytes:
        """The change alone, as a replica keeps its own unsealed changes (not wire format)."""
        return packb(
            [
                self.hlc,
                self.collection,
                self.key,
                self.op,
                self.fields,
                [[p.origin, p.seq] for p in self.parents],
            ]
        )

    @classmethod
    def from_row(cls, origin: bytes, seq: int, row: bytes) -> Change:
        """A change from ``to_row``'s bytes (the replica's own, not from elsewhere)."""
        try:
            hlc, collection, key, op, fields, parents = msgpack.unpackb(row, raw=False)
            ids = tuple(ChangeId(o, s) for o, s in parents)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"not a change row ({type(exc).__name__})") from exc
        return cls(origin, seq, hlc, collection, key, op, fields, ids)


# -- the column encoding of a segment's changes (docs/spec.md §4) ----------------------

#: Nested maps deeper than this stay whole values in one column instead of becoming
#: columns of their own; a decoder refuses shapes nested deeper.
MAX_SHAPE_DEPTH = 16
#: Items of the changes array, in order.
CHANGE_COLUMNS = 9

Shape: TypeAlias = tuple[tuple[str, "Shape | None"], ...]
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
_pack = _PACKER.pack
_new_change = partial(tuple.__new__, Change)  # Change(*row) without the Python-level __new__


def _shape(value: dict[str, Any], depth: int = 1) -> Shape:
    return tuple(
        (k, _shape(v, depth + 1) if type(v) is dict and depth < MAX_SHAPE_DEPTH else None)
        for k, v in value.items()
    )


def _leaves(value: dict[str, Any], shape: Shape, out: list[Any]) -> None:
    for name, sub in shape:
        if sub is None:
            out.append(value[name])
        else:
            _leaves(value[name], sub, out)


def _shape_wire(shape: Shape) -> list[Any]:
    return [name if sub is None else [name, _shape_wire(sub)] for name, sub in shape]


def _leaf_count(shape: Shape) -> int:
    return sum(1 if sub is None else _leaf_count(sub) for _, sub in shape)


_STR_ONLY = {str}
#: Entries of a dictionary-coded column's table: its indexes are one byte each.
MAX_TABLE = 256
#: Memory of one rebuilt field map besides its bytes: a bytes object's header, its slot.
FIELDS_OBJECT_COST = 56


def _column(values: list[Any]) -> list[Any]:
    """A column as ``[nil, values]``, or ``[table, indexes]`` for a column of repeated
    strings (dictionary coding: each row is then one byte before compression, and the
    receiver gets it with one C-level pass)."""
    if values and set(map(type, values)) == _STR_ONLY:
        table = dict.fromkeys(values)  # in order of first appearance
        if len(table) <= MAX_TABLE and len(table) * 2 <= len(values):
            index = {v: i for i, v in enumerate(table)}
            return [list(table), bytes(map(index.__getitem__, values))]
    return [None, values]


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


#: Where a shape of two levels holds its maps: (position, the map's names), in order.
_Nesting = tuple[tuple[int, tuple[str, ...]], ...]


def _nesting(shape: Shape) -> _Nesting | None:
    """The nesting of a shape whose nested maps hold no maps (empty: no nested maps),
    or None for a deeper shape."""
    out = []
    for position, (_, sub) in enumerate(shape):
        if sub is not None:
            if any(inner is not None for _, inner in sub):
                return None
            out.append((position, tuple(name for name, _ in sub)))
    return tuple(out)


def _nested_leaves(value: dict[str, Any], nesting: _Nesting) -> list[Any] | None:
    """``_leaves`` of a value of the two-level shape ``nesting`` describes, or None if
    the value has another shape (the names of the top level alone do not say)."""
    items = list(value.values())
    if list(map(type, items)).count(dict) != len(nesting):
        return None
    leaves: list[Any] = []
    start = 0
    for position, names in nesting:
        sub = items[position]
        if type(sub) is not dict or tuple(sub) != names:
            return None
        inner = list(sub.values())
        if dict in map(type, inner):
            return None
        leaves += items[start:position]
        leaves += inner
        start = position + 1
    leaves += items[start:]
    return leaves


def encode_changes(
    changes: Sequence[Change], values: Sequence[dict[str, Any] | None] | None = None
) -> bytes:
    """The encoded changes of a segment (before compression): canonical msgpack columns.

    ``values``: each change's fields as ``decode_fields`` gives them back (None for a
    delete), when the caller has them already (a writer sealing what it just wrote):
    then no field bytes are decoded. The bytes are the same either way.
    """
    n = len(changes)
    if values is None:
        values = [None if c.fields is None else decode_fields(c.fields) for c in changes]
    elif len(values) != n:
        raise UsageError("encode_changes: one value per change")
    hlcs = [c.hlc for c in changes]
    collections: dict[str, int] = {}
    collection_of = [collections.setdefault(c.collection, len(collections)) for c in changes]
    key_prefix: list[int] = []
    key_suffix: list[str] = []
    previous_key = ""
    for c in changes:
        k = c.key
        m = _common_prefix(previous_key, k)
        key_prefix.append(m)
        key_suffix.append(k[m:])
        previous_key = k
    shapes: dict[Shape, int] = {}
    flat: dict[tuple[str, ...], int] = {}  # shapes without nested maps, by their names
    nested: dict[tuple[str, ...], tuple[int, _Nesting]] = {}  # maps in maps, by names
    shape_of: list[int | None] = []
    rows: list[list[Any]] = []  # per shape: the leaves of each of its rows
    for value in values:
        if value is None:
            shape_of.append(None)
            continue
        names = tuple(value)
        i = flat.get(names)
        if i is not None and dict not in map(type, value.values()):
            shape_of.append(i)
            rows[i].append(list(value.values()))
            continue
        known = nested.get(names)
        if known is not None:
            leaves = _nested_leaves(value, known[1])
            if leaves is not None:
                shape_of.append(known[0])
                rows[known[0]].append(leaves)
                continue
        shape = _shape(value)
        i = shapes.get(shape)
        if i is None:
            i = shapes[shape] = len(shapes)
            rows.append([])
            nesting = _nesting(shape)
            if nesting == ():
                flat[names] = i
            elif nesting is not None:
                nested[names] = (i, nesting)
        shape_of.append(i)
        leaves = []
        _leaves(value, shape, leaves)
        rows[i].append(leaves)
    columns = [[list(column) for column in zip(*shape_rows, strict=True)] for shape_rows in rows]
    return packb(
        [
            [b - a for a, b in zip([0, *hlcs], hlcs, strict=False)],
            list(collections),
            collection_of,
            key_prefix,
            key_suffix,
            [_shape_wire(s) for s in shapes],
            shape_of,
            [[_column(col) for col in cols] for cols in columns],
            [[[p.origin, p.seq] for p in c.parents] for c in changes],
        ]
    )


class _Builder:
    """Rebuilds the canonical field maps of one shape from its columns."""

    __slots__ = ("names", "nested", "overhead", "width")

    def __init__(self, wire: Any, depth: int) -> None:
        if depth > MAX_SHAPE_DEPTH:
            raise BundleFormatError(f"a shape nests maps more than {MAX_SHAPE_DEPTH} deep")
        if type(wire) is not list:
            raise BundleFormatError("a shape must be an array")
        self.names: list[str] = []
        self.nested: list[tuple[int, _Builder]] = []  # (position among names, builder)
        self.width = 0  # leaves under this shape
        # Bytes each row's map takes besides its leaf values, at most: map headers and
        # names, which the columns do not repeat per row but every rebuilt map does.
        self.overhead = 5
        previous: str | None = None
        for entry in wire:
            if type(entry) is str:
                name, sub = entry, None
            elif type(entry) is list and len(entry) == 2 and type(entry[0]) is str:
                name, sub = entry[0], _Builder(entry[1], depth + 1)
            else:
                raise BundleFormatError("a shape entry must be a name or [name, shape]")
            if previous is not None and name <= previous:
                raise BundleFormatError("shape names must be unique and sorted")
            previous = name
            self.overhead += 5 + len(name.encode())
            if sub is None:
                self.width += 1
            else:
                self.nested.append((len(self.names), sub))
                self.width += sub.width
                self.overhead += sub.overhead
            self.names.append(name)

    def constant(self) -> dict[str, Any]:
        """The one map of a shape with no leaves (only empty nested maps)."""
        return {
            name: sub.constant() for name, (_, sub) in zip(self.names, self.nested, strict=True)
        }

    def _entries(self, columns: list[list[Any]], rows: int) -> list[list[Any]]:
        """One column per name: its leaf column, or the nested maps built for it."""
        entries: list[list[Any]] = []
        at = 0
        nested = dict(self.nested)
        for position in range(len(self.names)):
            sub = nested.get(position)
            if sub is None:
                entries.append(columns[at])
                at += 1
            else:
                entries.append(sub.build(columns[at : at + sub.width], rows))
                at += sub.width
        return entries

    def build(self, columns: list[list[Any]], rows: int) -> list[dict[str, Any]]:
        """The maps of this shape, one per row, from its leaf columns in order."""
        if not self.width:
            return [self.constant()] * rows
        entries = self._entries(columns, rows)
        return list(map(dict, map(zip, repeat(self.names), zip(*entries, strict=True))))

    def encode(self, columns: list[list[Any]], rows: int) -> list[bytes]:
        """The canonical bytes of this shape's maps, one per row.

        A map's bytes are its header, then each key and value. Packing the tuple
        ``(name1, value1, name2, value2, ...)`` writes exactly those pairs after an
        array header, so each row is packed as that tuple (zip builds it in C) and the
        array header is swapped for the map header: no dict per row at the top level.
        """
        if not self.width:
            return [_pack(self.constant())] * rows
        interleaved: list[Any] = []
        for name, entry in zip(self.names, self._entries(columns, rows), strict=True):
            interleaved += (repeat(name), entry)
        n = len(self.names)
        head = _map_header(n)
        after_array_header = itemgetter(slice(len(_array_header(2 * n)), None))
        # repeat() is endless; the entries, all of ``rows`` items, end the zip.
        rows_packed = map(_pack, zip(*interleaved, strict=False))
        return list(map(head.__add__, map(after_array_header, rows_packed)))


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdf" + n.to_bytes(4, "big")


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    return b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdd" + n.to_bytes(4, "big")


def _ints(value: Any, n: int, what: str) -> list[int]:
    if type(value) is not list or len(value) != n or not set(map(type, value)) <= {int}:
        raise BundleFormatError(f"changes: {what} must be an array of {n} integers")
    return value


def _column_values(column: Any, rows: int) -> tuple[list[Any], int]:
    """The column's value per row, and how many bytes at most a row's value takes
    beyond what the block itself holds (a dictionary-coded value repeats per row)."""
    if type(column) is not list or len(column) != 2:
        raise BundleFormatError("a column must be [table or nil, items]")
    table, items = column
    if table is None:
        if type(items) is not list or len(items) != rows:
            raise BundleFormatError("a column holds a value per row of its shape")
        return items, 0
    if type(table) is not list or not 0 < len(table) <= MAX_TABLE:
        raise BundleFormatError(f"a column's table must be nil or 1-{MAX_TABLE} values")
    if type(items) is not bytes or len(items) != rows:
        raise BundleFormatError("a dictionary-coded column holds one index byte per row")
    if items and max(items) >= len(table):
        raise BundleFormatError("a column index points outside its table")
    return list(map(table.__getitem__, items)), max(map(len, map(_pack, table)))


def decode_changes(
    data: bytes, origin: bytes, first_seq: int, limits: Limits = DEFAULT_LIMITS
) -> list[Change]:
    """Decode and fully validate a segment's decompressed changes (untrusted input).

    Every check is a pass over a whole column, mostly in C; the one Python loop per
    change rebuilds keys from their front coding.
    """
    # An array is either one of the columns (n items, n at most max_segment_changes)
    # or a field value (its items take at least a byte each of a change's fields).
    longest = max(limits.max_segment_changes, limits.max_fields_bytes)
    items = unpack(data, "changes", limits, max_items=longest, canonical=True)
    if type(items) is not list or len(items) != CHANGE_COLUMNS:
        raise BundleFormatError(f"changes must be an array of {CHANGE_COLUMNS} columns")
    deltas, collections, collection_of, prefix, suffix, shapes, shape_of, columns, parents = items
    if type(deltas) is not list or not deltas:
        raise BundleFormatError("changes must hold at least one change")
    n = len(deltas)
    if n > limits.max_segment_changes:
        raise LimitExceededError(f"more than {limits.max_segment_changes} changes in a segment")
    hlcs = list(accumulate(_ints(deltas, n, "hlc")))
    if min(hlcs) < 0 or max(hlcs) > MAX_HLC:
        raise BundleFormatError("change hlc must be an integer in [0, 2^63)")

    if type(collections) is not list or not collections:
        raise BundleFormatError("changes: collections must be a non-empty array")
    for name in collections:
        _check_name(name, "collection", limits.max_collection_bytes)
    if len(set(collections)) != len(collections):
        raise BundleFormatError("changes: collection names must be unique")
    collection_index = _ints(collection_of, n, "collection indexes")
    if min(collection_index) < 0 or max(collection_index) >= len(collections):
        raise BundleFormatError("changes: a collection index points outside the table")
    collection_names = list(map(collections.__getitem__, collection_index))

    keys = _keys(_ints(prefix, n, "key prefixes"), suffix, n, limits.max_key_bytes)
    ops, fields = _fields(shapes, shape_of, columns, n, limits, len(data))

    if type(parents) is not list or len(parents) != n or not set(map(type, parents)) <= {list}:
        raise BundleFormatError("changes: parents must hold an array per change")
    if any(parents):
        parent_ids = [
            _parents(p, origin, first_seq + i, limits) if p else () for i, p in enumerate(parents)
        ]
    else:
        parent_ids = [()] * n
    return list(
        map(
            _new_change,
            zip(
                repeat(origin),
                range(first_seq, first_seq + n),
                hlcs,
                collection_names,
                keys,
                ops,
                fields,
                parent_ids,
            ),
        )
    )


def _keys(prefix: list[int], suffix: Any, n: int, max_key: int) -> list[str]:
    if type(suffix) is not list or len(suffix) != n or not set(map(type, suffix)) <= {str}:
        raise BundleFormatError(f"changes: key suffixes must be an array of {n} strings")
    # Bound every key before building any (a key of more than max_key code points has
    # more than max_key bytes), so hostile prefixes cannot make n keys of the block's size.
    if max(map(add, prefix, map(len, suffix))) > max_key:
        raise LimitExceededError(f"change key longer than {max_key} bytes")
    keys: list[str] = []
    append = keys.append
    previous = ""
    for p, s in zip(prefix, suffix, strict=True):
        previous = previous[:p] + s
        append(previous)
    # Checked after the loop, over whole columns: each prefix within the key before.
    if prefix[0] != 0 or min(prefix) < 0 or not all(map(le, prefix[1:], map(len, keys))):
        raise BundleFormatError("a key prefix is longer than the previous key")
    if not all(keys) or max(map(len, keys)) * 4 > max_key:
        for key in keys:
            _check_name(key, "key", max_key)
    return keys


def _fields(
    shapes: Any, shape_of: Any, columns: Any, n: int, limits: Limits, block_bytes: int
) -> tuple[list[int], list[bytes | None]]:
    """Each change's op and canonical field bytes, rebuilt shape by shape.

    Rebuilt maps repeat what the columns hold once (names, dictionary-coded values),
    so what they repeat is bounded before any is built: at most ``max_block_bytes``,
    like the block itself (docs/spec.md §4.2). A block therefore cannot make its
    receiver build far more bytes than it carries. And what they take in memory (what
    they repeat, what the block holds once, a bytes object per put) is bounded too, by
    half of ``max_decode_bytes``: the decoded columns are alive at the same time.
    """
    if type(shapes) is not list or type(columns) is not list or len(columns) != len(shapes):
        raise BundleFormatError("changes: shapes and columns must be arrays of equal length")
    if type(shape_of) is not list or len(shape_of) != n:
        raise BundleFormatError("changes: shape indexes must hold an item per change")
    if not set(map(type, shape_of)) <= {int, type(None)}:
        raise BundleFormatError("a change's shape index must be an integer or nil")
    rows = Counter(shape_of)
    if not set(rows) <= {None, *range(len(shapes))}:
        raise BundleFormatError("a shape index points outside the shapes")
    ops = [DELETE if s is None else PUT for s in shape_of] if None in rows else [PUT] * n
    built: dict[int | None, Iterator[bytes | None]] = {None: repeat(None)}
    repeated = 0
    max_fields = limits.max_fields_bytes
    # What the rebuilt maps take besides what they repeat: the block's own values, and
    # a bytes object and its slot per put.
    held = block_bytes + (n - rows[None]) * FIELDS_OBJECT_COST
    for i, (wire, cols) in enumerate(zip(shapes, columns, strict=True)):
        count = rows[i]
        builder = _Builder(wire, 1)
        if type(cols) is not list or len(cols) != builder.width:
            raise BundleFormatError("a shape has a column per leaf field")
        values = [_column_values(col, count) for col in cols]
        repeated += count * (builder.overhead + sum(extra for _, extra in values))
        if repeated > limits.max_block_bytes:
            raise LimitExceededError("rebuilding the fields would repeat more than the block limit")
        if repeated + held > limits.max_decode_bytes // 2:
            raise LimitExceededError(
                "rebuilding the fields would take more than half of max_decode_bytes"
            )
        try:
            encoded = builder.encode([column for column, _ in values], count)
        except Exception as exc:  # a datetime from a timestamp, say
            raise BundleFormatError("fields hold a value type that is not allowed") from exc
        if encoded and max(map(len, encoded)) > max_fields:
            raise LimitExceededError(f"fields of a change exceed the limit of {max_fields} bytes")
        built[i] = iter(encoded)
    if len(built) == 2 and None not in rows:  # one shape, no deletes: its rows are the changes
        return ops, list(built[0])
    return ops, list(map(next, map(built.__getitem__, shape_of)))


def _check_name(value: Any, what: str, max_bytes: int) -> str:
    if type(value) is not str or not value:
        raise BundleFormatError(f"change {what} must be a non-empty string")
    if len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
        raise LimitExceededError(f"change {what} longer than {max_bytes} bytes")
    return value


def _parents(raw: Any, origin: bytes, seq: int, limits: Limits) -> tuple[ChangeId, ...]:
    if type(raw) is not list:
        raise BundleFormatError("change parents must be an array")
    if len(raw) > limits.max_parents:
        raise LimitExceededError(f"a change lists more than {limits.max_parents} parents")
    parents: list[ChangeId] = []
    for p in raw:
        if (
            type(p) is not list
            or len(p) != 2
            or type(p[0]) is not bytes
            or len(p[0]) != 32
            or type(p[1]) is not int
            or not 1 <= p[1] <= MAX_U64 >> 1
        ):
            raise BundleFormatError("a parent must be [32-byte origin, seq]")
        pid = ChangeId(p[0], p[1])
        if parents and pid <= parents[-1]:
            raise BundleFormatError("parents must be sorted and unique")
        if pid.origin == origin and pid.seq >= seq:
            raise BundleFormatError("a change cannot descend from a later change of its origin")
        parents.append(pid)
    return tuple(parents)
