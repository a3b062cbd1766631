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

import operator
from collections.abc import Sequence
from functools import partial
from itertools import accumulate, compress, repeat
from operator import add, eq, itemgetter, le
from typing import Any, NamedTuple, TypeAlias

import msgpack

from .clock import MAX_HLC
from .encoding import decode_fields, packb
from .errors import BundleFormatError, LimitExceededError, StorageError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .unpack import sorted_pairs, unpack
from .v3.content import decode_content, nan_like, refuse_noncanonical_nan

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
    hlcs = list(map(_HLC, changes))
    names = list(map(_COLLECTION, changes))
    if names and names.count(names[0]) == n:  # one collection (a bulk import, most segments)
        collections, collection_of = {names[0]: 0}, [0] * n
    else:
        collections = {}
        collection_of = [collections.setdefault(name, len(collections)) for name in names]
    key_prefix, key_suffix = _front_coded(list(map(_KEY, changes)))
    grouped = _uniform_columns(values)
    if grouped is None:
        shape_list, shape_of, columns = _columns(values)
    else:
        shape_list, shape_of, columns = grouped
    return packb(
        [
            list(map(operator.sub, hlcs, [0, *hlcs])),
            list(collections),
            collection_of,
            key_prefix,
            key_suffix,
            [_shape_wire(s) for s in shape_list],
            shape_of,
            [[_column(col) for col in cols] for cols in columns],
            [[[p.origin, p.seq] for p in c.parents] for c in changes]
            if any(map(_PARENTS, changes))
            else [[]] * n,
        ]
    )


_HLC = itemgetter(2)
_COLLECTION = itemgetter(3)
_KEY = itemgetter(4)
_PARENTS = itemgetter(7)


def _front_coded(keys: list[str]) -> tuple[list[int], list[str]]:
    """Each key as (the length it shares with the key before, the rest). One loop with
    the comparison inline: it runs per key and per shared character."""
    key_prefix: list[int] = []
    key_suffix: list[str] = []
    add_prefix, add_suffix = key_prefix.append, key_suffix.append
    previous = ""
    for k in keys:
        m = 0
        for a, b in zip(previous, k, strict=False):  # (stops at the shorter key)
            if a != b:
                break
            m += 1
        add_prefix(m)
        add_suffix(k[m:])
        previous = k
    return key_prefix, key_suffix


#: The columns of a segment's fields: the shapes in order of first use, each change's
#: shape (None: a delete) and each shape's leaf columns.
Columns = tuple[list[Shape], list[int | None], list[list[list[Any]]]]


def _uniform_columns(values: Sequence[dict[str, Any] | None]) -> Columns | None:
    """``_columns`` in passes over whole columns, for the common case: no deletes, and
    every value with the same names has the same shape, nested maps at most one level
    deep (records entered by one form). None when that does not hold (then ``_columns``
    decides, value by value); the result is the same either way."""
    if not values or None in values:
        return None
    names_of = list(map(tuple, values))  # type: ignore[arg-type]
    if names_of.count(names_of[0]) == len(names_of):
        groups: dict[tuple[str, ...], int] = {names_of[0]: 0}
        shape_of: list[int | None] = [0] * len(names_of)
        members: list[Sequence[dict[str, Any]]] = [values]  # type: ignore[list-item]
    else:
        groups = {}
        shape_of = [groups.setdefault(names, len(groups)) for names in names_of]
        members = [
            list(compress(values, map(eq, shape_of, repeat(i))))  # type: ignore[arg-type]
            for i in range(len(groups))
        ]
    shapes: list[Shape] = []
    columns: list[list[list[Any]]] = []
    for names, group in zip(groups, members, strict=True):
        found = _group_columns(names, group)
        if found is None:
            return None
        shapes.append(found[0])
        columns.append(found[1])
    return shapes, shape_of, columns


def _group_columns(
    names: tuple[str, ...], group: Sequence[dict[str, Any]]
) -> tuple[Shape, list[list[Any]]] | None:
    """The one shape of maps that all have ``names`` (in that order) and their leaf
    columns; None unless every map of the group has the same shape, of at most two
    levels (``MAX_SHAPE_DEPTH`` is more)."""
    shape: list[tuple[str, Shape | None]] = []
    leaves: list[list[Any]] = []
    for name, column in zip(names, zip(*map(dict.values, group), strict=True), strict=True):
        kinds = set(map(type, column))
        if dict not in kinds:
            shape.append((name, None))
            leaves.append(list(column))
            continue
        if len(kinds) != 1:
            return None  # maps in some rows, other values in others
        inner = list(map(tuple, column))
        if inner.count(inner[0]) != len(inner):
            return None
        sub = list(zip(*map(dict.values, column), strict=True))
        for inner_column in sub:
            if dict in set(map(type, inner_column)):
                return None
        shape.append((name, tuple((inner_name, None) for inner_name in inner[0])))
        leaves.extend(map(list, sub))
    return tuple(shape), leaves


def _columns(values: Sequence[dict[str, Any] | None]) -> Columns:
    """The shapes, each change's shape and the leaf columns, value by value."""
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
    return list(shapes), shape_of, columns


def _ints(value: Any, n: int, what: str) -> list[int]:
    if type(value) is not list or len(value) != n or not set(map(type, value)) <= {int}:
        raise BundleFormatError(f"changes: {what} must be an array of {n} integers")
    return value


def _unpack_columns(data: bytes, limits: Limits) -> tuple[list[Any], bool]:
    """The 9 columns, and whether the block holds any map (maps are rare; only then
    are leaves checked for maps above the deepest shape, docs/spec.md §4.2)."""
    # An array is either one of the columns (n items, n at most max_segment_changes)
    # or a field value (its items take at least a byte each of a change's fields).
    longest = max(limits.max_segment_changes, limits.max_fields_bytes)
    maps = [False]

    def pairs(items: list[tuple[Any, Any]]) -> dict[str, Any]:
        maps[0] = True
        return sorted_pairs(items)

    items = unpack(data, "changes", limits, max_items=longest, canonical=True, pairs_hook=pairs)
    if type(items) is not list or len(items) != CHANGE_COLUMNS:
        raise BundleFormatError(f"changes must be an array of {CHANGE_COLUMNS} columns")
    return items, maps[0]


def _collections(collections: Any, collection_of: Any, n: int, limits: Limits) -> list[str]:
    """Each change's collection: the table lists each used name once, in order of
    first use (docs/spec.md §4.2), so one run of changes has one encoding."""
    if type(collections) is not list or not collections:
        raise BundleFormatError("changes: collections must be a non-empty array")
    for name in collections:
        _check_name(name, "collection", limits.max_collection_bytes)
    if len(set(collections)) != len(collections):
        raise BundleFormatError("changes: collection names must be unique")
    collection_index = _ints(collection_of, n, "collection indexes")
    if collection_index.count(0) != n:
        if min(collection_index) < 0 or max(collection_index) >= len(collections):
            raise BundleFormatError("changes: a collection index points outside the table")
        if list(dict.fromkeys(collection_index)) != list(range(len(collections))):
            raise BundleFormatError(
                "changes: collections must be listed in order of first use, each used"
            )
    elif len(collections) != 1:
        raise BundleFormatError(
            "changes: collections must be listed in order of first use, each used"
        )
    return list(map(collections.__getitem__, collection_index))


def decode_changes(
    data: bytes, origin: bytes, first_seq: int, limits: Limits = DEFAULT_LIMITS
) -> list[Change]:
    """Decode and fully validate a segment's decompressed changes (untrusted input).

    Exactly one encoding is valid for a run of changes (docs/spec.md §4.2: shortest
    integers, longest shared key prefixes, tables in order of first use, dictionary
    coding exactly when its conditions hold, nested maps as nested shapes), and every
    other is refused. The shapes and value columns are the same as format 3's, so they
    are decoded by the same code (``offsync.v3.content``). Every check is a pass over a
    whole column, mostly in C; the one Python loop per change rebuilds keys from their
    front coding.
    """
    items, has_maps = _unpack_columns(data, limits)
    deltas, collections, collection_of, prefix, suffix, shapes, shape_of, columns, parents = items
    if type(deltas) is not list or not deltas:
        raise BundleFormatError("changes must hold at least one change")
    n = len(deltas)
    if n > limits.max_segment_changes:
        raise LimitExceededError(f"more than {limits.max_segment_changes} changes in a segment")
    hlcs = list(accumulate(_ints(deltas, n, "hlc")))
    if min(hlcs) < 0 or max(hlcs) > MAX_HLC:
        raise BundleFormatError("change hlc must be an integer in [0, 2^63)")
    collection_names = _collections(collections, collection_of, n, limits)
    keys = _keys(_ints(prefix, n, "key prefixes"), suffix, n, limits.max_key_bytes)
    if type(shape_of) is not list or len(shape_of) != n:
        raise BundleFormatError("changes: shape indexes must hold an item per change")
    ops = [DELETE if s is None else PUT for s in shape_of] if None in shape_of else [PUT] * n
    content = [shapes, shape_of, columns]
    fields = decode_content(content, ops, set(ops), n, None, limits, len(data), has_maps)
    if nan_like(data):
        refuse_noncanonical_nan(content)

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
    extends = False  # a suffix whose first code point the key before shares too
    for p, s in zip(prefix, suffix, strict=True):
        try:  # indexing raises only when the key before ends at p or s is empty
            if previous[p] == s[0]:
                extends = True
        except IndexError:
            pass
        previous = previous[:p] + s
        append(previous)
    # Checked after the loop, over whole columns: each prefix within the key before.
    if prefix[0] != 0 or min(prefix) < 0 or not all(map(le, prefix[1:], map(len, keys))):
        raise BundleFormatError("a key prefix is longer than the previous key")
    if extends:
        raise BundleFormatError(
            "a key prefix is not the longest the key shares with the one before"
        )
    if not all(keys) or max(map(len, keys)) * 4 > max_key:
        for key in keys:
            _check_name(key, "key", max_key)
    return keys


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
