"""The one strict msgpack decoder for bytes from elsewhere, and every limit it enforces.

Every decoder of untrusted msgpack in offsync (bundle headers and bodies, segments,
segment blocks, receipts, knowledge statements, attestation tokens, key files, pull
requests) calls ``unpack``; nothing else in the package calls ``msgpack.unpackb`` on
bytes it did not write itself. ``unpack`` refuses extension types (timestamps
included) and map keys that are not strings in strictly increasing order, maps
msgpack's own exceptions to ``BundleFormatError`` and ``LimitExceededError``, and
bounds what decoding may allocate.

**Why allocation needs its own bound.** msgpack is compact and Python objects are not:
the one byte ``0x90`` (an empty array) becomes a 56-byte list plus the 8-byte slot
that holds it, a small map becomes a dict of about 200 bytes, and an array header
claiming 64 million items makes the C decoder allocate their slots before a single
item has arrived. A bound on the input's length alone therefore lets a few megabytes
(or a few hundred bytes of zstd) cost gigabytes. ``unpack`` bounds the decoded objects
instead, in two tiers:

* An input of at most ``max_decode_bytes // WORST_BYTES_PER_BYTE`` bytes (512 KiB
  under the default limits) whose format does not bound its depth (a segment's block)
  is decoded at once, in C, with no array or map longer than ``FAST_MAX_ITEMS``: no
  byte of msgpack decodes to more than ``WORST_BYTES_PER_BYTE`` bytes of objects
  (``tests/hostile/test_decode_memory.py`` measures the worst patterns), so it cannot exceed
  the budget whatever it holds. The blocks of segments sealed by offsync (at most 2000
  changes or 256 KiB) take this path, which costs nothing over plain msgpack.
* Anything larger, or anything the first tier refuses, first goes through a *census*:
  one pass over the bytes that allocates nothing, checks every declared length against
  the bytes that follow it (each item takes at least one byte), the nesting depth,
  extension types and map keys, and adds up an upper bound on the memory each value
  will take (``VALUE_COST`` and the others below). Only if that stays within
  ``Limits.max_decode_bytes`` is the input decoded, with the format's own bound on
  array and map lengths.

What the decoded values are then turned into is bounded too: knowledge intervals by a
``Budget`` against the same limit (``Knowledge.from_wire``), the field maps rebuilt
from a segment's columns by ``max_block_bytes`` (``change.decode_changes``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import msgpack

from .errors import BundleFormatError, LimitExceededError
from .limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ARRAY_COST",
    "FAST_MAX_ITEMS",
    "MAP_COST",
    "MAX_DEPTH",
    "PAIR_COST",
    "STR_COST",
    "VALUE_COST",
    "WORST_BYTES_PER_BYTE",
    "Budget",
    "check_cost",
    "sorted_pairs",
    "unpack",
]

#: Open arrays and maps msgpack-python's decoder holds at once (its C stack); deeper
#: input is refused as ``LimitExceededError`` (docs/spec.md §12).
MAX_DEPTH = 1024
#: No byte of msgpack decodes to more than this many bytes of Python objects
#: (the worst is a chain of one-entry maps: two bytes, a 184-byte dict and its slot).
WORST_BYTES_PER_BYTE = 128
#: Longest array or map the first tier decodes without a census: the C decoder
#: allocates a declared length before the items arrive, at most ``MAX_DEPTH`` times.
FAST_MAX_ITEMS = 4096

# The census's upper bounds, in bytes of CPython (64-bit) objects as the allocator
# rounds them (to 16). A str's or bin's own bytes are not counted: they are at most
# the input's bytes (four times, for a str widened by one astral character), which a
# limit bounds already.
#: Every value: its slot in the array, map or pair holding it, and an int, float or
#: bytes object (at most 48 bytes; nil, booleans and small ints are shared).
VALUE_COST = 56
#: A str's header beyond ``VALUE_COST`` (a non-ASCII str's is 80 bytes, in pools of them).
STR_COST = 56
#: A list's header beyond ``VALUE_COST``.
ARRAY_COST = 64
#: A map: the dict's header and first key table, and the list of pairs it is built from.
MAP_COST = 256
#: Each map entry: its share of the dict, and its (key, value) tuple while it is built.
PAIR_COST = 112

# What the first byte of a msgpack value says it is (msgpack spec, "Formats").
_ONE, _FIXED, _STR, _BIN, _ARRAY, _MAP, _EXT, _BAD = range(8)
_KIND = bytearray(256)
_SIZE = bytearray(256)  # _FIXED: total size; _STR/_BIN/_ARRAY/_MAP: bytes of the length
for _b in range(256):
    if _b <= 0x7F or _b >= 0xE0 or _b in (0xC0, 0xC2, 0xC3):
        _KIND[_b] = _ONE
    elif 0x80 <= _b <= 0x8F:
        _KIND[_b] = _MAP
    elif 0x90 <= _b <= 0x9F:
        _KIND[_b] = _ARRAY
    elif 0xA0 <= _b <= 0xBF:
        _KIND[_b] = _STR
    elif _b in (0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xD3):
        _KIND[_b] = _FIXED
        _SIZE[_b] = 1 + {0xCA: 4, 0xCB: 8}.get(_b, 1 << (_b & 0x03))
    elif _b in (0xD9, 0xDA, 0xDB):
        _KIND[_b], _SIZE[_b] = _STR, 1 << (_b - 0xD9)
    elif _b in (0xC4, 0xC5, 0xC6):
        _KIND[_b], _SIZE[_b] = _BIN, 1 << (_b - 0xC4)
    elif _b in (0xDC, 0xDD):
        _KIND[_b], _SIZE[_b] = _ARRAY, 2 << (_b - 0xDC)
    elif _b in (0xDE, 0xDF):
        _KIND[_b], _SIZE[_b] = _MAP, 2 << (_b - 0xDE)
    elif 0xC7 <= _b <= 0xC9 or 0xD4 <= _b <= 0xD8:
        _KIND[_b] = _EXT
    else:  # 0xc1, never used
        _KIND[_b] = _BAD
_KINDS = bytes(_KIND)
_SIZES = bytes(_SIZE)
#: A run of one-byte values (fixints, nil, booleans): counted at once inside an array.
_ONE_RUN = re.compile(rb"[\x00-\x7f\xc0\xc2\xc3\xe0-\xff]+")


class Budget:
    """What one decode may still allocate, in estimated bytes; ``charge`` refuses the
    input with ``LimitExceededError`` once it would take more."""

    __slots__ = ("left", "limit", "what")

    def __init__(self, limit: int, what: str) -> None:
        self.limit = self.left = limit
        self.what = what

    def charge(self, cost: int) -> None:
        self.left -= cost
        if self.left < 0:
            _over_budget(self.what, self.limit)


def _over_budget(what: str, limit: int) -> NoReturn:
    raise LimitExceededError(
        f"{what}: decoding would take more than {limit} bytes of memory (max_decode_bytes)"
    )


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise BundleFormatError(f"msgpack extension type {code} is not allowed")


def _refuse_timestamp() -> NoReturn:
    # msgpack decodes ext type -1 (timestamp) itself and never calls ``ext_hook`` for it;
    # with ``timestamp=3`` it becomes a datetime, which the hooks below refuse.
    raise BundleFormatError("msgpack timestamps (extension type -1) are not allowed")


def sorted_pairs(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """A map's pairs as a dict: keys must be strings, unique and sorted (canonical)."""
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


def _truncated(what: str) -> NoReturn:
    raise BundleFormatError(f"{what}: not valid msgpack (truncated)")


def _census(data: bytes, what: str, max_items: int, max_depth: int, budget: int) -> int:
    """Walk ``data`` without building anything; refuse it if decoding it could allocate
    more than ``budget`` bytes, nest deeper than ``max_depth`` arrays and maps, declare
    an array or map longer than ``max_items`` or than the bytes after it, or hold an
    extension type, a map key that is not a str, a reserved byte or trailing bytes.
    Returns the estimate."""
    end = len(data)
    kinds, sizes, run = _KINDS, _SIZES, _ONE_RUN.match
    pos = cost = 0
    # Values still due in each open container: n for an array, -2n for a map (keys
    # and values alternate, so an even count left means a key comes next).
    stack: list[int] = []
    while True:
        if pos >= end:
            _truncated(what)
        b = data[pos]
        kind = kinds[b]
        if stack and stack[-1] < 0 and not stack[-1] & 1 and kind != _STR:
            raise BundleFormatError(f"{what}: map keys must be strings")
        done = 1  # values this step completes at the current level
        if kind == _ONE:
            if stack and stack[-1] > 0:  # a run of them in an array, counted at once
                done = min(run(data, pos).end() - pos, stack[-1])  # type: ignore[union-attr]
            pos += done
            cost += done * VALUE_COST
        elif kind == _FIXED:
            pos += sizes[b]
            cost += VALUE_COST
        elif kind <= _MAP:  # a str, bin, array or map: a length, then what it counts
            width = sizes[b]
            if width:
                n = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
                if pos + 1 + width > end:
                    _truncated(what)
            else:
                n = b & (0x1F if kind == _STR else 0x0F)
            pos += 1 + width
            if kind <= _BIN:
                pos += n
                cost += VALUE_COST + (STR_COST if kind == _STR else 0)
            else:
                cost += _open(stack, kind == _MAP, n, end - pos, max_items, max_depth, what)
                done = 0 if n else 1
        else:
            _refuse_byte(data, pos, what)
        if pos > end:
            _truncated(what)
        if cost > budget:
            _over_budget(what, budget)
        while done and stack:  # close every container the step completed
            left = stack[-1]
            left = left - done if left > 0 else left + done
            if left:
                stack[-1] = left
                done = 0
            else:
                stack.pop()
                done = 1
        if done and not stack:
            break
    if pos != end:
        raise BundleFormatError(f"{what}: not valid msgpack (trailing bytes)")
    return cost


def _open(
    stack: list[int], is_map: bool, n: int, left: int, max_items: int, max_depth: int, what: str
) -> int:
    """Check an array or map of ``n`` items with ``left`` bytes after its header; push
    it on ``stack`` unless it is empty. Returns its cost."""
    if len(stack) >= max_depth:
        if max_depth >= MAX_DEPTH:
            raise LimitExceededError(f"{what}: nested too deeply")
        raise BundleFormatError(f"{what}: nested deeper than its format allows")
    due = 2 * n if is_map else n
    if due > left:
        raise BundleFormatError(f"{what}: an array or map declares more items than bytes follow")
    if n > max_items:
        raise LimitExceededError(
            f"{what}: an array or map of {n} items, over the limit of {max_items}"
        )
    if n:
        stack.append(-due if is_map else due)
    return VALUE_COST + (MAP_COST + n * PAIR_COST if is_map else ARRAY_COST)


def _refuse_byte(data: bytes, pos: int, what: str) -> NoReturn:
    """An extension type (a timestamp among them) or the reserved byte 0xc1."""
    b = data[pos]
    if _KINDS[b] != _EXT:
        raise BundleFormatError(f"{what}: not valid msgpack (reserved byte 0x{b:02x})")
    at = pos + 1 if b >= 0xD4 else pos + 1 + (1 << (b - 0xC7))
    if at >= len(data):
        _truncated(what)
    code = int.from_bytes(data[at : at + 1], "big", signed=True)
    if code == -1:
        _refuse_timestamp()
    _refuse_ext(code, b"")


def check_cost(data: bytes, what: str, budget: int) -> int:
    """The census's estimate of the memory that decoding msgpack ``data`` takes;
    ``LimitExceededError`` if it is over ``budget``, ``BundleFormatError`` for other
    faults of ``data``. For a writer making sure its readers will accept what it
    writes."""
    return _census(data, what, len(data), MAX_DEPTH, budget)


_DECODE_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


def _decode(data: bytes, max_items: int, canonical: bool, pairs_hook: Callable[[Any], Any]) -> Any:
    return msgpack.unpackb(
        data,
        raw=False,
        use_list=True,
        strict_map_key=True,
        ext_hook=_refuse_ext,
        timestamp=3,
        object_pairs_hook=pairs_hook,
        # A canonical value is re-encoded below, which a timestamp cannot be; others
        # are checked list by list.
        list_hook=None if canonical else _checked_list,
        max_array_len=max_items,
        max_map_len=max_items,
    )


def unpack(
    data: bytes,
    what: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    max_items: int | None = None,
    max_depth: int = MAX_DEPTH,
    canonical: bool = False,
    pairs_hook: Callable[[list[tuple[Any, Any]]], dict[str, Any]] = sorted_pairs,
) -> Any:
    """Decode one msgpack value that must fill ``data`` exactly (untrusted input).

    ``max_items`` bounds every array and map (the format's own bound: 6 for a segment,
    ``max_segments`` for a bundle body); ``max_depth`` the arrays and maps open at once
    (1 for an array of scalars). With ``canonical``, the value must re-encode to exactly
    ``data`` (docs/spec.md §1). ``pairs_hook`` builds each map from its pairs and must
    check what ``sorted_pairs`` checks (the format-3 column decoder wraps it to learn
    whether a block holds a map at all). Raises ``BundleFormatError`` for anything that
    is not such a value and ``LimitExceededError`` when it would be longer, deeper or larger in
    memory than the limits allow.
    """
    if type(data) is not bytes:
        raise BundleFormatError(f"{what} must be bytes")
    budget = limits.max_decode_bytes
    items = len(data) if max_items is None else min(max_items, len(data))
    value: Any = None
    decoded = False
    # The first tier cannot see depth, so a format that bounds it is always counted
    # (such formats are small: headers, receipts, segments, tokens).
    if max_depth >= MAX_DEPTH and len(data) <= budget // WORST_BYTES_PER_BYTE:
        try:
            value = _decode(data, min(items, FAST_MAX_ITEMS), canonical, pairs_hook)
            decoded = True
        except (BundleFormatError, LimitExceededError):
            raise
        except _DECODE_ERRORS:
            pass  # too long for this tier, or not valid: the census says which
    if not decoded:
        _census(data, what, items, max_depth, budget)
        try:
            value = _decode(data, items, canonical, pairs_hook)
        except (BundleFormatError, LimitExceededError):
            raise
        except msgpack.StackError as exc:
            raise LimitExceededError(f"{what}: nested too deeply") from exc
        except _DECODE_ERRORS as exc:
            raise BundleFormatError(f"{what}: not valid msgpack ({type(exc).__name__})") from exc
    if type(value) is datetime:
        _refuse_timestamp()
    if canonical:
        try:
            again = msgpack.packb(value, use_bin_type=True)
        except _DECODE_ERRORS as exc:  # a datetime from a timestamp, say
            raise BundleFormatError(f"{what} holds a value type that is not allowed") from exc
        if again != data:
            raise BundleFormatError(f"{what} is not canonically encoded")
    return value
