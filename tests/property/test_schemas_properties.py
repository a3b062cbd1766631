"""Upcaster chains (offsync.schemas), by hypothesis: deterministic, total, the same step
by step as at once, and idempotent at the current version. Examples and errors are in
tests/unit/test_schemas.py.

Chains are drawn from a few pure, total steps (rename, add, drop, wrap, copy as text),
each applied to arbitrary field maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from offsync import Schema, Schemas
from offsync.encoding import canonical_fields
from offsync.errors import SchemaVersionError
from offsync.schemas import Upcaster

NAMES = st.sampled_from(["name", "village", "region", "nik", "dob"])
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)
FIELDS = st.dictionaries(NAMES, VALUES, max_size=5)
#: A step as data: (kind, a, b); kinds below.
STEP = st.tuples(st.sampled_from(["rename", "add", "drop", "wrap", "text"]), NAMES, NAMES)


def step_of(spec: tuple[str, str, str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A pure, total upcaster from a step's data (never changes its argument)."""
    kind, a, b = spec

    def step(fields: dict[str, Any]) -> dict[str, Any]:
        out = dict(fields)
        if kind == "rename" and a in out:
            out[b] = out.pop(a)
        elif kind == "add":
            out.setdefault(a, b)
        elif kind == "drop":
            out.pop(a, None)
        elif kind == "wrap" and a in out:
            out[a] = [out[a]]
        elif kind == "text":
            out[b] = repr(out.get(a))
        return out

    return step


def registry(specs: list[tuple[str, str, str]], version: int | None = None) -> Schemas:
    """``residents`` at ``version`` (default: every step), with the first steps of ``specs``."""
    version = len(specs) + 1 if version is None else version
    steps: dict[int, Upcaster] = {v: step_of(specs[v - 1]) for v in range(1, version)}
    return Schemas({"residents": Schema(version, steps)})


CHAINS = st.lists(STEP, max_size=6)


@given(CHAINS, FIELDS, st.data())
def test_chains_are_deterministic(
    specs: list[tuple[str, str, str]], fields: dict[str, Any], data: st.DataObject
) -> None:
    """Two registries built alike read alike, every time, and leave the input alone."""
    version = data.draw(st.integers(0, len(specs) + 1))
    before = dict(fields)
    one = registry(specs).upcast("residents", fields, version)
    two = registry(specs).upcast("residents", fields, version)
    again = registry(specs).chain("residents", version)(fields)
    assert canonical_fields(one) == canonical_fields(two) == canonical_fields(again)
    assert fields == before


@given(CHAINS, FIELDS, st.data())
def test_chains_are_total(
    specs: list[tuple[str, str, str]], fields: dict[str, Any], data: st.DataObject
) -> None:
    """Every version up to the current one reads as a field map of the current version
    (canonically encodable); every later one is refused with the schema reason."""
    schemas = registry(specs)
    current = len(specs) + 1
    for version in range(current + 1):
        got = schemas.upcast("residents", fields, version)
        assert type(got) is dict and all(type(k) is str for k in got)
        as_bytes = schemas.upcast_fields("residents", canonical_fields(fields), version)
        assert as_bytes == canonical_fields(got), "bytes and maps upcast alike"
    newer = data.draw(st.integers(current + 1, 2**32 - 1))
    try:
        schemas.upcast("residents", fields, newer)
    except SchemaVersionError as exc:
        assert str(exc).startswith("schema: ")
    else:
        raise AssertionError("a newer version was read")


@given(CHAINS, FIELDS, st.data())
def test_step_by_step_equals_the_chain(
    specs: list[tuple[str, str, str]], fields: dict[str, Any], data: st.DataObject
) -> None:
    """A site upgraded one version at a time, upcasting at each upgrade, reads what a
    site upgraded at once reads; and the chain is its steps applied in order."""
    current = len(specs) + 1
    start = data.draw(st.integers(1, current))
    at_once = registry(specs).upcast("residents", fields, start)
    stepwise = fields
    by_hand = fields
    for version in range(start, current):
        stepwise = registry(specs, version + 1).upcast("residents", stepwise, version)
        by_hand = step_of(specs[version - 1])(by_hand)
    assert canonical_fields(stepwise) == canonical_fields(at_once) == canonical_fields(by_hand)


@given(CHAINS, FIELDS, st.data())
def test_upcasting_is_idempotent_at_the_current_version(
    specs: list[tuple[str, str, str]], fields: dict[str, Any], data: st.DataObject
) -> None:
    schemas = registry(specs)
    current = len(specs) + 1
    version = data.draw(st.integers(0, current))
    once = schemas.upcast("residents", fields, version)
    assert schemas.upcast("residents", once, current) == once
    assert schemas.upcast("residents", fields, current) == fields
