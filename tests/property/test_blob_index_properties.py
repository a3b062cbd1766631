"""The index of blob references always equals a scan of the records (hypothesis): after
any sequence of local puts and deletes (one at a time and in bulk), bundles applied
from another site (concurrent writes, conflicts kept by a multi-value collection),
blobs put, dropped and collected, on the memory store and on SQLite alike."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from offsync import Identity, Replica
from offsync.blobs import BlobRef, blob_hash, ref_order
from offsync.policies import MultiValue
from offsync.stores.base import Store
from offsync.stores.memory import MemoryStore
from offsync.stores.sqlite import SQLiteStore

SITES = (Identity(bytes([1]) * 32, "a"), Identity(bytes([2]) * 32, "b"))
DATA = [bytes([i]) * (10 + i) for i in range(3)]
REFS = [BlobRef(blob_hash(d), len(d), "image/jpeg") for d in DATA]
KEYS = ["k0", "k1", "é", "k\x00"]
COLLECTIONS = ["people", "multi"]  # "multi" keeps concurrent versions as conflicts

refs = st.lists(st.integers(0, len(REFS) - 1), max_size=3)
OPS = st.one_of(
    st.tuples(
        st.just("put"), st.integers(0, 1), st.sampled_from(COLLECTIONS),
        st.sampled_from(KEYS), refs, st.booleans(),
    ),
    st.tuples(st.just("delete"), st.integers(0, 1), st.sampled_from(COLLECTIONS),
              st.sampled_from(KEYS)),
    st.tuples(st.just("many"), st.integers(0, 1), st.lists(st.sampled_from(KEYS)), refs),
    st.tuples(st.just("sync"), st.integers(0, 1)),
    st.tuples(st.just("blob"), st.integers(0, 1), st.integers(0, len(REFS) - 1)),
    st.tuples(st.just("drop"), st.integers(0, 1), st.integers(0, len(REFS) - 1)),
    st.tuples(st.just("collect"), st.integers(0, 1)),
)  # fmt: skip


def fields(chosen: list[int], nested: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "x"}
    for i in chosen:
        ref = REFS[i].field()
        out[f"f{i}"] = {"scans": [ref, ref]} if nested else ref
    return out


def ref_heads(item: tuple[BlobRef, bytes]) -> tuple[Any, ...]:
    return (*ref_order(item[0]), item[1])


def same_as_scan(store: Store) -> None:
    assert store.blob_refs() == Store.blob_refs(store)
    assert store.missing_blob_refs() == Store.missing_blob_refs(store)
    hashes = [r.hash for r in REFS]
    assert store.referenced_blobs(hashes) == Store.referenced_blobs(store, hashes)
    got, scanned = store.blob_ref_heads(hashes), Store.blob_ref_heads(store, hashes)
    assert sorted(got, key=ref_heads) == sorted(scanned, key=ref_heads)


def run(op: tuple[Any, ...], sites: list[Replica], now: list[int]) -> None:
    kind, who = op[0], sites[op[1]]
    if kind == "put":
        who.put(op[2], op[3], fields(op[4], op[5]))
    elif kind == "delete":
        who.delete(op[2], op[3])
    elif kind == "many":
        who.put_many("people", {k: fields(op[3], False) for k in op[2]})
    elif kind == "sync":
        other = sites[1 - op[1]]
        for bundle in who.pack(other.knowledge()):
            other.apply(bundle)
    elif kind == "blob":  # at both sites: held blobs are not missing
        for site in sites:
            site.put_blob(DATA[op[2]], "image/jpeg")
    elif kind == "drop":  # at both sites, by hand (or found corrupt): missing again
        for site in sites:
            site.blob_store.delete([REFS[op[2]].hash])
    else:
        now[0] += 10**6
        who.collect_blobs(grace_ms=1)


@given(ops=st.lists(OPS, max_size=40))
def test_the_index_equals_a_scan_after_any_writes(ops: list[tuple[Any, ...]]) -> None:
    now = [10**12]
    stores: list[Store] = [MemoryStore(), SQLiteStore(":memory:")]
    sites = [
        Replica(s, ident, {"multi": MultiValue()}, wall=lambda: now[0])
        for s, ident in zip(stores, SITES, strict=True)
    ]
    for op in ops:
        run(op, sites, now)
        for store in stores:
            same_as_scan(store)
    for site in sites:
        site.close()
