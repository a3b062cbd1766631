"""Schema versions across real replicas: sites writing under different versions of a
collection (upgraded at different times) exchange in any order; once every replica
holds the same changes and is opened with the same upcasters, all show the same state
(equal state digests), whatever was held for its version on the way."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import Replica
from offsync.identity import Identity
from offsync.schemas import Schema, Schemas
from offsync.sync import sync
from offsync.transports.memory import LoopbackTransport

SITES = 3
IDS = [Identity.generate(f"site{i}") for i in range(SITES)]


def _rename(f: dict[str, Any]) -> dict[str, Any]:
    out = dict(f)
    if "n" in out:
        out["name"] = out.pop("n")
    return out


def _tag(f: dict[str, Any]) -> dict[str, Any]:
    return {**f, "tagged": True}


def schemas(version: int) -> Schemas:
    steps = {1: _rename, 2: _tag}
    return Schemas({"r": Schema(version, {v: steps[v] for v in range(1, version)})})


action = st.one_of(
    st.tuples(
        st.just("put"), st.integers(0, SITES - 1), st.sampled_from(["a", "b"]), st.integers(0, 9)
    ),
    st.tuples(st.just("sync"), st.integers(0, SITES - 1), st.integers(0, SITES - 1), st.just(0)),
)


@settings(max_examples=12, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=SITES, max_size=SITES), st.lists(action, max_size=20))
def test_replicas_on_different_versions_converge(versions: list[int], actions: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(Path(tmp) / f"{i}.db") for i in range(SITES)]
        sites = [
            Replica.open(p, identity=i, schemas=schemas(v))
            for p, i, v in zip(paths, IDS, versions, strict=True)
        ]
        for kind, a, b, value in actions:
            if kind == "put":
                v = sites[a].schemas.version("r")
                fields = {"n": value} if v == 1 else {"name": value}
                sites[a].put("r", b, fields)
            elif a != b:
                sync(sites[a], LoopbackTransport(sites[b]))
        for _ in range(2):
            for i in range(1, SITES):
                sync(sites[i], LoopbackTransport(sites[0]))
        for s in sites:
            s.close()
        top = max(versions)
        sites = [
            Replica.open(p, identity=i, schemas=schemas(top))
            for p, i in zip(paths, IDS, strict=True)
        ]
        assert all(s.knowledge() == sites[0].knowledge() for s in sites)
        assert len({s.state_digest() for s in sites}) == 1
        for s in sites:
            assert not s.quarantined()
            s.close()
