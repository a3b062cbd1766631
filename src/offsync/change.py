"""Changes of format 3: one write by one site, in one stream.

A change is identified by ``(origin, seq)`` within its stream ``(origin, partition)``:
each origin numbers the changes of each of its partitions 1, 2, 3 … without gaps. A
record lives in exactly one partition, so the ids that name a record's changes
(parents, heads, conflicts) are unambiguous; where a change must be named globally
it is named with its record or partition (docs/spec.md §4).

Besides format 2's items a change carries the schema version it was written under
(0: unversioned), the author id the application gave (a clerk id, or None), and an
op that may be an **erase order** (op 2, written by an authority into the erased
record's partition, its fields ``{"reason": str}``). A put whose fields were erased
(a row of a redacted segment) has op put and ``fields`` None.

``Change`` is a named tuple, not a validating dataclass: decoders build hundreds of
thousands of them per second from columns they have already checked as wholes.
Sealing checks every change it encodes (``columns.encode_block``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgpack

from .encoding import canonical_fields as _canonical_fields_v2
from .encoding import decode_fields, packb
from .errors import FieldTypeError, StorageError, UsageError
from .scope import Partition, Stream, new_partition, new_stream

__all__ = [
    "CANONICAL_NAN",
    "DELETE",
    "ERASE",
    "MAX_AUTHOR_BYTES",
    "MAX_SCHEMA",
    "OPS",
    "PUT",
    "Change",
    "ChangeId",
    "canonical_fields",
    "erase_fields",
    "has_noncanonical_nan",
    "holds_noncanonical_nan",
]

PUT = 0
DELETE = 1
#: An erase order: the record's puts are redacted everywhere (docs/spec.md §10.3).
ERASE = 2
OPS = (PUT, DELETE, ERASE)
#: Format rules: an author id is 1-64 UTF-8 bytes; a schema version is below 2^32.
MAX_AUTHOR_BYTES = 64
MAX_SCHEMA = (1 << 32) - 1
#: The one encoding of a NaN field value (a quiet NaN, sign and payload zero).
CANONICAL_NAN = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
_NAN_BITS = CANONICAL_NAN[1:]


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
    #: Canonical field bytes of a put or an erase order; None for a delete and for an
    #: erased put (a row of a redacted segment).
    fields: bytes | None
    parents: tuple[ChangeId, ...] = ()
    #: The partition prefix: the change is in stream (origin, (collection, prefix)).
    prefix: str = ""
    #: The collection's schema version it was written under; 0: unversioned.
    schema: int = 0
    #: Who entered it (a clerk id the application gave), or None.
    author: str | None = None

    @property
    def id(self) -> ChangeId:
        return ChangeId(self.origin, self.seq)

    @property
    def stamp(self) -> tuple[int, bytes, int]:
        """The total order used to break ties: HLC, then origin, then seq."""
        return (self.hlc, self.origin, self.seq)

    @property
    def partition(self) -> Partition:
        return new_partition(self.collection, self.prefix)

    @property
    def stream(self) -> Stream:
        return new_stream(self.origin, self.partition)

    @property
    def is_delete(self) -> bool:
        return self.op == DELETE

    @property
    def is_erase(self) -> bool:
        """An erase order (op 2)."""
        return self.op == ERASE

    @property
    def is_erased(self) -> bool:
        """A put whose fields were erased: only its stub is held."""
        return self.op == PUT and self.fields is None

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
                self.prefix,
                self.schema,
                self.author,
            ]
        )

    @classmethod
    def from_row(cls, origin: bytes, seq: int, row: bytes) -> Change:
        """A change from ``to_row``'s bytes (the replica's own, not from elsewhere)."""
        try:
            hlc, collection, key, op, fields, parents, prefix, schema, author = msgpack.unpackb(
                row, raw=False
            )
            ids = tuple(ChangeId(o, s) for o, s in parents)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise StorageError(f"not a change row ({type(exc).__name__})") from exc
        return cls(origin, seq, hlc, collection, key, op, fields, ids, prefix, schema, author)


def has_noncanonical_nan(encoded: bytes) -> bool:
    """Whether msgpack ``encoded`` holds a float64 NaN other than ``CANONICAL_NAN``.

    A NaN's 8 bytes start 7f f or ff f after the ``cb`` marker, which valid UTF-8
    never holds (cb is a lead byte, 7f and ff are not continuation bytes): so only
    blocks with such a pair inside a bin or an integer pay for the exact walk.
    """
    at = encoded.find(b"\xcb")  # memchr: a two-byte ``in`` is a hundred times slower
    while at >= 0 and encoded[at + 1 : at + 2] not in (b"\x7f", b"\xff"):
        at = encoded.find(b"\xcb", at + 1)
    if at < 0:
        return False
    return holds_noncanonical_nan(decode_fields(encoded))


def holds_noncanonical_nan(value: Any) -> bool:
    """Whether a decoded value holds a NaN whose bits are not ``CANONICAL_NAN``'s."""
    kind = type(value)
    if kind is float:
        return math.isnan(value) and struct.pack(">d", value) != _NAN_BITS
    if kind is list:
        return any(map(holds_noncanonical_nan, value))
    if kind is dict:
        return any(map(holds_noncanonical_nan, value.values()))
    return False


def _canonical_nan(value: Any) -> Any:
    kind = type(value)
    if kind is float and math.isnan(value):
        return math.nan  # CPython's NaN is the quiet NaN 7ff8000000000000
    if kind is list:
        return [_canonical_nan(v) for v in value]
    if kind is dict:
        return {k: _canonical_nan(v) for k, v in value.items()}
    return value


def canonical_fields(fields: Mapping[str, Any]) -> bytes:
    """Encode a fields map canonically for format 3 (docs/spec.md §1).

    Format 2's canonical map, except that every NaN is written as the one quiet NaN
    ``7ff8000000000000``: NaN payloads and signs do not survive every language's
    floats, so equal values could otherwise have unequal bytes. ``-0.0`` stays apart
    from ``0.0`` (their bytes differ, and every language keeps both).
    """
    encoded = _canonical_fields_v2(fields)
    if has_noncanonical_nan(encoded):
        encoded = packb(_canonical_nan(decode_fields(encoded)))
    return encoded


def erase_fields(reason: str) -> bytes:
    """The fields of an erase order: ``{"reason": reason}``."""
    if type(reason) is not str:
        raise UsageError("an erase order's reason is a str")
    try:
        return canonical_fields({"reason": reason})
    except FieldTypeError as exc:
        raise UsageError("an erase order's reason is text") from exc
