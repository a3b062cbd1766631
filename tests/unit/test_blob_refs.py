"""Blobs (issue 14, first part): references, hashing and chunking, with no store."""

from __future__ import annotations

import io

import pytest

from offsync import Identity
from offsync.blobs import (
    BlobHasher,
    BlobRef,
    BlobVerifier,
    blob_hash,
    check_references,
    chunk_spans,
    read_chunks,
    references,
)
from offsync.errors import (
    BlobError,
    BlobReferenceError,
    LimitExceededError,
    UsageError,
)
from offsync.limits import Limits

A = Identity(bytes([1]) * 32, "site-a")
B = Identity(bytes([2]) * 32, "site-b")
SMALL = Limits(blob_chunk_bytes=1000, max_blob_bytes=50_000)


def photo(n: int = 5000, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


# -- references, hashing, chunking ---------------------------------------------------


def test_a_reference_round_trips_as_a_field_and_as_bytes() -> None:
    data = photo()
    ref = BlobRef(blob_hash(data), len(data), "image/jpeg")
    assert BlobRef.from_field(ref.field()) == ref
    assert BlobRef.from_bytes(ref.to_bytes()) == ref
    assert ref.to_bytes()[:7] == b"\x81\xa5$blob"
    assert ref.hex == ref.hash.hex()


@pytest.mark.parametrize(
    "value",
    [
        {"$blob": [b"x" * 31, 1, "image/jpeg"]},
        {"$blob": [b"x" * 32, -1, "image/jpeg"]},
        {"$blob": [b"x" * 32, True, "image/jpeg"]},
        {"$blob": [b"x" * 32, 1 << 63, "image/jpeg"]},
        {"$blob": [b"x" * 32, 1, "jpeg"]},
        {"$blob": [b"x" * 32, 1, " image/jpeg"]},
        {"$blob": [b"x" * 32, 1, "a/" + "b" * 254]},
        {"$blob": [b"x" * 32, 1]},
        {"$blob": "x"},
        {"$blob": [b"x" * 32, 1, "image/jpeg"], "other": 1},
        [1, 2],
    ],
)
def test_malformed_references_are_refused(value: object) -> None:
    with pytest.raises(BlobReferenceError):
        BlobRef.from_field(value)


def test_references_are_found_at_any_depth_and_malformed_ones_are_data() -> None:
    a = BlobRef(blob_hash(b"a"), 1, "image/jpeg")
    b = BlobRef(blob_hash(b"b"), 1, "image/x-wsq")
    fields = {
        "photo": a.field(),
        "prints": [{"finger": 1, "image": b.field()}],
        "odd": {"$blob": "not a reference"},
        "data": {"$blob": 1, "x": 2},
    }
    assert sorted(references(fields), key=lambda r: r.media_type) == [a, b]
    with pytest.raises(BlobReferenceError):
        check_references(fields)
    del fields["odd"]
    check_references(fields)


def test_hasher_and_verifier() -> None:
    data = photo(3500)
    hasher = BlobHasher()
    for chunk in read_chunks(io.BytesIO(data), 1000):
        hasher.update(chunk)
    ref = hasher.ref("image/png")
    assert ref == BlobRef(blob_hash(data), 3500, "image/png")
    ok = BlobVerifier(ref)
    for pos, length in chunk_spans(ref.size, 1000):
        ok.update(data[pos : pos + length])
    ok.finish()
    assert list(chunk_spans(3500, 1000)) == [(0, 1000), (1000, 1000), (2000, 1000), (3000, 500)]
    longer = BlobVerifier(ref)
    longer.update(data)
    with pytest.raises(BlobError, match="larger"):
        longer.update(b"!")
    short = BlobVerifier(ref)
    short.update(data[:-1])
    with pytest.raises(BlobError, match="not the 3500"):
        short.finish()
    wrong = BlobVerifier(ref)
    wrong.update(data[:-1] + b"!")
    with pytest.raises(BlobError, match="hash"):
        wrong.finish()
    with pytest.raises(LimitExceededError):
        BlobVerifier(BlobRef(ref.hash, 50_001, "image/png"), SMALL)
    big = BlobHasher(SMALL)
    with pytest.raises(LimitExceededError):
        big.update(bytes(50_001))
    with pytest.raises(UsageError):
        list(chunk_spans(10, 0))
