"""The column codec of format 3: a segment's changes as columns (docs/spec-v3.md §5).

A segment's block is one zstd frame of the canonical msgpack array

    [skeleton, content, secret]
    skeleton = [hlc, key_prefix, key_suffix, op, parents, schema, authors, author]
    content  = [shapes, shape, values]

Field values of one name sit next to each other, HLCs as deltas, keys front-coded:
that is what makes a segment compress to a fraction of the row form, and it lets a
receiver decode a segment with a few C-level passes over whole columns instead of a
Python loop per change and per field. The skeleton is what a redacted segment keeps
whole (the commitment hashes it); the content is what erasure removes rows from.

Exactly one encoding is valid for a run of changes (the spec lists every choice:
shortest integers, longest shared key prefixes, tables in order of first use,
dictionary coding exactly when its conditions hold, nested maps as nested shapes), and
a decoder refuses every other, so that every implementation accepts and refuses the
same blocks. ``encode_block``/``decode_block`` convert between the columns and
``Change`` tuples, whose fields are the canonical map bytes of §5.1.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import accumulate, repeat
from operator import add, is_, itemgetter, le
from typing import Any, NamedTuple, TypeAlias

import msgpack

from ..clock import MAX_HLC
from ..encoding import MAX_FIELD_DEPTH, decode_fields, packb
from ..errors import BundleFormatError, LimitExceededError, UsageError
from ..limits import DEFAULT_LIMITS, Limits
from ..scope import Partition
from ..unpack import sorted_pairs, unpack
from .change import (
    CANONICAL_NAN,
    DELETE,
    ERASE,
    MAX_AUTHOR_BYTES,
    MAX_SCHEMA,
    OPS,
    PUT,
    Change,
    ChangeId,
    has_noncanonical_nan,
    holds_noncanonical_nan,
)

__all__ = [
    "CONTENT_COLUMNS",
    "MAX_FIELD_LEVEL",
    "MAX_SHAPE_DEPTH",
    "MAX_TABLE",
    "SECRET_BYTES",
    "SKELETON_COLUMNS",
    "Block",
    "decode_block",
    "encode_block",
    "encode_redacted_block",
]

#: Nested maps deeper than this stay whole values in one column instead of becoming
#: columns of their own; a decoder refuses shapes nested deeper.
MAX_SHAPE_DEPTH = 16
SKELETON_COLUMNS = 8
CONTENT_COLUMNS = 3
#: The per-segment random secret the commitment's salts derive from (§6).
SECRET_BYTES = 32
#: Entries of a dictionary-coded column's table: its indexes are one byte each.
MAX_TABLE = 256
#: Format rule: a field value sits at most at this level, its field map at level 1
#: (``offsync.encoding`` refuses deeper fields when they are written).
MAX_FIELD_LEVEL = MAX_FIELD_DEPTH
#: Memory of one rebuilt field map besides its bytes: a bytes object's header, its slot.
FIELDS_OBJECT_COST = 56
MAX_U63 = (1 << 63) - 1

Shape: TypeAlias = tuple[tuple[str, "Shape | None"], ...]
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
_pack = _PACKER.pack
_new_change = partial(tuple.__new__, Change)  # Change(*row) without the Python-level __new__
_is_none = partial(is_, None)


class Block(NamedTuple):
    """A decoded, validated block."""

    changes: list[Change]
    #: The segment's secret; None in a redacted block (it left with the erased values).
    secret: bytes | None
    #: The decoded skeleton, whose canonical bytes the commitment hashes.
    skeleton: list[Any]


# -- encoding -----------------------------------------------------------------------------


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


def _column(values: list[Any]) -> list[Any]:
    """A column as ``[nil, values]``, or ``[table, indexes]`` exactly when every value
    is a str and the distinct values are at most 256 and at most half the rows (the
    table in order of first occurrence): one byte per row before compression, rebuilt
    by the receiver in one C-level pass."""
    if values and all(type(v) is str for v in values):
        table: dict[str, int] = {}
        indexes = [table.setdefault(v, len(table)) for v in values]
        if len(table) <= MAX_TABLE and len(table) * 2 <= len(values):
            return [list(table), bytes(indexes)]
    return [None, values]


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _encode_content(fields: Sequence[bytes | None]) -> bytes:
    """``[shapes, shape, values]`` of the rows' field bytes (None: no shape)."""
    shapes: dict[Shape, int] = {}
    shape_of: list[int | None] = []
    columns: list[list[list[Any]]] = []
    for encoded in fields:
        if encoded is None:
            shape_of.append(None)
            continue
        value = decode_fields(encoded)
        shape = _shape(value)
        i = shapes.get(shape)
        if i is None:
            i = shapes[shape] = len(shapes)
            columns.append([[] for _ in range(_leaf_count(shape))])
        shape_of.append(i)
        leaves: list[Any] = []
        _leaves(value, shape, leaves)
        for column, leaf in zip(columns[i], leaves, strict=True):
            column.append(leaf)
    return packb(
        [
            [_shape_wire(s) for s in shapes],
            shape_of,
            [[_column(col) for col in cols] for cols in columns],
        ]
    )


def _check_for_sealing(changes: Sequence[Change], partition: Partition, limits: Limits) -> None:
    """``UsageError`` for a change that receivers would refuse (§5.3)."""
    collection, prefix = partition
    if not 0 < len(changes) <= limits.max_segment_changes:
        raise UsageError(f"a segment holds 1 to {limits.max_segment_changes} changes")
    for c in changes:
        if c.collection != collection or c.prefix != prefix:
            raise UsageError("a segment seals the changes of one partition")
        if type(c.key) is not str or not c.key.startswith(prefix):
            raise UsageError("a change's key starts with its partition's prefix")
        if not c.key or len(c.key.encode()) > limits.max_key_bytes:
            raise UsageError(f"a key is 1 to {limits.max_key_bytes} UTF-8 bytes")
        if type(c.hlc) is not int or not 0 <= c.hlc <= MAX_HLC:
            raise UsageError("a change's hlc is an int in [0, 2^63)")
        if c.op not in OPS or type(c.op) is not int:
            raise UsageError("a change's op is PUT, DELETE or ERASE")
        if (c.fields is None) != (c.op == DELETE):
            raise UsageError("a delete has no fields; a put or an erase order has them")
        if c.fields is not None:
            if type(c.fields) is not bytes or len(c.fields) > limits.max_fields_bytes:
                raise UsageError(f"fields are canonical bytes of at most {limits.max_fields_bytes}")
            if has_noncanonical_nan(c.fields):
                raise UsageError(
                    "fields hold a NaN other than the canonical one (v3.canonical_fields)"
                )
            if c.op == ERASE and not _is_erase_fields(c.fields):
                raise UsageError('an erase order\'s fields are {"reason": str}')
        if type(c.schema) is not int or not 0 <= c.schema <= MAX_SCHEMA:
            raise UsageError("a change's schema is an int in [0, 2^32)")
        if c.author is not None:
            _check_author(c.author, UsageError, UsageError)
        _check_parents(c.parents, c.origin, c.seq, limits)


def _check_parents(parents: Any, origin: bytes, seq: int, limits: Limits) -> None:
    if type(parents) is not tuple or len(parents) > limits.max_parents:
        raise UsageError(f"parents are a tuple of at most {limits.max_parents} ChangeIds")
    previous: tuple[bytes, int] | None = None
    for p in parents:
        if not (
            isinstance(p, tuple)
            and len(p) == 2
            and type(p[0]) is bytes
            and len(p[0]) == 32
            and type(p[1]) is int
            and 1 <= p[1] <= MAX_U63
        ):
            raise UsageError("a parent is a ChangeId(32-byte origin, seq)")
        if previous is not None and tuple(p) <= previous:
            raise UsageError("parents are sorted and unique")
        if p[0] == origin and p[1] >= seq:
            raise UsageError("a change cannot descend from a later change of its own stream")
        previous = (p[0], p[1])


def _is_erase_fields(fields: bytes) -> bool:
    value = decode_fields(fields)
    return list(value) == ["reason"] and type(value["reason"]) is str


def _check_author(value: Any, empty: type[Exception], long: type[Exception]) -> str:
    if type(value) is not str or not value:
        raise empty("an author id is a non-empty str")
    size = len(value) if value.isascii() else len(value.encode())
    if size > MAX_AUTHOR_BYTES:
        raise long(f"an author id is at most {MAX_AUTHOR_BYTES} UTF-8 bytes")
    return value


def _encode_skeleton(changes: Sequence[Change]) -> bytes:
    hlc_deltas: list[int] = []
    key_prefix: list[int] = []
    key_suffix: list[str] = []
    authors: dict[str, int] = {}
    author_of: list[int | None] = []
    previous_hlc, previous_key = 0, ""
    for c in changes:
        hlc_deltas.append(c.hlc - previous_hlc)
        previous_hlc = c.hlc
        n = _common_prefix(previous_key, c.key)
        key_prefix.append(n)
        key_suffix.append(c.key[n:])
        previous_key = c.key
        author_of.append(None if c.author is None else authors.setdefault(c.author, len(authors)))
    return packb(
        [
            hlc_deltas,
            key_prefix,
            key_suffix,
            [c.op for c in changes],
            [[[p.origin, p.seq] for p in c.parents] for c in changes],
            [c.schema for c in changes],
            list(authors),
            author_of,
        ]
    )


def encode_block(
    changes: Sequence[Change],
    partition: Partition,
    secret: bytes,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[bytes, bytes]:
    """The canonical ``[skeleton, content, secret]`` of a segment's changes (before
    compression), and the skeleton's own bytes (the commitment hashes them).
    ``UsageError`` for a change receivers would refuse."""
    if type(secret) is not bytes or len(secret) != SECRET_BYTES:
        raise UsageError(f"a segment's secret is {SECRET_BYTES} random bytes")
    _check_for_sealing(changes, partition, limits)
    if len({c.author for c in changes} - {None}) > limits.max_segment_authors:
        raise UsageError(f"a segment names at most {limits.max_segment_authors} authors")
    skeleton = _encode_skeleton(changes)
    content = _encode_content([c.fields for c in changes])
    return b"\x93" + skeleton + content + _pack(secret), skeleton


def encode_redacted_block(skeleton: bytes, fields: Sequence[bytes | None]) -> bytes:
    """The canonical ``[skeleton, content']`` of a redacted segment: the skeleton as
    the origin sealed it, the content of the rows still held (None: an erased put, a
    delete). Nothing of an erased row's values is left, not even in a table."""
    return b"\x92" + skeleton + _encode_content(fields)


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


def _ints(value: Any, n: int, what: str) -> list[int]:
    if type(value) is not list or len(value) != n or not set(map(type, value)) <= {int}:
        raise BundleFormatError(f"changes: {what} must be an array of {n} integers")
    return value


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


def decode_block(
    data: bytes,
    origin: bytes,
    partition: Partition,
    first_seq: int,
    limits: Limits = DEFAULT_LIMITS,
    *,
    erased: Sequence[int] | None = None,
) -> Block:
    """Decode and fully validate a segment's decompressed block (untrusted input).

    ``erased``: the sorted indexes of the erased rows of a redacted block
    (``[skeleton, content']``, no secret); None for a whole block. Every check is a
    pass over a whole column, mostly in C; the one Python loop per change rebuilds
    keys from their front coding.
    """
    # An array is either one of the columns (n items, n at most max_segment_changes)
    # or a field value (its items take at least a byte each of a change's fields).
    longest = max(limits.max_segment_changes, limits.max_fields_bytes)
    maps = [False]  # whether any map was decoded: maps are rare in blocks

    def pairs(items: list[tuple[Any, Any]]) -> dict[str, Any]:
        maps[0] = True
        return sorted_pairs(items)

    value = unpack(
        data, "segment block", limits, max_items=longest, canonical=True, pairs_hook=pairs
    )
    parts = 3 if erased is None else 2
    if type(value) is not list or len(value) != parts:
        raise BundleFormatError(
            "a block is [skeleton, content, secret]"
            if erased is None
            else "a redacted block is [skeleton, content]"
        )
    skeleton, content = value[0], value[1]
    secret: bytes | None = None
    if erased is None:
        secret = value[2]
        if type(secret) is not bytes or len(secret) != SECRET_BYTES:
            raise BundleFormatError(f"a block's secret is {SECRET_BYTES} bytes")
    if type(skeleton) is not list or len(skeleton) != SKELETON_COLUMNS:
        raise BundleFormatError(f"a block's skeleton is {SKELETON_COLUMNS} columns")
    if type(content) is not list or len(content) != CONTENT_COLUMNS:
        raise BundleFormatError(f"a block's content is {CONTENT_COLUMNS} columns")
    deltas, key_prefix, suffix, ops, parents, schemas, authors, author_of = skeleton
    if type(deltas) is not list or not deltas:
        raise BundleFormatError("a block holds at least one change")
    n = len(deltas)
    if n > limits.max_segment_changes:
        raise LimitExceededError(f"more than {limits.max_segment_changes} changes in a segment")
    if erased and erased[-1] >= n:
        raise BundleFormatError("a redaction erases a row past the changes of its block")
    hlcs = list(accumulate(_ints(deltas, n, "hlc")))
    if min(hlcs) < 0 or max(hlcs) > MAX_HLC:
        raise BundleFormatError("change hlc must be an integer in [0, 2^63)")
    collection, prefix = partition
    keys = _keys(_ints(key_prefix, n, "key prefixes"), suffix, n, prefix, limits.max_key_bytes)
    op_set = {PUT} if _ints(ops, n, "ops").count(PUT) == n else set(ops)
    if not op_set <= {PUT, DELETE, ERASE}:
        raise BundleFormatError("a change's op is 0 (put), 1 (delete) or 2 (erase order)")
    schema_col = _ints(schemas, n, "schemas")
    if schema_col.count(0) != n and (min(schema_col) < 0 or max(schema_col) > MAX_SCHEMA):
        raise BundleFormatError("a change's schema is an integer in [0, 2^32)")
    names = _authors(authors, author_of, n, limits)
    parent_ids = _parent_column(parents, n, origin, first_seq, limits)
    fields = _fields(content, ops, op_set, n, erased, limits, len(data), maps[0])
    if _nan_like(data):
        _refuse_noncanonical_nan(content)
    if ERASE in op_set:
        for i in range(n):
            encoded = fields[i]
            if ops[i] == ERASE and (encoded is None or not _is_erase_fields(encoded)):
                raise BundleFormatError('an erase order\'s fields are exactly {"reason": str}')
    changes = list(
        map(
            _new_change,
            zip(
                repeat(origin),
                range(first_seq, first_seq + n),
                hlcs,
                repeat(collection),
                keys,
                ops,
                fields,
                parent_ids,
                repeat(prefix),
                schema_col,
                names,
            ),
        )
    )
    return Block(changes, secret, skeleton)


_INFINITIES = (b"\xcb\x7f\xf0" + bytes(6), b"\xcb\xff\xf0" + bytes(6))


def _nan_like(data: bytes) -> bool:
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


def _refuse_noncanonical_nan(content: list[Any]) -> None:
    if holds_noncanonical_nan(content[2]):
        raise BundleFormatError("a NaN field value must be the canonical NaN 7ff8000000000000")


def _keys(prefix: list[int], suffix: Any, n: int, start: str, max_key: int) -> list[str]:
    """The keys from their front coding, which must be the canonical one (§5.2): each
    shares with the key before it the longest prefix they have in common (0 for the
    first), and every key starts with the partition prefix ``start``."""
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
            _check_key(key, max_key)
    if start and (not keys[0].startswith(start) or (n > 1 and min(prefix[1:]) < len(start))):
        # Canonical front coding: each later key shares the partition prefix with the
        # one before it, so its key prefix covers it.
        raise BundleFormatError("a key does not start with its segment's partition prefix")
    return keys


def _check_key(value: Any, max_bytes: int) -> str:
    if type(value) is not str or not value:
        raise BundleFormatError("change key must be a non-empty string")
    if len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
        raise LimitExceededError(f"change key longer than {max_bytes} bytes")
    return value


def _authors(authors: Any, author_of: Any, n: int, limits: Limits) -> list[str | None]:
    """Each change's author id: ``authors`` holds each used id once, in order of first
    use; ``author_of`` indexes it (or is nil)."""
    if type(authors) is not list:
        raise BundleFormatError("changes: authors must be an array of str")
    if len(authors) > limits.max_segment_authors:
        raise LimitExceededError(f"more than {limits.max_segment_authors} authors in a segment")
    if type(author_of) is not list or len(author_of) != n:
        raise BundleFormatError("changes: author indexes must hold an item per change")
    if not authors:
        if author_of.count(None) != n:
            raise BundleFormatError("an author index points outside the authors")
        return [None] * n
    for name in authors:
        _check_author(name, BundleFormatError, LimitExceededError)
    if not set(map(type, author_of)) <= {int, type(None)}:
        raise BundleFormatError("a change's author index must be an integer or nil")
    order = [i for i in dict.fromkeys(author_of) if i is not None]
    if order != list(range(len(authors))) or len(set(authors)) != len(authors):
        raise BundleFormatError(
            "authors must be distinct and listed in order of first use, each used"
        )
    return list(map(dict(enumerate(authors)).get, author_of))


def _parent_column(
    parents: Any, n: int, origin: bytes, first_seq: int, limits: Limits
) -> list[tuple[ChangeId, ...]]:
    if type(parents) is not list or len(parents) != n or not set(map(type, parents)) <= {list}:
        raise BundleFormatError("changes: parents must hold an array per change")
    if not any(parents):
        return [()] * n
    return [_parents(p, origin, first_seq + i, limits) if p else () for i, p in enumerate(parents)]


def _parents(raw: list[Any], origin: bytes, seq: int, limits: Limits) -> tuple[ChangeId, ...]:
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
            or not 1 <= p[1] <= MAX_U63
        ):
            raise BundleFormatError("a parent must be [32-byte origin, seq]")
        pid = ChangeId(p[0], p[1])
        if parents and pid <= parents[-1]:
            raise BundleFormatError("parents must be sorted and unique")
        if pid.origin == origin and pid.seq >= seq:
            raise BundleFormatError("a change cannot descend from a later change of its stream")
        parents.append(pid)
    return tuple(parents)


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


def _fields(
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
    like the block itself (docs/spec-v3.md §5.3). A block therefore cannot make its
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
    # The bulk case, one shape and no delete, is one C-level count (types are checked).
    whole = shape_of.count(0) == n
    if not whole:
        order = list(dict.fromkeys(shape_of))
        if None in order:
            order.remove(None)
        if order != list(range(len(shapes))):
            raise BundleFormatError("shapes must be listed in order of first use, each used")
        if len(set(map(_pack, shapes))) != len(shapes):
            raise BundleFormatError("shapes must be distinct")
    elif len(shapes) != 1:
        raise BundleFormatError("shapes must be listed in order of first use, each used")
    rows: Counter[int | None] | dict[int, int] = {0: n} if whole else Counter(shape_of)
    built: dict[int | None, Iterator[bytes | None]] = {None: repeat(None)}
    repeated = 0
    max_fields = limits.max_fields_bytes
    # What the rebuilt maps take besides what they repeat: the block's own values, and
    # a bytes object and its slot per row with a shape.
    held = block_bytes + n * FIELDS_OBJECT_COST
    for i, (wire, cols) in enumerate(zip(shapes, columns, strict=True)):
        count = rows[i]
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
        if longest > max_fields:
            raise LimitExceededError(f"fields of a change exceed the limit of {max_fields} bytes")
        if longest > MAX_FIELD_LEVEL:  # shorter maps cannot reach level 500 (a byte a level)
            _refuse_deep_values(builder, values)
        built[i] = iter(encoded)
    if whole:  # one shape, every row: its rows are the changes
        return list(built[0])
    return list(map(next, map(built.__getitem__, shape_of)))


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
