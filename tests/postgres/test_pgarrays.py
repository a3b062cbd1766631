"""The PostgreSQL store's binary arrays (offsync.stores.pgarrays): what the server reads
back is exactly what was packed, for every element type the store sends, at the edges."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offsync.stores.pgarrays import (
    bool_array,
    bytea_array,
    int2_array,
    int8_array,
    register,
    text_array,
)
from tests.helpers.postgres import DSN, psycopg

INT8 = st.integers(-(2**63), 2**63 - 1)


@pytest.fixture(scope="module")
def conn() -> Iterator[Any]:
    with psycopg.connect(DSN, autocommit=True) as c:
        register(c)
        yield c


def echo(conn: Any, sql_type: str, value: bytes) -> list[Any]:
    row = conn.execute(f"SELECT %b::{sql_type}[]", (value,)).fetchone()
    assert row is not None
    return list(row[0])


def test_edge_values_come_back_as_they_went(conn: Any) -> None:
    blobs = [b"", b"\x00", None, bytes(range(256)), b"\\x00'\"{},"]
    assert echo(conn, "bytea", bytea_array(blobs)) == blobs
    ints = [0, 1, -1, 2**63 - 1, -(2**63)]
    assert echo(conn, "bigint", int8_array(ints)) == ints
    assert echo(conn, "smallint", int2_array([0, -1, 2**15 - 1, -(2**15)])) == [
        0,
        -1,
        2**15 - 1,
        -(2**15),
    ]
    assert echo(conn, "boolean", bool_array([True, False, True])) == [True, False, True]
    texts = ["", "ü", "a,b", '{"x"}', "NULL", "\\"]
    assert echo(conn, "text", text_array(texts)) == texts


def test_empty_arrays(conn: Any) -> None:
    for kind, value in [
        ("bytea", bytea_array([])),
        ("bigint", int8_array([])),
        ("smallint", int2_array([])),
        ("boolean", bool_array([])),
        ("text", text_array([])),
    ]:
        assert echo(conn, kind, value) == []


def test_values_out_of_range_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(struct.error):
        int8_array([2**63])
    with pytest.raises(struct.error):
        int2_array([2**15])


@given(
    blobs=st.lists(st.none() | st.binary(max_size=40), max_size=30),
    ints=st.lists(INT8, max_size=30),
    # Text that reaches the store is valid Unicode: names with lone surrogates are refused
    # at the write (plan.write.check_name) and decoders refuse invalid UTF-8.
    texts=st.lists(
        st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12),
        max_size=30,
    ),
)
def test_any_arrays_round_trip(
    conn: Any, blobs: list[bytes | None], ints: list[int], texts: list[str]
) -> None:
    row = conn.execute(
        "SELECT %b::bytea[], %b::bigint[], %b::text[]",
        (bytea_array(blobs), int8_array(ints), text_array(texts)),
    ).fetchone()
    assert row is not None
    assert (list(row[0]), list(row[1]), list(row[2])) == (blobs, ints, texts)
