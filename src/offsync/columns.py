"""The column codec of format 3: a segment's changes as columns (docs/spec.md §5).

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

from collections.abc import Sequence
from functools import partial
from itertools import accumulate, repeat
from operator import add, is_, le, sub
from typing import Any, NamedTuple

import msgpack

from .change import (
    DELETE,
    ERASE,
    MAX_AUTHOR_BYTES,
    MAX_SCHEMA,
    OPS,
    PUT,
    Change,
    ChangeId,
    has_noncanonical_nan,
)
from .clock import MAX_HLC
from .content import (
    MAX_FIELD_LEVEL,
    MAX_SHAPE_DEPTH,
    MAX_TABLE,
    decode_content,
    encode_content,
    nan_like,
    refuse_noncanonical_nan,
)
from .encoding import decode_fields, packb
from .errors import BundleFormatError, LimitExceededError, UsageError
from .limits import DEFAULT_LIMITS, Limits
from .scope import Partition
from .unpack import sorted_pairs, unpack

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

SKELETON_COLUMNS = 8
CONTENT_COLUMNS = 3
#: The per-segment random secret the commitment's salts derive from (§6).
SECRET_BYTES = 32
MAX_U63 = (1 << 63) - 1

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_new_change = partial(tuple.__new__, Change)  # Change(*row) without the Python-level __new__


class Block(NamedTuple):
    """A decoded, validated block."""

    changes: list[Change]
    #: The segment's secret; None in a redacted block (it left with the erased values).
    secret: bytes | None
    #: The decoded skeleton, whose canonical bytes the commitment hashes.
    skeleton: list[Any]


# -- encoding -----------------------------------------------------------------------------


_is_none = partial(is_, None)


def _plainly_sealable(changes: Sequence[Change], partition: Partition, limits: Limits) -> bool:
    """Whether every change passes ``_check_for_sealing``'s checks, found with a few
    C-level passes over whole columns (a writer's usual segment: puts and deletes of
    new records, no parents); False when that is not plain, and then the change by
    change walk decides (and says which check failed)."""
    collection, prefix = partition
    columns = list(zip(*changes, strict=True))
    hlcs, keys, ops, fields, parents = columns[2], columns[4], columns[5], columns[6], columns[7]
    schemas, authors = columns[9], columns[10]
    if set(columns[3]) != {collection} or set(columns[8]) != {prefix}:
        return False
    if (
        set(map(type, keys)) != {str}
        or not all(keys)
        or max(map(len, keys)) * 4 > (limits.max_key_bytes)
    ):  # (4 UTF-8 bytes a code point at most)
        return False
    if prefix and not all(map(str.startswith, keys, repeat(prefix))):
        return False
    if set(map(type, hlcs)) != {int} or min(hlcs) < 0 or max(hlcs) > MAX_HLC:
        return False
    op_set = set(ops)
    if not op_set <= {PUT, DELETE} or set(map(type, ops)) != {int}:
        return False  # (erase orders: their fields are checked one by one)
    kinds = set(map(type, fields))
    present = [f for f in fields if f is not None] if DELETE in op_set else fields
    if list(map(DELETE.__eq__, ops)) != list(map(_is_none, fields)):
        return False
    if not kinds <= {bytes, type(None)} or (
        present and max(map(len, present)) > limits.max_fields_bytes
    ):
        return False
    if nan_like(b"".join(present)):
        return False
    if set(map(type, schemas)) != {int} or min(schemas) < 0 or max(schemas) > MAX_SCHEMA:
        return False
    if set(map(type, parents)) != {tuple} or any(parents):
        return False
    for author in set(authors) - {None}:
        _check_author(author, UsageError, UsageError)
    return True


def _check_for_sealing(changes: Sequence[Change], partition: Partition, limits: Limits) -> None:
    """``UsageError`` for a change that receivers would refuse (§5.3)."""
    collection, prefix = partition
    if not 0 < len(changes) <= limits.max_segment_changes:
        raise UsageError(f"a segment holds 1 to {limits.max_segment_changes} changes")
    try:
        if _plainly_sealable(changes, partition, limits):
            return
    except TypeError:  # an unhashable or unordered value: the walk names it
        pass
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


def _front_coded(keys: Sequence[str]) -> tuple[list[int], list[str]]:
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


def _encode_skeleton(changes: Sequence[Change]) -> bytes:
    """The skeleton's columns, each made in a pass over the changes."""
    columns = list(zip(*changes, strict=True))
    hlcs, keys, ops, parents = columns[2], columns[4], columns[5], columns[7]
    schemas, authors_of = columns[9], columns[10]
    key_prefix, key_suffix = _front_coded(keys)
    authors: dict[str, int] = {}
    if set(authors_of) == {None}:
        author_of: list[int | None] = [None] * len(changes)
    else:
        author_of = [None if a is None else authors.setdefault(a, len(authors)) for a in authors_of]
    return packb(
        [
            list(map(sub, hlcs, (0, *hlcs))),
            key_prefix,
            key_suffix,
            list(ops),
            [[[p.origin, p.seq] for p in ps] for ps in parents]
            if any(parents)
            else [[]] * len(changes),
            list(schemas),
            list(authors),
            author_of,
        ]
    )


def encode_block(
    changes: Sequence[Change],
    partition: Partition,
    secret: bytes,
    limits: Limits = DEFAULT_LIMITS,
    values: Sequence[dict[str, Any] | None] | None = None,
) -> tuple[bytes, bytes]:
    """The canonical ``[skeleton, content, secret]`` of a segment's changes (before
    compression), and the skeleton's own bytes (the commitment hashes them).
    ``UsageError`` for a change receivers would refuse. ``values``: the changes' fields
    decoded, when the caller holds them (``encode_content``)."""
    if type(secret) is not bytes or len(secret) != SECRET_BYTES:
        raise UsageError(f"a segment's secret is {SECRET_BYTES} random bytes")
    _check_for_sealing(changes, partition, limits)
    if len({c.author for c in changes} - {None}) > limits.max_segment_authors:
        raise UsageError(f"a segment names at most {limits.max_segment_authors} authors")
    skeleton = _encode_skeleton(changes)
    content = encode_content([c.fields for c in changes], values)
    return b"\x93" + skeleton + content + _pack(secret), skeleton


def encode_redacted_block(skeleton: bytes, fields: Sequence[bytes | None]) -> bytes:
    """The canonical ``[skeleton, content']`` of a redacted segment: the skeleton as
    the origin sealed it, the content of the rows still held (None: an erased put, a
    delete). Nothing of an erased row's values is left, not even in a table."""
    return b"\x92" + skeleton + encode_content(fields)


# -- decoding -----------------------------------------------------------------------------


def _unpack(data: bytes, limits: Limits, whole: bool) -> tuple[list[Any], list[Any], Any, bool]:
    """The block's skeleton, content and secret (None when redacted), checked for
    shape, and whether it holds any map (maps are rare; only then are leaves checked
    for maps above the deepest shape)."""
    # An array is either one of the columns (n items, n at most max_segment_changes)
    # or a field value (its items take at least a byte each of a change's fields).
    longest = max(limits.max_segment_changes, limits.max_fields_bytes)
    maps = [False]

    def pairs(items: list[tuple[Any, Any]]) -> dict[str, Any]:
        maps[0] = True
        return sorted_pairs(items)

    value = unpack(
        data, "segment block", limits, max_items=longest, canonical=True, pairs_hook=pairs
    )
    if type(value) is not list or len(value) != (3 if whole else 2):
        raise BundleFormatError(
            "a block is [skeleton, content, secret]"
            if whole
            else "a redacted block is [skeleton, content]"
        )
    skeleton, content = value[0], value[1]
    secret = value[2] if whole else None
    if whole and (type(secret) is not bytes or len(secret) != SECRET_BYTES):
        raise BundleFormatError(f"a block's secret is {SECRET_BYTES} bytes")
    if type(skeleton) is not list or len(skeleton) != SKELETON_COLUMNS:
        raise BundleFormatError(f"a block's skeleton is {SKELETON_COLUMNS} columns")
    if type(content) is not list or len(content) != CONTENT_COLUMNS:
        raise BundleFormatError(f"a block's content is {CONTENT_COLUMNS} columns")
    return skeleton, content, secret, maps[0]


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
    skeleton, content, secret, has_maps = _unpack(data, limits, erased is None)
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
    fields = decode_content(content, ops, op_set, n, erased, limits, len(data), has_maps)
    if nan_like(data):
        refuse_noncanonical_nan(content)
    if ERASE in op_set:
        _check_erase_orders(ops, fields)
    columns = (hlcs, repeat(collection), keys, ops, fields, parent_ids, repeat(prefix))
    rows = zip(repeat(origin), range(first_seq, first_seq + n), *columns, schema_col, names)
    return Block(list(map(_new_change, rows)), secret, skeleton)


def _ints(value: Any, n: int, what: str) -> list[int]:
    if type(value) is not list or len(value) != n or not set(map(type, value)) <= {int}:
        raise BundleFormatError(f"changes: {what} must be an array of {n} integers")
    return value


def _check_erase_orders(ops: list[int], fields: list[bytes | None]) -> None:
    for op, encoded in zip(ops, fields, strict=True):
        if op == ERASE and (encoded is None or not _is_erase_fields(encoded)):
            raise BundleFormatError('an erase order\'s fields are exactly {"reason": str}')


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
