"""Changes: wire encoding and the validation of untrusted change lists."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from offsync.change import DELETE, PUT, Change, ChangeId, decode_changes, encode_changes
from offsync.encoding import canonical_fields, packb
from offsync.errors import BundleFormatError, LimitExceededError, RemoteDataError
from offsync.limits import Limits
from offsync.testing.policies import ORIGINS, change_dags

A, B = ORIGINS[0], ORIGINS[1]


def put(seq: int, key: str = "k", parents: tuple[ChangeId, ...] = (), **fields: Any) -> Change:
    return Change(
        A, seq, 1000 + seq, "c", key, PUT, canonical_fields(fields or {"v": seq}), parents
    )


def test_properties() -> None:
    c = Change(A, 3, 77, "c", "k", DELETE, None, (ChangeId(B, 1),))
    assert c.id == ChangeId(A, 3)
    assert c.stamp == (77, A, 3)
    assert c.is_delete
    assert c.values() == {}
    assert put(1, x=1).values() == {"x": 1}
    assert c.to_wire() == [77, "c", "k", 1, None, [[B, 1]]]


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


def test_decoded_seqs_follow_the_segment() -> None:
    data = encode_changes([put(1), put(2)])
    assert [c.id for c in decode_changes(data, B, 10)] == [ChangeId(B, 10), ChangeId(B, 11)]


def wire(**override: Any) -> list[Any]:
    item: dict[str, Any] = {
        "hlc": 5,
        "collection": "c",
        "key": "k",
        "op": PUT,
        "fields": canonical_fields({"a": 1}),
        "parents": [],
    }
    item.update(override)
    return list(item.values())


@pytest.mark.parametrize(
    "items",
    [
        [],  # empty
        {"a": 1},
        [wire()[:5]],  # five items
        [[*wire(), 1]],  # seven items
        [wire(hlc=-1)],
        [wire(hlc=2.5)],
        [wire(hlc="5")],
        [wire(hlc=True)],
        [wire(collection="")],
        [wire(collection=b"c")],
        [wire(key="")],
        [wire(key=7)],
        [wire(op=2)],
        [wire(op=True)],
        [wire(op=0.0)],
        [wire(fields=None)],  # a put without fields
        [wire(fields={"a": 1})],  # fields must be bytes
        [wire(fields=b"\x82\xa1b\x01\xa1a\x02")],  # not canonical
        [wire(fields=packb([1]))],  # not a map
        [wire(op=DELETE, fields=canonical_fields({"a": 1}))],  # a delete with fields
        [wire(parents="x")],
        [wire(parents=[[A]])],
        [wire(parents=[[b"short", 1]])],
        [wire(parents=[[B, 0]])],
        [wire(parents=[[B, 1 << 63]])],
        [wire(parents=[[B, 2], [B, 1]])],  # unsorted
        [wire(parents=[[B, 1], [B, 1]])],  # duplicate
        [wire(parents=[[A, 10]])],  # a change cannot descend from its own later change
        [wire(parents=[[A, 11]])],
    ],
)
def test_refuses_malformed(items: Any) -> None:
    with pytest.raises(BundleFormatError):
        decode_changes(packb(items), A, 10)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        packb([wire()]) + b"\x00",
        packb([wire()])[:-1],
        b"\x91\x96\xc7\x01\x05x" + packb(wire())[2:],  # ext type in place of the hlc
        b"\x91\x96\xd6\xff\x00\x00\x00\x01" + packb(wire())[2:],  # a timestamp hlc
        msgpack.packb([{"a": 1}]),
    ],
)
def test_refuses_bad_bytes(data: bytes) -> None:
    with pytest.raises(BundleFormatError):
        decode_changes(data, A, 1)


def test_limits() -> None:
    items = [wire(), wire()]
    decode_changes(packb(items), A, 1, Limits(max_segment_changes=2))
    with pytest.raises(LimitExceededError):
        decode_changes(packb(items), A, 1, Limits(max_segment_changes=1))
    # A tight segment limit must not cap the arrays inside a change.
    two_parents = [wire(parents=[[B, 1], [B, 2]])]
    decode_changes(packb(two_parents), A, 1, Limits(max_segment_changes=1))
    with pytest.raises(LimitExceededError):
        decode_changes(packb([wire(key="k" * 513)]), A, 1)
    with pytest.raises(LimitExceededError):
        decode_changes(packb([wire(key="é" * 257)]), A, 1)  # 514 UTF-8 bytes
    decode_changes(packb([wire(key="é" * 256)]), A, 1)
    with pytest.raises(LimitExceededError):
        decode_changes(packb([wire(collection="c" * 65)]), A, 1)
    parents = [[bytes([i]) * 32, 1] for i in range(4, 4 + 65)]
    with pytest.raises(LimitExceededError):
        decode_changes(packb([wire(parents=parents)]), A, 1)
    decode_changes(packb([wire(parents=parents[:64])]), A, 1)
    big = canonical_fields({"a": "x" * 100})
    with pytest.raises(LimitExceededError):
        decode_changes(packb([wire(fields=big)]), A, 1, Limits(max_fields_bytes=50))
    with pytest.raises((LimitExceededError, BundleFormatError)):
        decode_changes(b"\x91" * 5000 + b"\xc0", A, 1)


@given(st.binary(max_size=80))
def test_garbage_raises_remote_data_errors_only(data: bytes) -> None:
    with contextlib.suppress(RemoteDataError):
        decode_changes(data, A, 1)
