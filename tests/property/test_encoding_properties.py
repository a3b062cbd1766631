"""encoding: the properties (hypothesis), moved from tests/unit/test_encoding.py, where its examples are."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from offsync.encoding import canonical_fields, decode_fields, unpack_strict
from offsync.errors import RemoteDataError


@given(st.binary(max_size=64))
def test_unpack_strict_only_raises_offsync_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteDataError):
        unpack_strict(data, "t")


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), json_like, max_size=5))
def test_canonical_fields_round_trip(fields: dict[str, Any]) -> None:
    data = canonical_fields(fields)
    decoded = decode_fields(data)
    assert decoded == fields
    assert canonical_fields(decoded) == data
    # Insertion order never changes the bytes.
    assert canonical_fields(dict(reversed(list(fields.items())))) == data
