"""change: the properties (hypothesis), moved from tests/unit/test_change.py, where its examples are."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from offsync.change import (
    DELETE,
    PUT,
    Change,
    decode_changes,
    encode_changes,
)
from offsync.encoding import canonical_fields
from offsync.errors import RemoteDataError
from offsync.testing.policies import change_dags
from tests.unit.test_change import A, put


@given(change_dags(max_changes=10))
def test_round_trip(history: list[Change]) -> None:
    # Every origin's changes of a history, renumbered as one consecutive run.
    mine = [c for c in history if c.origin == history[0].origin]
    data = encode_changes(mine)
    first = mine[0].seq
    decoded = decode_changes(data, mine[0].origin, first)
    assert [c.seq for c in decoded] == list(range(first, first + len(mine)))
    assert [c._replace(seq=0) for c in decoded] == [c._replace(seq=0) for c in mine]
    assert encode_changes(decoded) == data


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=6)
    | st.binary(max_size=6)
    | st.sampled_from(["Islam", "Kristen", "Hindu"])  # repeats: dictionary-coded columns
)


_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "é", "z", ""]), inner, max_size=4)
    ),
    max_leaves=12,
)


_fields = st.dictionaries(st.sampled_from(["name", "sex", "address", "dose", "x"]), _values)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["residents", "doses"]),
            st.sampled_from(["3519014107850001", "3519014107850001/1", "35190141", "k", "é"]),
            st.none() | _fields,
        ),
        min_size=1,
        max_size=12,
    )
)
def test_field_values_round_trip_byte_for_byte(rows: list[tuple[str, str, Any]]) -> None:
    """Columns, shapes, nested maps, dictionary-coded strings, -0.0, NaN, True vs 1:
    every change's field bytes come back exactly as the writer encoded them."""
    changes = [
        Change(
            A,
            i + 1,
            1000 + 3 * i,
            coll,
            key,
            PUT if f is not None else DELETE,
            None if f is None else canonical_fields(f),
            (),
        )
        for i, (coll, key, f) in enumerate(rows)
    ]
    decoded = decode_changes(encode_changes(changes), A, 1)
    assert decoded == changes


@given(st.binary(max_size=80))
def test_garbage_raises_remote_data_errors_only(data: bytes) -> None:
    with contextlib.suppress(RemoteDataError):
        decode_changes(data, A, 1)


@given(st.data())
def test_mutated_columns_raise_remote_data_errors_only(data: st.DataObject) -> None:
    """Valid encodings with one byte changed: decoded or refused, never another error."""
    encoded = bytearray(encode_changes([put(1, a=1, b="x"), put(2, key="k/1", a=[1.5, None])]))
    i = data.draw(st.integers(0, len(encoded) - 1))
    encoded[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(RemoteDataError):
        decode_changes(bytes(encoded), A, 1)
