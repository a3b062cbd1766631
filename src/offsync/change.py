"""Changes: one write by one site, and their wire encoding.

A change is identified by ``(origin, seq)``. It names the record it writes, the heads of
that record its writer had seen (its causal parents), an HLC timestamp, and either the
canonical encoding of the fields it sets (a put) or nothing (a delete, a tombstone).
Fields stay encoded bytes until a merge needs their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgpack

from .clock import MAX_HLC
from .encoding import decode_fields, packb, validate_fields
from .errors import BundleFormatError, LimitExceededError
from .limits import DEFAULT_LIMITS, Limits

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

    def to_wire(self) -> list[Any]:
        return [
            self.hlc,
            self.collection,
            self.key,
            self.op,
            self.fields,
            [[p.origin, p.seq] for p in self.parents],
        ]


def encode_changes(changes: Sequence[Change]) -> bytes:
    """The ``changes`` bytes of a segment: a msgpack array of change arrays."""
    return packb([c.to_wire() for c in changes])


def _check_name(value: Any, what: str, max_bytes: int) -> str:
    if type(value) is not str or not value:
        raise BundleFormatError(f"change {what} must be a non-empty string")
    if len(value) * 4 > max_bytes and len(value.encode()) > max_bytes:
        raise LimitExceededError(f"change {what} longer than {max_bytes} bytes")
    return value


def decode_changes(
    data: bytes, origin: bytes, first_seq: int, limits: Limits = DEFAULT_LIMITS
) -> list[Change]:
    """Decode and fully validate the changes of a segment (untrusted input)."""
    try:
        # The outer structure has no maps, so no hook is needed; fields stay bytes.
        items = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_no_ext,
            timestamp=3,
            # Bounds every array, so leave room for a change's 6 items and its parents.
            max_array_len=max(limits.max_segment_changes, limits.max_parents, 6),
            max_map_len=0,
        )
    except LimitExceededError:
        raise
    except BundleFormatError:
        raise
    except msgpack.StackError as exc:
        raise LimitExceededError("changes nested too deeply") from exc
    except Exception as exc:
        raise BundleFormatError(f"changes are not valid msgpack ({type(exc).__name__})") from exc
    if type(items) is not list or not items:
        raise BundleFormatError("changes must be a non-empty array")
    if len(items) > limits.max_segment_changes:
        raise LimitExceededError(f"more than {limits.max_segment_changes} changes in a segment")
    out: list[Change] = []
    append = out.append
    new = tuple.__new__  # Change(...) without the Python-level namedtuple __new__
    seq = first_seq
    max_fields = limits.max_fields_bytes
    max_key = limits.max_key_bytes
    collections: set[str] = set()  # names already checked: a segment repeats a few
    for item in items:
        if type(item) is not list or len(item) != 6:
            raise BundleFormatError("a change must be an array of 6 items")
        hlc, collection, key, op, fields, raw_parents = item
        if type(hlc) is not int or not 0 <= hlc <= MAX_HLC:
            raise BundleFormatError("change hlc must be an integer in [0, 2^63)")
        if type(collection) is not str or collection not in collections:
            _check_name(collection, "collection", limits.max_collection_bytes)
            collections.add(collection)
        if type(key) is not str or not key or (len(key) * 4 > max_key):
            _check_name(key, "key", max_key)
        if op == PUT and type(op) is int:
            if type(fields) is not bytes:
                raise BundleFormatError("a put must carry fields")
            validate_fields(fields, max_fields)
        elif op == DELETE and type(op) is int:
            if fields is not None:
                raise BundleFormatError("a delete carries no fields")
        else:
            raise BundleFormatError("change op must be 0 (put) or 1 (delete)")
        if type(raw_parents) is not list:
            raise BundleFormatError("change parents must be an array")
        parents: tuple[ChangeId, ...] = ()
        if raw_parents:
            parents = _parents(raw_parents, origin, seq, limits)
        append(new(Change, (origin, seq, hlc, collection, key, op, fields, parents)))
        seq += 1
    return out


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


def _no_ext(code: int, data: bytes) -> Any:
    raise BundleFormatError(f"msgpack extension type {code} is not allowed")
