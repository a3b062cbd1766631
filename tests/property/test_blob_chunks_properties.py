"""Blobs: chunking covers a blob exactly (hypothesis)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from offsync.blobs import chunk_spans, read_chunks


@given(data=st.binary(max_size=5000), chunk=st.integers(1, 2000))
def test_chunks_cover_the_blob_exactly(data: bytes, chunk: int) -> None:
    spans = list(chunk_spans(len(data), chunk))
    assert b"".join(data[p : p + n] for p, n in spans) == data
    assert list(read_chunks(io.BytesIO(data), chunk)) == [data[p : p + n] for p, n in spans]
