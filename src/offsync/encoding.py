"""Strict msgpack for untrusted input, and the canonical encoding of record fields.

offsync never decodes peer bytes with msgpack's permissive defaults: extension types
(timestamps included) are refused, map keys must be strings in strictly increasing
order (so duplicates are impossible), and every structure is decoded from a buffer whose
size has already been checked against a limit. Canonical means: exactly what
``msgpack.packb`` writes for the decoded value (shortest integer and length forms,
64-bit floats, str for text and bin for bytes) with map keys sorted by code point.
Equal field values therefore always have equal bytes, which is what lets replicas
compare states by hashing bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn

import msgpack

from .errors import BundleFormatError, LimitExceededError

__all__ = [
    "canonical_fields",
    "decode_fields",
    "packb",
    "sorted_pairs",
    "unpack_strict",
]


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise BundleFormatError(f"msgpack extension type {code} is not allowed")


def _refuse_timestamp() -> NoReturn:
    # msgpack decodes ext type -1 (timestamp) itself and never calls ``ext_hook`` for it;
    # with ``timestamp=3`` it becomes a datetime, which the hooks below refuse.
    raise BundleFormatError("msgpack timestamps (extension type -1) are not allowed")


def sorted_pairs(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    previous: str | None = None
    for key, value in pairs:
        if type(key) is not str:
            raise BundleFormatError("map keys must be strings")
        if previous is not None and key <= previous:
            raise BundleFormatError("map keys must be unique and sorted")
        if type(value) is datetime:
            _refuse_timestamp()
        previous = key
    return dict(pairs)


def _checked_list(items: list[Any]) -> list[Any]:
    if datetime in map(type, items):
        _refuse_timestamp()
    return items


def packb(value: Any) -> bytes:
    """Encode with the one set of options offsync uses everywhere."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_strict(data: bytes, what: str) -> Any:
    """Decode one msgpack value that must fill ``data`` exactly, refusing ext types."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            timestamp=3,
            object_pairs_hook=sorted_pairs,
            list_hook=_checked_list,
        )
    except BundleFormatError:
        raise
    except msgpack.StackError as exc:
        raise LimitExceededError(f"{what}: nested too deeply") from exc
    except Exception as exc:  # msgpack raises ValueError, FormatError, ExtraData, ...
        raise BundleFormatError(f"{what}: not valid msgpack ({type(exc).__name__})") from exc
    if type(value) is datetime:
        _refuse_timestamp()
    return value


def decode_fields(data: bytes) -> dict[str, Any]:
    """Decode canonical field bytes that this replica already validated."""
    value = msgpack.unpackb(data, raw=False, timestamp=3, strict_map_key=True)
    assert isinstance(value, dict)
    return value


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(
                    f"field names and nested map keys must be str, not {type(k).__name__}"
                )
            items.append((k, _canonical(v)))
        items.sort(key=lambda kv: kv[0])
        return dict(items)
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    raise TypeError(f"a field value of type {type(value).__name__} cannot be stored")


def canonical_fields(fields: Mapping[str, Any]) -> bytes:
    """Encode a fields map canonically; raise ``TypeError`` for values msgpack cannot hold."""
    if not isinstance(fields, Mapping):
        raise TypeError("fields must be a mapping of str to msgpack-able values")
    try:
        return packb(_canonical(fields))
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"fields cannot be encoded: {exc}") from exc
