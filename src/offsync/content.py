"""The content of a format-3 block: field shapes and their columns (docs/spec.md §5.2).

    content = [shapes, shape, values]

The puts (and erase orders) of a segment are grouped by the *shape* of their field
map, and each leaf of a shape is one column holding that field's value for every row:
values of one name sit next to each other, strings that repeat are dictionary-coded to
one byte a row, and a receiver rebuilds every row's canonical field bytes with a few
C-level passes. Exactly one encoding is valid (shapes and tables in order of first use,
dictionary coding exactly when its condition holds, nested maps as nested shapes, one
NaN); a decoder refuses every other. A redacted block's content is the same, built from
the rows still held. ``columns`` puts the content next to the skeleton.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import compress, repeat
from operator import eq, is_, itemgetter
from typing import Any, TypeAlias

import msgpack

from .change import CANONICAL_NAN, DELETE, PUT, holds_noncanonical_nan
from .encoding import MAX_FIELD_DEPTH, decode_fields, packb
from .errors import BundleFormatError, LimitExceededError
from .limits import Limits

__all__ = [
    "FIELDS_OBJECT_COST",
    "MAX_FIELD_LEVEL",
    "MAX_SHAPE_DEPTH",
    "MAX_TABLE",
    "decode_content",
    "encode_content",
    "nan_like",
    "refuse_noncanonical_nan",
]

#: Nested maps deeper than this stay whole values in one column instead of becoming
#: columns of their own; a decoder refuses shapes nested deeper.
MAX_SHAPE_DEPTH = 16
#: Entries of a dictionary-coded column's table: its indexes are one byte each.
MAX_TABLE = 256
#: Format rule: a field value sits at most at this level, its field map at level 1
#: (``offsync.encoding`` refuses deeper fields when they are written).
MAX_FIELD_LEVEL = MAX_FIELD_DEPTH
#: Memory of one rebuilt field map besides its bytes: a bytes object's header, its slot.
FIELDS_OBJECT_COST = 56

Shape: TypeAlias = tuple[tuple[str, "Shape | None"], ...]
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
_pack = _PACKER.pack
_is_none = partial(is_, None)


# -- encoding -----------------------------------------------------------------------------


def _walk(
    value: dict[str, Any], depth: int, leaves: list[Any], flat: dict[tuple[str, ...], Shape]
) -> Shape:
    """The shape of ``value`` at ``depth`` (a nested map is a nested shape above
    ``MAX_SHAPE_DEPTH``, else a leaf), its leaves appended to ``leaves`` in shape order
    in the same pass; a map holding no map takes its values whole and its shape from
    ``flat`` by its names."""
    if depth >= MAX_SHAPE_DEPTH or dict not in set(map(type, value.values())):
        leaves += value.values()
        names = tuple(value)
        shape = flat.get(names)
        if shape is None:
            shape = flat[names] = tuple((name, None) for name in names)
        return shape
    out: list[tuple[str, Shape | None]] = []
    for name, v in value.items():
        if type(v) is dict:
            out.append((name, _walk(v, depth + 1, leaves, flat)))
        else:
            out.append((name, None))
            leaves.append(v)
    return tuple(out)


def _shape_wire(shape: Shape) -> list[Any]:
    return [name if sub is None else [name, _shape_wire(sub)] for name, sub in shape]


def _column(values: Sequence[Any]) -> list[Any]:
    """A column as ``[nil, values]``, or ``[table, indexes]`` exactly when every value
    is a str and the distinct values are at most 256 and at most half the rows (the
    table in order of first occurrence): one byte per row before compression, rebuilt
    by the receiver in one C-level pass. (Passes in C: ``dict.fromkeys`` keeps the
    first occurrences in order, the indexes are looked up by ``map``.)"""
    if values and set(map(type, values)) == _STR_ONLY:
        table = dict.fromkeys(values)
        if len(table) <= MAX_TABLE and len(table) * 2 <= len(values):
            index = {v: i for i, v in enumerate(table)}
            return [list(table), bytes(map(index.__getitem__, values))]
    return [None, values]


_STR_ONLY = {str}


#: The columns of a block's fields: the shapes in order of first use, each row's shape
#: (None: no shape) and each shape's leaf columns.
Columns: TypeAlias = tuple[list[Shape], list[int | None], list[list[Sequence[Any]]]]


def encode_content(
    fields: Sequence[bytes | None], values: Sequence[dict[str, Any] | None] | None = None
) -> bytes:
    """``[shapes, shape, values]`` of the rows' field bytes (None: no shape).

    ``values``: each row's fields as ``decode_fields`` would give them back (None:
    decode them), which a writer sealing its own changes already holds: decoding every
    row again cost as much as the rest of the encoding. The common block (no deletes,
    maps of one names list of one shape, nested at most one level) is made in passes
    over whole columns (``_uniform_columns``, as format 2's encoder did); any other
    row by row (``_columns``). The bytes are the same either way."""
    decoded = [
        None if encoded is None else value if value is not None else decode_fields(encoded)
        for encoded, value in zip(
            fields, repeat(None) if values is None else values, strict=values is not None
        )
    ]
    shapes, shape_of, columns = _uniform_columns(decoded) or _columns(decoded)
    return packb(
        [
            [_shape_wire(s) for s in shapes],
            shape_of,
            [[_column(col) for col in cols] for cols in columns],
        ]
    )


def _columns(values: Sequence[dict[str, Any] | None]) -> Columns:
    """The shapes, each row's shape and the leaf columns, value by value: rows are
    grouped by shape and each shape's columns made by one transposition (``zip``); a
    flat map (no nested map) has its shape looked up by its names alone."""
    shapes: dict[Shape, int] = {}
    flat: dict[tuple[str, ...], int] = {}  # the names of a flat shape: its index
    flat_shapes: dict[tuple[str, ...], Shape] = {}  # nested flat maps' shapes by names
    shape_of: list[int | None] = []
    rows: list[list[Sequence[Any]]] = []  # per shape: each row's leaves
    for value in values:
        if value is None:
            shape_of.append(None)
            continue
        if dict in set(map(type, value.values())):
            leaves: list[Any] = []
            shape = _walk(value, 1, leaves, flat_shapes)
            i = shapes.get(shape)
            if i is None:
                i = shapes[shape] = len(shapes)
                rows.append([])
            rows[i].append(leaves)
        else:
            names = tuple(value)
            i = flat.get(names)
            if i is None:
                shape = tuple((name, None) for name in names)
                i = shapes.get(shape)
                if i is None:
                    i = shapes[shape] = len(shapes)
                    rows.append([])
                flat[names] = i
            rows[i].append(tuple(value.values()))
        shape_of.append(i)
    columns: list[list[Sequence[Any]]] = [
        list(zip(*shape_rows, strict=True)) for shape_rows in rows
    ]
    return list(shapes), shape_of, columns


def _uniform_columns(values: Sequence[dict[str, Any] | None]) -> Columns | None:
    """``_columns`` in passes over whole columns, for the common case: no row without
    a shape, and every value with the same names has the same shape, nested maps at
    most one level deep (records entered by one form). None when that does not hold
    (then ``_columns`` decides, value by value); the result is the same either way."""
    if not values or None in values:
        return None
    maps: Sequence[dict[str, Any]] = values  # type: ignore[assignment]
    names_of = list(map(tuple, maps))
    if names_of.count(names_of[0]) == len(names_of):
        groups: dict[tuple[str, ...], int] = {names_of[0]: 0}
        shape_of: list[int | None] = [0] * len(names_of)
        members: list[Sequence[dict[str, Any]]] = [maps]
    else:
        groups = {}
        shape_of = [groups.setdefault(names, len(groups)) for names in names_of]
        members = [list(compress(maps, map(eq, shape_of, repeat(i)))) for i in range(len(groups))]
    shapes: list[Shape] = []
    columns: list[list[Sequence[Any]]] = []
    for names, group in zip(groups, members, strict=True):
        found = _group_columns(names, group)
        if found is None:
            return None
        shapes.append(found[0])
        columns.append(found[1])
    return shapes, shape_of, columns


def _group_columns(
    names: tuple[str, ...], group: Sequence[dict[str, Any]]
) -> tuple[Shape, list[Sequence[Any]]] | None:
    """The one shape of maps that all have ``names`` (in that order) and their leaf
    columns; None unless every map of the group has the same shape, of at most two
    levels (``MAX_SHAPE_DEPTH`` is more)."""
    shape: list[tuple[str, Shape | None]] = []
    leaves: list[Sequence[Any]] = []
    for name, column in zip(names, zip(*map(dict.values, group), strict=True), strict=True):
        kinds = set(map(type, column))
        if dict not in kinds:
            shape.append((name, None))
            leaves.append(column)
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
        leaves += sub
    return tuple(shape), leaves


# -- decoding -----------------------------------------------------------------------------


class _Builder:
    """Rebuilds the canonical field maps of one shape from its columns."""

    __slots__ = ("depths", "names", "nested", "overhead", "width")

    def __init__(self, wire: Any, depth: int) -> None:
        if depth > MAX_SHAPE_DEPTH:
            raise BundleFormatError(f"a shape nests maps more than {MAX_SHAPE_DEPTH} deep")
        if type(wire) is not list:
            raise BundleFormatError("a shape must be an array")
        self.names: list[str] = []
        self.nested: list[tuple[int, _Builder]] = []  # (position among names, builder)
        self.depths: list[int] = []  # the depth of the shape holding each leaf
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
                self.depths.append(depth)
            else:
                self.nested.append((len(self.names), sub))
                self.width += sub.width
                self.depths += sub.depths
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


def _plain_is_canonical(items: list[Any], rows: int) -> bool:
    """Whether a plain column may not be dictionary-coded: some value is not a str,
    or its distinct values are over 256 or over half the rows.

    Hashes as few values as it takes: a column of names shows 257 distinct values in
    its first 257 rows, and a column of few values is seldom all strings."""
    if rows > 2 * MAX_TABLE:
        seen = set()
        try:
            for start in range(0, rows, MAX_TABLE + 1):
                seen.update(items[start : start + MAX_TABLE + 1])
                if len(seen) > MAX_TABLE:
                    return True
        except TypeError:  # an array or a map: not a column of strings
            return True
    else:
        try:
            if 2 * len(set(items)) > rows:
                return True
        except TypeError:
            return True
    return set(map(type, items)) != {str}


def _column_values(column: Any, rows: int) -> tuple[list[Any], int]:
    """The column's value per row, and how many bytes at most a row's value takes
    beyond what the block itself holds (a dictionary-coded value repeats per row)."""
    if type(column) is not list or len(column) != 2:
        raise BundleFormatError("a column must be [table or nil, items]")
    table, items = column
    if table is None:
        if type(items) is not list or len(items) != rows:
            raise BundleFormatError("a column holds a value per row of its shape")
        if not _plain_is_canonical(items, rows):
            raise BundleFormatError("a column of few distinct strings must be dictionary-coded")
        return items, 0
    if type(table) is not list or not 0 < len(table) <= MAX_TABLE:
        raise BundleFormatError(f"a column's table must be nil or 1-{MAX_TABLE} values")
    if type(items) is not bytes or len(items) != rows:
        raise BundleFormatError("a dictionary-coded column holds one index byte per row")
    if set(map(type, table)) != {str} or len(set(table)) != len(table):
        raise BundleFormatError("a column's table holds distinct strings")
    if 2 * len(table) > rows:
        raise BundleFormatError("a dictionary-coded column has at most half as many values as rows")
    if max(items) >= len(table):
        raise BundleFormatError("a column index points outside its table")
    try:
        first = [items.index(i) for i in range(len(table))]
    except ValueError:
        raise BundleFormatError("a column's table holds a value no row uses") from None
    if not all(map(int.__lt__, first, first[1:])):
        raise BundleFormatError("a column's table lists its values in order of first use")
    return list(map(table.__getitem__, items)), max(map(len, map(_pack, table)))


_INFINITIES = (b"\xcb\x7f\xf0" + bytes(6), b"\xcb\xff\xf0" + bytes(6))


def nan_like(data: bytes) -> bool:
    """Whether ``data`` holds 9 bytes that would be a float64 NaN other than the
    canonical one, if they are a float (the exact walk then says whether they are).

    One C-level ``find`` of the float64 marker per occurrence (memchr: a blink over a
    block of text and integers); a two-byte ``in`` costs a hundred times more.
    """
    find = data.find
    at = find(b"\xcb")
    while at >= 0:
        if data[at + 1 : at + 2] in (b"\x7f", b"\xff") and data[at + 2 : at + 3] >= b"\xf0":
            nine = data[at : at + 9]
            if nine != CANONICAL_NAN and nine not in _INFINITIES:
                return True
        at = find(b"\xcb", at + 1)
    return False


def refuse_noncanonical_nan(content: list[Any]) -> None:
    if holds_noncanonical_nan(content[2]):
        raise BundleFormatError("a NaN field value must be the canonical NaN 7ff8000000000000")


def _check_rows(
    shape_of: list[Any], ops: list[int], op_set: set[int], erased: Sequence[int] | None
) -> None:
    """A row has no shape exactly when it is a delete or an erased put (§5.3)."""
    if erased is None and DELETE not in op_set and None not in shape_of:
        return
    no_shape = list(map(_is_none, shape_of))
    expected = list(map(DELETE.__eq__, ops))
    for i in erased or ():
        if ops[i] != PUT:
            raise BundleFormatError("only puts are erased")
        expected[i] = True
    if no_shape != expected:
        raise BundleFormatError(
            "a delete (or an erased put) has no shape; a put or an erase order has one"
        )


def decode_content(
    content: list[Any],
    ops: list[int],
    op_set: set[int],
    n: int,
    erased: Sequence[int] | None,
    limits: Limits,
    block_bytes: int,
    has_maps: bool,
) -> list[bytes | None]:
    """Each change's canonical field bytes (None: no shape), rebuilt shape by shape.

    Rebuilt maps repeat what the columns hold once (names, dictionary-coded values),
    so what they repeat is bounded before any is built: at most ``max_block_bytes``,
    like the block itself (docs/spec.md §5.3). A block therefore cannot make its
    receiver build far more bytes than it carries. And what they take in memory (what
    they repeat, what the block holds once, a bytes object per put) is bounded too, by
    half of ``max_decode_bytes``: the decoded columns are alive at the same time.
    """
    shapes, shape_of, columns = content
    if type(shapes) is not list or type(columns) is not list or len(columns) != len(shapes):
        raise BundleFormatError("changes: shapes and columns must be arrays of equal length")
    if type(shape_of) is not list or len(shape_of) != n:
        raise BundleFormatError("changes: shape indexes must hold an item per change")
    if not set(map(type, shape_of)) <= {int, type(None)}:
        raise BundleFormatError("a change's shape index must be an integer or nil")
    _check_rows(shape_of, ops, op_set, erased)
    whole, rows = _rows_per_shape(shapes, shape_of, n)
    built: dict[int | None, Iterator[bytes | None]] = {None: repeat(None)}
    # What the rebuilt maps take besides what they repeat: the block's own values, and
    # a bytes object and its slot per row with a shape.
    held = block_bytes + n * FIELDS_OBJECT_COST
    repeated = 0
    for i, (wire, cols) in enumerate(zip(shapes, columns, strict=True)):
        encoded, repeated = _rebuild(wire, cols, rows[i], limits, repeated, held, has_maps)
        built[i] = iter(encoded)
    if whole:  # one shape, every row: its rows are the changes
        return list(built[0])
    return list(map(next, map(built.__getitem__, shape_of)))


def _rows_per_shape(
    shapes: list[Any], shape_of: list[int | None], n: int
) -> tuple[bool, Counter[int | None] | dict[int, int]]:
    """Whether one shape holds every row, and the rows of each shape: shapes are
    distinct, each used, in order of first use (§5.2)."""
    # The bulk case, one shape and no delete, is one C-level count (types are checked).
    if shape_of.count(0) == n:
        if len(shapes) != 1:
            raise BundleFormatError("shapes must be listed in order of first use, each used")
        return True, {0: n}
    order = list(dict.fromkeys(shape_of))
    if None in order:
        order.remove(None)
    if order != list(range(len(shapes))):
        raise BundleFormatError("shapes must be listed in order of first use, each used")
    if len(set(map(_pack, shapes))) != len(shapes):
        raise BundleFormatError("shapes must be distinct")
    return False, Counter(shape_of)


def _rebuild(
    wire: Any,
    cols: Any,
    count: int,
    limits: Limits,
    repeated: int,
    held: int,
    has_maps: bool,
) -> tuple[list[bytes], int]:
    """The field bytes of one shape's ``count`` rows, and what the rebuilt maps of the
    block repeat so far (checked against both bounds before anything is built)."""
    builder = _Builder(wire, 1)
    if type(cols) is not list or len(cols) != builder.width:
        raise BundleFormatError("a shape has a column per leaf field")
    values = [_column_values(col, count) for col in cols]
    if has_maps:
        _refuse_map_leaves(builder, values)
    repeated += count * (builder.overhead + sum(extra for _, extra in values))
    if repeated > limits.max_block_bytes:
        raise LimitExceededError("rebuilding the fields would repeat more than the block limit")
    if repeated + held > limits.max_decode_bytes // 2:
        raise LimitExceededError(
            "rebuilding the fields would take more than half of max_decode_bytes"
        )
    try:
        encoded = builder.encode([column for column, _ in values], count)
    except Exception as exc:  # pragma: no cover - canonical decoding leaves no such value
        raise BundleFormatError("fields hold a value type that is not allowed") from exc
    longest = max(map(len, encoded)) if encoded else 0
    if longest > limits.max_fields_bytes:
        raise LimitExceededError(
            f"fields of a change exceed the limit of {limits.max_fields_bytes} bytes"
        )
    if longest > MAX_FIELD_LEVEL:  # shorter maps cannot reach level 500 (a byte a level)
        _refuse_deep_values(builder, values)
    return encoded, repeated


def _level(value: Any, level: int) -> int:
    """The deepest level of ``value`` and what it holds, ``value`` being at ``level``
    (past ``MAX_FIELD_LEVEL`` it stops looking: deep enough to refuse). A loop, not
    recursion: values nest far deeper than Python's recursion limit."""
    deepest = level
    stack = [(value, level)]
    while stack:
        item, at = stack.pop()
        deepest = max(deepest, at)
        if at > MAX_FIELD_LEVEL:
            break
        kind = type(item)
        if kind is list:
            stack += ((v, at + 1) for v in item)
        elif kind is dict:
            stack += ((v, at + 1) for v in item.values())
    return deepest


def _refuse_deep_values(builder: _Builder, values: list[tuple[list[Any], int]]) -> None:
    """A field value sits at most at level 500, its field map at level 1 (§5.1): what
    every decoder of field bytes can read back. Only shapes whose rebuilt maps are
    longer than 500 bytes get here."""
    for depth, (column, _) in zip(builder.depths, values, strict=True):
        kinds = set(map(type, column))
        if (list in kinds or dict in kinds) and max(
            _level(v, depth + 1) for v in column
        ) > MAX_FIELD_LEVEL:
            raise BundleFormatError(
                f"a field value nests deeper than level {MAX_FIELD_LEVEL} of its map"
            )


def _refuse_map_leaves(builder: _Builder, values: list[tuple[list[Any], int]]) -> None:
    """A map above the deepest shape is a nested shape, never a leaf value (§5.2): the
    one reading of ``{"a": {}}``. Checked only in blocks that hold a map at all."""
    for depth, (column, _) in zip(builder.depths, values, strict=True):
        if depth < MAX_SHAPE_DEPTH and dict in set(map(type, column)):
            raise BundleFormatError(
                f"a map value above depth {MAX_SHAPE_DEPTH} must be a nested shape, not a leaf"
            )
