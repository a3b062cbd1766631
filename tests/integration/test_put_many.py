"""``Replica.put_many``: the bulk write path gives what ``put`` of each record in one
``batch()`` gives (records, merge rules, refusals, atomicity), and seals whole segments
in its own transaction; and the pieces it is built from (``canonical_value``,
``segment_ends``) agree with the slow paths."""

from __future__ import annotations

import enum
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from offsync import Identity, Knowledge, Replica, policies
from offsync.change import Change
from offsync.encoding import (
    canonical_fields,
    canonical_value,
    canonical_values,
    decode_fields,
)
from offsync.errors import (
    ImmutableRecordError,
    NotAuthorisedError,
    SequenceReuseError,
    UsageError,
)
from offsync.plan.seal import (
    SEGMENT_MAX_BYTES,
    SEGMENT_MAX_CHANGES,
    cut,
    row_bound,
    segment_ends,
)
from offsync.replica import core
from offsync.scope import whole
from offsync.segment import Segment
from offsync.stores.memory import MemoryStore

SITE = Identity(bytes([7]) * 32, "site")
PEER = Identity(bytes([8]) * 32, "peer")
POLICIES = {"residents": policies.LastWriterWins(), "doses": policies.FirstWriterWins()}


def person(i: int) -> dict[str, Any]:
    return {
        "name": f"Siti {i}",
        "born": 1940 + i % 70,
        "address": {"village": "Kare", "rt": f"{i % 13:03d}", "postal": "63180"},
        "tags": ["a", i % 3],
        "photo": None if i % 4 else b"\x00\x01",
    }


def key(i: int) -> str:
    return f"351901{(i * 7919) % 100_000:06d}{i:04d}"  # not in key order


def open_replica(where: Path | None, identity: Identity = SITE, **options: Any) -> Replica:
    if where is None:
        return Replica(MemoryStore(), identity, POLICIES, **options)
    return Replica.open(str(where), identity=identity, policies=POLICIES, **options)


@pytest.fixture(params=["sqlite", "memory"])
def places(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Path | None]]:
    """Where the replicas of one test live: SQLite files, or memory stores."""
    if request.param == "memory":
        yield [None, None, None]
    else:
        yield [tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"]


def records_of(rep: Replica, collection: str) -> dict[str, dict[str, Any]]:
    return dict(rep.items(collection))


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def test_put_many_is_put_in_a_batch(places: list[Path | None]) -> None:
    bulk, loop, peer = (open_replica(p, i) for p, i in zip(places, (SITE, SITE, PEER), strict=True))
    data = [(key(i), person(i)) for i in range(5000)]
    assert bulk.put_many("residents", data) == 5000
    with loop.batch():
        for k, f in data:
            loop.put("residents", k, f)
    assert bulk.seq == loop.seq == 5000
    assert bulk.state_digest() == loop.state_digest()
    assert records_of(bulk, "residents") == {k: decode_fields(canonical_fields(f)) for k, f in data}
    assert bulk.conflicts() == []
    send(bulk, peer)
    assert peer.state_digest() == bulk.state_digest()
    assert peer.quarantined() == []
    for rep in (bulk, loop, peer):
        rep.close()


def test_put_many_seals_whole_segments_now_and_leaves_the_tail(tmp_path: Path) -> None:
    rep = open_replica(tmp_path / "a.sqlite")
    for i in range(150):  # own changes already waiting in the outbox go first
        rep.put("doses", f"d{i:04d}", {"dose": i})
    rep.put_many("residents", [(key(i), person(i)) for i in range(6000)])
    held = rep.store.segment_index()
    assert held, "whole segments are sealed before put_many returns"
    seqs = [(first, last) for _, first, last, *_ in held]
    assert seqs[0][0] == 1 and all(b[0] == a[1] + 1 for a, b in itertools.pairwise(seqs))
    sealed = seqs[-1][1]
    outbox = [seq for seq, _ in rep.store.outbox()]
    assert outbox == list(range(sealed + 1, 6151))  # exactly the tail waits
    assert len(outbox) < SEGMENT_MAX_CHANGES
    for data in rep.store.segment_data([(whole(SITE.public_key), first) for first, _ in seqs]):
        Segment.decode(data).verify()
    rep.close()
    again = open_replica(tmp_path / "a.sqlite")  # what the store says matches
    assert again.seq == 6150
    again.put("residents", "after", {"n": 1})
    assert again.seq == 6151
    peer = open_replica(tmp_path / "b.sqlite", PEER)
    send(again, peer)
    assert peer.state_digest() == again.state_digest()
    again.close()
    peer.close()


def test_sealing_from_memory_gives_the_segments_read_back_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wall() -> int:
        return 1_700_000_000_000

    def write(path: Path) -> list[Any]:
        rep = open_replica(path, wall=wall)
        for start in range(0, 4500, 1500):
            with rep.batch():
                for i in range(start, start + 1500):
                    rep.put("residents", key(i), person(i))
                rep.delete("residents", key(start))
        for _ in rep.pack(Knowledge()):  # the tail, too
            pass
        held = rep.store.segment_index()
        rep.close()
        return held

    from_memory = write(tmp_path / "a.sqlite")
    monkeypatch.setattr(core, "MAX_RECENT", 0)  # nothing kept: every seal reads back
    read_back = write(tmp_path / "b.sqlite")
    assert len(from_memory) > 2
    assert from_memory == read_back  # same segments, hashes and sizes


def test_existing_records_and_repeated_keys_take_puts_path(places: list[Path | None]) -> None:
    bulk, loop, peer = (open_replica(p, i) for p, i in zip(places, (SITE, SITE, PEER), strict=True))
    for rep in (bulk, loop):
        rep.put("residents", key(1), {"name": "old", "keep": 1})
        rep.put("residents", key(2), {"name": "gone"})
        rep.delete("residents", key(2))
    data = [(key(i), {"name": f"new {i}"}) for i in range(6)] + [(key(3), {"extra": True})]
    bulk.put_many("residents", data)
    with loop.batch():
        for k, f in data:
            loop.put("residents", k, f)
    assert bulk.state_digest() == loop.state_digest()
    assert bulk.get("residents", key(1)) == {"name": "new 1", "keep": 1}  # put keeps fields
    assert bulk.get("residents", key(3)) == {"name": "new 3", "extra": True}
    assert bulk.conflicts() == []  # each write superseded the heads it saw
    send(bulk, peer)
    assert peer.state_digest() == bulk.state_digest()
    for rep in (bulk, loop, peer):
        rep.close()


def snapshot(rep: Replica) -> tuple[Any, ...]:
    return (
        rep.seq,
        rep.state_digest(),
        rep.store.outbox(),
        rep.store.segment_index(),
        records_of(rep, "residents"),
        records_of(rep, "doses"),
    )


@pytest.mark.parametrize(
    "bad",
    [
        [("ok", {"a": 1}), ("", {"a": 1})],
        [("ok", {"a": 1}), (5, {"a": 1})],
        [("ok", {"a": 1}), ("k" * 5000, {"a": 1})],
        [("ok", {"a": 1}), ("x", {"a": object()})],
        [("ok", {"a": 1}), ("x", {1: "a"})],
        [("ok", {"a": 1}), ("x", ["not", "a", "map"])],
        [("ok", {"a": 1}), "not a pair"],
        [("ok", {"a": 1}), ("x", {"photo": {"$blob": None}})],  # as put: blob reference
        [("ok", {"a": {"b": 1}}), ("x", {"a": {"b": 1 << 64}})],
        [("ok", {"a": {"b": 1}}), ("x", {"a": {"b": [object()]}})],
    ],
)
def test_refused_input_changes_nothing(places: list[Path | None], bad: list[Any]) -> None:
    rep = open_replica(places[0])
    rep.put_many("residents", [(key(i), person(i)) for i in range(2100)])
    before = snapshot(rep)
    with pytest.raises(UsageError, match="record 1"):
        rep.put_many("residents", bad)
    assert snapshot(rep) == before
    rep.close()


def test_first_writer_wins_and_validators_refuse_all_of_it(places: list[Path | None]) -> None:
    rep = open_replica(places[0])
    rep.put("doses", "d1", {"dose": 1})
    before = snapshot(rep)
    with pytest.raises(ImmutableRecordError):
        rep.put_many("doses", [("d0", {"dose": 0}), ("d1", {"dose": 2}), ("d2", {"dose": 3})])
    assert snapshot(rep) == before
    rep.close()

    def no_sevens(key: str, fields: dict[str, Any] | None) -> str | None:
        return "no sevens" if "7" in key else None

    checked = open_replica(places[1], validators={"residents": no_sevens})
    checked.put_many("residents", [("a1", {"n": 1})])
    before = snapshot(checked)
    with pytest.raises(NotAuthorisedError, match="no sevens"):
        checked.put_many("residents", [(f"a{i}", {"n": i}) for i in range(2, 10)])
    assert snapshot(checked) == before
    checked.close()


def test_a_restored_site_refuses_put_many_like_put(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    site = open_replica(path)
    district = open_replica(tmp_path / "district.sqlite", PEER)
    site.put_many("residents", [(key(i), person(i)) for i in range(3)])
    send(site, district)
    site.close()
    shutil.copyfile(path, tmp_path / "saved")
    site = open_replica(path)
    site.put_many("residents", [(key(i), person(i)) for i in range(3, 2500)])
    send(site, district)
    site.close()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "saved", path)
    site = open_replica(path)
    (receipt_only,) = district.pack(district.knowledge(), always=True)
    site.apply(receipt_only)
    before = snapshot(site)
    with pytest.raises(SequenceReuseError):
        site.put_many("residents", [("new", {"n": 1})])
    assert snapshot(site) == before
    send(district, site)  # its own changes come back; then it writes again
    site.put_many("residents", [("new", {"n": 1})])
    assert site.seq == 2501
    send(site, district)
    assert district.state_digest() == site.state_digest()
    assert district.quarantined() == [] and site.forks() == []
    site.close()
    district.close()


def test_while_sealing_would_fork_nothing_is_written(tmp_path: Path) -> None:
    """A site restored from a backup taken before it sealed: a peer holds its first
    seqs, so it may neither seal nor write until it has them back (sealing could fork,
    and what it wrote could never leave: docs/design.md)."""
    path = tmp_path / "site.sqlite"
    site = open_replica(path)
    district = open_replica(tmp_path / "district.sqlite", PEER)
    site.put_many("residents", [(key(i), person(i)) for i in range(3)])
    site.close()
    shutil.copyfile(path, tmp_path / "saved")  # three own changes, none sealed
    site = open_replica(path)
    send(site, district)  # sealed now, and the district holds them
    site.close()
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "saved", path)
    site = open_replica(path)
    (receipt_only,) = district.pack(district.knowledge(), always=True)
    site.apply(receipt_only)
    digest = site.state_digest()
    with pytest.raises(SequenceReuseError, match="not sealed"):
        site.put_many("residents", [(key(i), person(i)) for i in range(3, 2600)])
    with pytest.raises(SequenceReuseError), site.batch():
        site.put_many("residents", [(key(i), person(i)) for i in range(3, 2600)])
    assert site.store.segment_index() == []  # nothing sealed, nothing written
    assert [seq for seq, _ in site.store.outbox()] == [1, 2, 3]
    assert site.seq == 3 and site.state_digest() == digest
    send(district, site)  # seqs 1-3 come back as the district holds them
    with site.batch():
        site.put("residents", "before", {"n": 1})
        site.put_many("residents", [(key(i), person(i)) for i in range(3, 2600)])
        site.put("residents", "after", {"n": 2})
    assert site.seq == 2602 and site.store.segment_index()[0][1:3] == (1, 3)
    send(site, district)
    assert district.state_digest() == site.state_digest() and district.quarantined() == []
    site.close()
    district.close()


def test_trust_records_and_repeats_take_puts_path(tmp_path: Path) -> None:
    rep = open_replica(tmp_path / "a.sqlite")
    rep.put_many(
        "_offsync_trust", [("note/a", {"n": 1}), ("note/b", {"n": 2}), ("note/a", {"m": 3})]
    )
    assert rep.get("_offsync_trust", "note/a") == {"n": 1, "m": 3}
    assert rep.seq == 3
    rep.close()


def test_put_many_inside_a_batch_rolls_back_with_it(tmp_path: Path) -> None:
    rep = open_replica(tmp_path / "a.sqlite")
    rep.put("residents", "first", {"n": 0})
    before = snapshot(rep)
    with pytest.raises(RuntimeError), rep.batch():
        rep.put("residents", "x", {"n": 1})
        rep.put_many("residents", [(key(i), person(i)) for i in range(4500)])
        raise RuntimeError("the application fails after the import")
    assert snapshot(rep) == before
    with rep.batch():
        rep.put("residents", "x", {"n": 1})
        rep.put_many("residents", {key(i): person(i) for i in range(4500)})
    assert rep.seq == 4502
    rep.close()


def test_level_is_the_callers(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        open_replica(tmp_path / "a.sqlite").put_many("residents", [("a", {})], level=0)


# -- the pieces: the same answers as the slow paths -------------------------------------

field_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=6)
    | st.binary(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(st.sampled_from("abcd"), inner, max_size=3)
    ),
    max_leaves=8,
)
field_maps = st.dictionaries(
    st.sampled_from(["a", "b", "c", "name", "é"]), field_values, max_size=4
)


class IntEnumValue(enum.IntEnum):
    ONE = 1


@st.composite
def _same_names(draw: st.DrawFn, maps: st.SearchStrategy[dict[str, Any]]) -> list[Any]:
    """Maps that share their names, in the same order (one form's records)."""
    names = list(draw(maps))
    n = draw(st.integers(1, 12))
    return [{name: draw(field_values) for name in names} for _ in range(n)]


@given(field_maps)
def test_canonical_value_is_what_its_bytes_decode_to(fields: dict[str, Any]) -> None:
    data, value = canonical_value(fields)
    assert data == canonical_fields(fields)
    assert value == decode_fields(data)
    assert list(value) == sorted(value)


@settings(max_examples=120)
@given(st.lists(field_maps, max_size=12) | _same_names(field_maps))
@example([{"b": 1.5, "a": float("nan")}, {"b": (1, 2), "a": {"y": 1, "x": [3]}}])
@example([{"a": {"x": 1, "y": 2}}, {"a": {"y": 1, "x": 2}}, {"a": {}}])
@example([{"a": 1}, {"a": IntEnumValue.ONE}, {"a": "s"}])
def test_canonical_values_are_canonical_value_of_each(many: list[dict[str, Any]]) -> None:
    one_by_one = [canonical_value(fields) for fields in many]
    done = canonical_values(many)
    if done is None:  # not the plain case: the caller takes them one by one
        return
    encoded, values = done
    assert encoded == [e for e, _ in one_by_one]
    assert values == [v for _, v in one_by_one]
    for value, (_, expected) in zip(values, one_by_one, strict=True):
        assert _names_in_order(value) == _names_in_order(expected)


def _names_in_order(value: Any) -> Any:
    if isinstance(value, dict):
        return [(k, _names_in_order(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_names_in_order(v) for v in value]
    return type(value).__name__


def test_canonical_values_leave_refusals_to_canonical_value() -> None:
    assert canonical_values([{"a": 1}, {1: "a"}]) is None
    assert canonical_values([{"a": 1}, {"a": 1 << 64}]) is None
    assert canonical_values([{"a": {"b": object()}}]) is None
    assert canonical_values([{"a": 1}, MappingProxyType({"a": 1})]) is None
    assert canonical_values([]) is None


# The format-2 column encoder's reference-bytes tests left with that encoder; format
# 3's block encoding is pinned by the known-answer vectors (tests/vectors/v3).


@given(st.lists(st.integers(1, SEGMENT_MAX_BYTES), max_size=60), st.booleans())
def test_segment_ends_cut_where_cut_does(sizes: list[int], complete_only: bool) -> None:
    rows = [(i + 1, b"x" * n) for i, n in enumerate(sizes)]
    pages = [rows[i : i + 7] for i in range(0, len(rows), 7)]
    expected = [chunk[-1][0] for chunk in cut(pages, complete_only=complete_only)]
    assert segment_ends(sizes, complete_only=complete_only) == expected


def test_segment_ends_counts_changes() -> None:
    assert segment_ends([1] * 4500, complete_only=True) == [2000, 4000]
    assert segment_ends([1] * 4500, complete_only=False) == [2000, 4000, 4500]
    assert segment_ends([1] * 4000, complete_only=True) == [2000, 4000]


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=300), field_maps)
def test_row_bound_bounds_the_outbox_row(collection: str, key: str, fields: dict[str, Any]) -> None:
    data = canonical_fields(fields)
    change = Change(b"o" * 32, 1, (1 << 63) - 1, collection, key, 0, data)
    bound = row_bound(len(collection.encode()), len(key.encode()), len(data))
    assert len(change.to_row()) <= bound <= len(change.to_row()) + 8
