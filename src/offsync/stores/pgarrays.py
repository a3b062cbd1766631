"""One-dimensional PostgreSQL arrays in the binary wire format, built in one pass.

The PostgreSQL store sends every bulk write as a few array parameters (``INSERT ...
SELECT FROM unnest(...)``). psycopg dumps a Python list by calling an element dumper
per item (and, as text, hex-encodes, regex-tests and quotes every bytea): that was
45-62 % of a centre worker's CPU (benchmarks/ANALYSIS.md, 1.3), still ~20 % with
psycopg's generic binary dumper. Here each array is packed once into the format
``array_recv`` reads, and psycopg passes the bytes through (``register``).

The format: int32 ndim (1), int32 has-nulls flag, uint32 element type oid, int32 length
and int32 lower bound (1) of the dimension, then per element an int32 byte length (-1
for NULL) and the element's binary form (big-endian integers, raw bytes, UTF-8 text).
An empty array is ndim 0 with no dimension.

psycopg is imported only by ``register`` (the store imports it when it opens).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from typing import Any

__all__ = [
    "BoolArray",
    "ByteaArray",
    "Int8Array",
    "Int2Array",
    "TextArray",
    "bool_array",
    "bytea_array",
    "int2_array",
    "int8_array",
    "register",
    "text_array",
]

_HEAD = struct.Struct(">iiIii")
_EMPTY = struct.Struct(">iiI")
_LEN = struct.Struct(">i")
_NULL = _LEN.pack(-1)


class _Array(bytes):
    """An array parameter, already in binary form; ``OID`` is its array type."""

    OID = 0


class ByteaArray(_Array):
    OID = 1001  # bytea[]


class Int8Array(_Array):
    OID = 1016  # int8[]


class Int2Array(_Array):
    OID = 1005  # int2[]


class BoolArray(_Array):
    OID = 1000  # bool[]


class TextArray(_Array):
    OID = 1009  # text[]


def _head(n: int, nulls: bool, element_oid: int) -> bytes:
    return _HEAD.pack(1, int(nulls), element_oid, n, 1) if n else _EMPTY.pack(0, 0, element_oid)


def bytea_array(values: Sequence[bytes | None]) -> ByteaArray:
    """``bytea[]``; None is NULL.

    Without NULLs (the common case), every step runs in C: the lengths packed by
    ``map``, interleaved with the values by ``zip`` and joined once (a Python loop
    appending two parts per element was a third of a spool applier's CPU)."""
    if None not in values:
        present: Sequence[bytes] = values  # type: ignore[assignment]
        lengths = map(_LEN.pack, map(len, present))
        body = b"".join(chain.from_iterable(zip(lengths, present, strict=True)))
        return ByteaArray(_head(len(present), False, 17) + body)
    parts = [b""]
    nulls = False
    pack = _LEN.pack
    for v in values:
        if v is None:
            nulls = True
            parts.append(_NULL)
        else:
            parts.append(pack(len(v)))
            parts.append(v)
    parts[0] = _head(len(values), nulls, 17)
    return ByteaArray(b"".join(parts))


def text_array(values: Sequence[str]) -> TextArray:
    """``text[]`` (no NULLs)."""
    encoded = [v.encode() for v in values]
    parts = [_head(len(values), False, 25)]
    for e in encoded:
        parts.append(_LEN.pack(len(e)))
        parts.append(e)
    return TextArray(b"".join(parts))


def _fixed(values: Sequence[Any], code: str, size: int) -> bytes:
    """Fixed-size elements: packed in one call, then each byte column moved into place
    behind its length by strided slice assignments (C loops, not a Python one)."""
    n = len(values)
    packed = struct.pack(f">{n}{code}", *values)
    step = 4 + size
    out = bytearray(n * step)
    out[3::step] = bytes([size]) * n  # each length is int32 `size`: one nonzero byte
    for k in range(size):
        out[4 + k :: step] = packed[k::size]
    return bytes(out)


def int8_array(values: Sequence[int]) -> Int8Array:
    """``int8[]``; ``struct.error`` for a value outside a signed 64-bit integer."""
    return Int8Array(_head(len(values), False, 20) + _fixed(values, "q", 8))


def int2_array(values: Sequence[int]) -> Int2Array:
    """``int2[]``; ``struct.error`` for a value outside a signed 16-bit integer."""
    return Int2Array(_head(len(values), False, 21) + _fixed(values, "h", 2))


def bool_array(values: Sequence[bool]) -> BoolArray:
    """``bool[]``."""
    return BoolArray(_head(len(values), False, 16) + _fixed([bool(v) for v in values], "?", 1))


def register(conn: Any) -> None:
    """Make ``conn`` send these arrays as they are, in binary (``%b`` placeholders)."""
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    for cls in (ByteaArray, Int8Array, Int2Array, BoolArray, TextArray):

        class _Dumper(Dumper):
            format = Format.BINARY
            oid = cls.OID

            def dump(self, obj: Any) -> Any:
                return obj  # already the wire form: no copy

        conn.adapters.register_dumper(cls, _Dumper)
