"""Blob chunk files and want lists (offsync.blobfile, docs/spec.md §15.3): round trips,
names, and what a reader refuses; the disk's space budget."""

from __future__ import annotations

import pytest

from offsync import Identity
from offsync.blobfile import (
    KIND_CHUNK,
    KIND_WANT,
    WantList,
    chunk_file_max,
    chunk_name,
    decode_chunk,
    decode_want,
    encode_chunk,
    encode_want,
    parse_chunk_name,
    recipient_of,
    want_name,
)
from offsync.blobs import BlobRef, blob_hash
from offsync.errors import (
    BlobError,
    DecryptionError,
    LimitExceededError,
    RemoteDataError,
    UsageError,
)
from offsync.lane import BlobChunk
from offsync.limits import Limits
from offsync.transports.blobbox import CLUSTER_BYTES, SpaceBudget

ME = Identity(bytes([4]) * 32, "me")
OTHER = Identity(bytes([5]) * 32, "other")
SMALL = Limits(blob_chunk_bytes=1024, max_blob_bytes=1 << 20)
DATA = bytes(range(256)) * 10
REF = BlobRef(blob_hash(DATA), len(DATA), "image/jpeg")


def test_a_chunk_round_trips_sealed_to_its_recipient_only() -> None:
    chunk = BlobChunk(REF, 1024, DATA[1024:2048])
    data = encode_chunk(chunk, ME.public_key)
    assert recipient_of(data, KIND_CHUNK) == ME.public_key
    assert DATA[1024:1100] not in data
    assert decode_chunk(data, ME.public_key, ME.unseal, SMALL) == chunk
    with pytest.raises(DecryptionError, match="another site"):
        decode_chunk(data, OTHER.public_key, OTHER.unseal, SMALL)
    with pytest.raises(RemoteDataError, match="kind"):
        recipient_of(data, KIND_WANT)
    torn = data[:-1]
    with pytest.raises(DecryptionError, match="does not open"):
        decode_chunk(torn, ME.public_key, ME.unseal, SMALL)


def test_a_chunk_outside_its_blob_or_over_the_limit_is_refused() -> None:
    beyond = encode_chunk(BlobChunk(REF, 2048, DATA[:1000]), ME.public_key)
    with pytest.raises(BlobError, match="outside"):
        decode_chunk(beyond, ME.public_key, ME.unseal, SMALL)
    too_big = encode_chunk(BlobChunk(REF, 0, DATA[:2000]), ME.public_key)
    with pytest.raises(LimitExceededError):
        decode_chunk(too_big, ME.public_key, ME.unseal, SMALL)
    with pytest.raises(LimitExceededError):
        decode_chunk(b"\x00" * (chunk_file_max(SMALL) + 1), ME.public_key, ME.unseal, SMALL)
    with pytest.raises(RemoteDataError, match="magic"):
        decode_chunk(b"OFSYNC" + bytes(100), ME.public_key, ME.unseal, SMALL)


def test_names_carry_hash_and_offset() -> None:
    name = chunk_name(REF.hash, 4096)
    assert name == f"{REF.hex[:32]}-000000001000.ofc" and len(name) <= 50
    assert parse_chunk_name(name) == (REF.hex[:32], 4096)
    assert parse_chunk_name("x" + name) is None and parse_chunk_name(name + ".part") is None
    assert want_name(ME.public_key) == f"want-{ME.public_key.hex()[:32]}.ofw"
    with pytest.raises(UsageError):
        chunk_name(REF.hash, 1 << 48)


def test_a_want_list_round_trips() -> None:
    want = WantList(OTHER.public_key, 1_700_000_000_000, {REF.hash: 1024, bytes(32): 0})
    data = encode_want(want, ME.public_key)
    assert decode_want(data, ME.public_key, ME.unseal) == want
    with pytest.raises(DecryptionError):
        decode_want(data, OTHER.public_key, OTHER.unseal)


def test_the_space_budget_counts_clusters_and_measures_once() -> None:
    calls: list[int] = []

    def free() -> int:
        calls.append(1)
        return 10 * CLUSTER_BYTES + 1000

    budget = SpaceBudget(free, reserve=1000)
    assert all(budget.take(100) for _ in range(9))  # 9 files of one cluster (+ entries)
    assert not budget.take(100)
    assert calls == [1]
