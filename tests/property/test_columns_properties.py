"""v3_columns: the properties (hypothesis), moved from tests/unit/test_v3_columns.py, where its examples are."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from offsync import content
from offsync.change import (
    Change,
)
from offsync.columns import decode_block, encode_block
from offsync.encoding import canonical_value, decode_fields, packb
from offsync.errors import BundleFormatError, RemoteDataError
from tests.helpers.v3_strategies import stream_changes
from tests.unit.test_columns import SECRET, A, P, round_trip


@given(stream_changes(), st.integers(1, 1 << 40))
def test_arbitrary_changes_round_trip(changes: list[Change], first: int) -> None:
    changes = [c._replace(seq=first + i) for i, c in enumerate(changes)]
    changes = [
        c._replace(parents=tuple(p for p in c.parents if p.origin != A or p.seq < c.seq))
        for c in changes
    ]
    assert round_trip(changes) == changes


@given(stream_changes())
def test_one_encoding_dictionary_coding_is_never_optional(changes: list[Change]) -> None:
    """Switching any column to its other form (plain <-> dictionary) is refused."""
    plain, _ = encode_block(changes, P, SECRET)
    value = msgpack.unpackb(plain, raw=False)
    for j, column_set in enumerate(value[1][2]):
        for k, (table, items) in enumerate(column_set):
            if table is not None:
                other: list[Any] = [None, [table[i] for i in items]]
            elif items and all(type(v) is str for v in items) and len(set(items)) <= 256:
                order = list(dict.fromkeys(items))
                other = [order, bytes(order.index(v) for v in items)]
            else:
                continue
            altered = msgpack.unpackb(plain, raw=False)
            altered[1][2][j][k] = other
            with pytest.raises(BundleFormatError):
                decode_block(packb(altered), A, P, changes[0].seq)


@given(stream_changes())
def test_one_encoding_key_prefixes_are_the_longest(changes: list[Change]) -> None:
    plain, _ = encode_block(changes, P, SECRET)
    value = msgpack.unpackb(plain, raw=False)
    prefixes, suffixes = value[0][1], value[0][2]
    for i in range(1, len(prefixes)):
        if prefixes[i] == 0:
            continue
        altered = msgpack.unpackb(plain, raw=False)
        keys_before = changes[i - 1].key
        altered[0][1][i] -= 1  # one code point moved from the prefix into the suffix
        altered[0][2][i] = keys_before[prefixes[i] - 1] + suffixes[i]
        with pytest.raises(BundleFormatError):
            decode_block(packb(altered), A, P, changes[0].seq)


@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_refused_cleanly(data: bytes) -> None:
    with contextlib.suppress(RemoteDataError):
        decode_block(data, A, P, 1)


@given(stream_changes(max_changes=4), st.data())
def test_flipped_bytes_are_refused_or_decode_to_valid_changes(
    changes: list[Change], data: st.DataObject
) -> None:
    plain = bytearray(encode_block(changes, P, SECRET)[0])
    at = data.draw(st.integers(0, len(plain) - 1))
    plain[at] ^= data.draw(st.integers(1, 255))
    try:
        again = decode_block(bytes(plain), A, P, changes[0].seq).changes
    except RemoteDataError:
        return
    # Still valid: it re-encodes to exactly the bytes it was decoded from.
    secret = msgpack.unpackb(bytes(plain), raw=False)[2]
    assert encode_block(again, P, secret)[0] == bytes(plain)


@given(stream_changes())
def test_sealing_from_held_values_gives_the_same_bytes(changes: list[Change]) -> None:
    """A writer seals its own changes from the fields it holds decoded (``values=``);
    the block must be byte for byte the one built by decoding the field bytes."""
    values = [None if c.fields is None else decode_fields(c.fields) for c in changes]
    assert encode_block(changes, P, SECRET, values=values) == encode_block(changes, P, SECRET)


_LEAF = st.one_of(
    st.text(max_size=3), st.integers(-3, 3), st.none(), st.lists(st.integers(-9, 9), max_size=2)
)
_NAMES = st.sampled_from(["a", "b", "c"])
_INNER = st.dictionaries(_NAMES, _LEAF, max_size=3)
_FIELD_MAPS = st.dictionaries(
    _NAMES,
    st.one_of(_LEAF, _INNER, st.dictionaries(_NAMES, _INNER, max_size=2)),
    max_size=3,
)


@given(st.lists(st.one_of(_FIELD_MAPS, st.none()), min_size=1, max_size=12))
def test_content_in_passes_over_columns_is_the_row_by_row_content(
    maps: list[dict[str, Any] | None],
) -> None:
    """The column pass (``_uniform_columns``, the common block) and the row-by-row walk
    (``_columns``) give the same shapes and columns whenever the pass applies."""
    values = [None if m is None else canonical_value(m)[1] for m in maps]
    uniform = content._uniform_columns(values)
    if uniform is not None:
        assert packb(list(uniform)) == packb(list(content._columns(values)))
