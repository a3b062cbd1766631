"""The canonical encoding of record fields, and the one set of msgpack options.

Untrusted bytes are decoded by ``offsync.unpack`` (``unpack_strict`` here is its
generic form): extension types are refused, map keys must be strings in strictly
increasing order, and what decoding may allocate is bounded. Canonical means: exactly what
``msgpack.packb`` writes for the decoded value (shortest integer and length forms,
64-bit floats, str for text and bin for bytes) with map keys sorted by code point.
Equal field values therefore always have equal bytes, which is what lets replicas
compare states by hashing bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import msgpack

from .errors import BundleFormatError, FieldTypeError, LimitExceededError, UsageError
from .limits import DEFAULT_LIMITS
from .unpack import MAP_COST, VALUE_COST, check_cost, sorted_pairs, unpack

__all__ = [
    "canonical_fields",
    "canonical_value",
    "canonical_values",
    "decode_fields",
    "packb",
    "sorted_pairs",
    "unpack_strict",
]


def packb(value: Any) -> bytes:
    """Encode with the one set of options offsync uses everywhere."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


#: ``packb`` for canonical values only (plain dicts, lists, str, bytes, int, float, bool,
#: None: ``_canonical``'s output), with one packer kept instead of one made per call.
#: Packing those runs no Python code, so under the GIL no other thread can interleave,
#: and a failed pack (an int past 64 bits) leaves the packer empty for the next call.
_pack_plain = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def unpack_strict(data: bytes, what: str) -> Any:
    """Decode one msgpack value that must fill ``data`` exactly, under the default limits
    (``offsync.unpack.unpack`` is the decoder; this is its generic form)."""
    return unpack(data, what)


def decode_fields(data: bytes) -> dict[str, Any]:
    """Decode canonical field bytes that this replica already validated (its own writes,
    and fields rebuilt by the column decoder): no limits. Bytes from elsewhere go
    through ``offsync.unpack``."""
    try:
        value = msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=True)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise BundleFormatError(f"fields are not valid msgpack ({type(exc).__name__})") from exc
    if type(value) is not dict:
        raise BundleFormatError("fields are a map")
    return value


#: What decoding one change's fields may take (estimated as ``offsync.unpack`` does):
#: half the decode budget, so that the segment carrying them, whose columns cost at
#: most about 1.4 times as much, stays within the budget of every reader.
MAX_FIELDS_COST = DEFAULT_LIMITS.max_decode_bytes // 2
#: Fields this long or shorter cannot cost more (no byte is estimated at more than an
#: empty map, the costliest byte), so only longer ones are walked to check.
_FREE_BELOW = MAX_FIELDS_COST // (VALUE_COST + MAP_COST)

#: Arrays and maps a field value may nest: msgpack-python packs 511 levels, and a
#: segment's columns hold a field value five levels down (docs/spec.md §5.2).
MAX_FIELD_DEPTH = 500


#: Value types that are their own canonical form (exact types: subclasses, such as an
#: ``IntEnum``, take the general path, which checks them one by one). Not float: a NaN
#: must become the one canonical NaN.
_PLAIN = frozenset({str, int, bool, type(None), bytes})
_STR_ONLY = frozenset({str})
_DICT_ONLY = frozenset({dict})


def _key_error(value: Mapping[Any, Any]) -> FieldTypeError:
    bad = next(k for k in value if type(k) is not str)
    return FieldTypeError(f"field names and nested map keys must be str, not {type(bad).__name__}")


def _filled(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple)) and len(value) > 0


def _canonical(value: Any, depth: int = 1) -> Any:
    """The canonical value of ``value``: maps as dicts with sorted str keys, tuples as
    lists. Runs once per write and per nested value, so the common shapes (a dict of
    plain values) are checked with a few C-level passes instead of a test per value."""
    if depth > MAX_FIELD_DEPTH or (depth == MAX_FIELD_DEPTH and _filled(value)):
        # (the values of a filled container at the deepest level would be one deeper)
        raise FieldTypeError(f"field values nest more than {MAX_FIELD_DEPTH} arrays or maps deep")
    if type(value) is dict or isinstance(value, Mapping):
        if not set(map(type, value)) <= _STR_ONLY:
            raise _key_error(value)
        # Keys are unique strs, so sorting the pairs never compares two values.
        items = sorted(value.items())
        if set(map(type, value.values())) <= _PLAIN:
            return dict(items)
        return {k: v if type(v) in _PLAIN else _canonical(v, depth + 1) for k, v in items}
    if isinstance(value, (list, tuple)):
        if set(map(type, value)) <= _PLAIN:
            return list(value)
        return [v if type(v) in _PLAIN else _canonical(v, depth + 1) for v in value]
    if isinstance(value, float) and value != value:
        # One NaN on the wire (docs/spec.md §1): payloads do not survive every
        # language's floats, and equal values must have equal bytes.
        return math.nan
    if type(value) is float:  # not in _PLAIN, so that a NaN is seen here
        return value
    if isinstance(value, (int, float, str, bytes)):  # a subclass (exact ones are _PLAIN):
        return msgpack.unpackb(packb(value))  # the plain value its bytes decode to
    raise FieldTypeError(f"a field value of type {type(value).__name__} cannot be stored")


class _Uneven(Exception):
    """Raised inside ``_canonical_maps`` when maps are not the plain case it handles in
    passes; ``canonical_values`` then takes them one by one."""


def _canonical_maps(maps: list[Any], depth: int) -> list[dict[str, Any]]:
    """``_canonical`` of each of ``maps`` (exact dicts at nesting ``depth``), in C-level
    passes over the maps that share their names: the names are checked in one pass and
    sorted once per set of names, each map's values taken in that order by one
    ``itemgetter`` call, and each value column checked in one pass (nested maps by a
    pass of their own, other values that are not plain one by one)."""
    if depth >= MAX_FIELD_DEPTH - 1 or not maps:
        raise _Uneven
    names_of = list(map(tuple, maps))
    if not set(map(type, chain.from_iterable(names_of))) <= _STR_ONLY:
        raise _Uneven  # (canonical_value says which, and how)
    first = names_of[0]
    if names_of.count(first) == len(names_of):
        return _canonical_group(first, maps, depth)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, names in enumerate(names_of):
        groups.setdefault(names, []).append(i)
    out: list[Any] = [None] * len(maps)
    for names, positions in groups.items():
        done = _canonical_group(names, list(map(maps.__getitem__, positions)), depth)
        for i, value in zip(positions, done, strict=True):
            out[i] = value
    return out


def _canonical_group(
    names: tuple[str, ...], maps: list[dict[str, Any]], depth: int
) -> list[dict[str, Any]]:
    """``_canonical_maps`` of maps whose names are all ``names``, in that order."""
    ordered = tuple(sorted(names))
    if len(ordered) < 2:
        if not ordered:
            return [{} for _ in maps]
        rows: Any = zip(map(itemgetter(ordered[0]), maps))
    else:
        rows = map(itemgetter(*ordered), maps)
    columns: list[Any] = list(zip(*rows, strict=True)) if ordered else []
    for i, column in enumerate(columns):
        kinds = set(map(type, column))
        if kinds <= _PLAIN:
            continue
        if kinds == {dict}:
            columns[i] = _canonical_maps(list(column), depth + 1)
        else:
            columns[i] = [v if type(v) in _PLAIN else _canonical(v, depth + 1) for v in column]
    return list(map(dict, map(zip, repeat(ordered), zip(*columns, strict=True))))


def canonical_values(many: list[Any]) -> tuple[list[bytes], list[dict[str, Any]]] | None:
    """``canonical_value`` of each of ``many`` fields maps, for a bulk write: the same
    bytes and values, in passes over whole columns (``_canonical_maps``). None when
    some map is not a plain dict of str names, or would be refused: then the caller
    takes them one by one with ``canonical_value``, which says which and why."""
    try:
        if not set(map(type, many)) <= _DICT_ONLY:
            return None
        values = _canonical_maps(many, 1)
        encoded = list(map(_pack_plain, values))
    except (_Uneven, OverflowError, ValueError, TypeError):
        return None
    if encoded and max(map(len, encoded)) > _FREE_BELOW:
        return None  # (long fields: their decoding cost is checked one by one)
    return encoded, values


def canonical_fields(fields: Mapping[str, Any]) -> bytes:
    """Encode a fields map canonically.

    ``FieldTypeError`` (a ``UsageError`` and a ``TypeError``) for values msgpack cannot
    hold: other types, non-str keys, ints beyond 64 bits, nesting past
    ``MAX_FIELD_DEPTH``; ``UsageError`` for fields whose decoding would cost more than
    ``MAX_FIELDS_COST`` (a megabyte of empty lists, say), which readers would refuse.
    """
    return canonical_value(fields)[0]


def canonical_value(fields: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """``canonical_fields``, and the canonical value it encodes: what ``decode_fields``
    would give back from those bytes (so a writer that seals soon need not decode them)."""
    if type(fields) is not dict and not isinstance(fields, Mapping):
        raise FieldTypeError("fields must be a mapping of str to msgpack-able values")
    try:
        value = _canonical(fields)
        encoded = _pack_plain(value)
    except (OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, FieldTypeError):
            raise
        raise FieldTypeError(f"fields cannot be encoded: {exc}") from exc
    if len(encoded) > _FREE_BELOW:
        try:
            check_cost(encoded, "fields", MAX_FIELDS_COST)
        except LimitExceededError as exc:
            raise UsageError(
                f"fields hold so many arrays, maps and values that decoding them would take "
                f"more than {MAX_FIELDS_COST} bytes of memory; peers would refuse them"
            ) from exc
    return encoded, value
