"""unpack: the properties (hypothesis), moved from tests/unit/test_unpack.py, where its examples are."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from offsync.encoding import packb
from offsync.errors import BundleFormatError, LimitExceededError
from offsync.unpack import (
    unpack,
)
from tests.unit.test_unpack import census_first

#: Pieces of msgpack: concatenated, they often make valid or nearly valid values.
PIECES = [
    b"\x90",
    b"\x80",
    b"\x91",
    b"\x92",
    b"\x81",
    b"\xa0",
    b"\xa1a",
    b"\xa1b",
    b"\xc0",
    b"\x01",
    b"\xe0",
    b"\xdc\x00\x02",
    b"\xc4\x01x",
    b"\xd6\xff\x00\x00\x00\x01",
    b"\xc7\x01\x05x",
    b"\xc1",
    b"\xcb" + bytes(8),
    b"\xa2\xc3\xa9",
]


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(), inner, max_size=8),
    max_leaves=40,
)


def sorted_maps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: sorted_maps(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_maps(v) for v in value]
    return value


@given(json_like)
def test_both_tiers_decode_what_msgpack_decodes(value: Any) -> None:
    data = packb(sorted_maps(value))
    expected = msgpack.unpackb(data, raw=False)
    assert unpack(data, "t") == expected
    assert unpack(data, "t", canonical=True) == expected
    with census_first():
        assert unpack(data, "t") == expected
        assert unpack(data, "t", canonical=True) == expected


@given(st.binary(max_size=200) | st.lists(st.sampled_from(PIECES)).map(b"".join))
def test_both_tiers_agree_on_any_bytes(data: bytes) -> None:
    """Whatever the bytes, both tiers return the same value or refuse them alike."""
    outcomes = []
    for first in (False, True):
        with census_first(first):
            try:
                outcomes.append(repr(unpack(data, "t")))
            except (BundleFormatError, LimitExceededError) as exc:
                outcomes.append(type(exc).__name__)
    assert outcomes[0] == outcomes[1]
