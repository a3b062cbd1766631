"""Schema-version rules (offsync.plan.schema), by hypothesis, against a model replica:
changes written under every version of a chain of upcasters, arriving in any order,
give the same state; a replica behind holds (never drops) exactly the changes newer
than it knows, and once upgraded shows what a replica that was never behind shows.
Edge cases are in tests/unit/test_plan_schema.py.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offsync import Schema, Schemas
from offsync.change import DELETE, ERASE, PUT, Change, canonical_fields, erase_fields
from offsync.plan.erasure import Record, merge
from offsync.plan.schema import Hold, reexamine, verdict
from offsync.policies import LastWriterWins, Policy
from offsync.schemas import Upcaster
from offsync.status import Kind
from tests.helpers.v3_strategies import SIGNER
from tests.property.test_schemas_properties import FIELDS, STEP, step_of

KEYS = ("3519a", "3519b")


def registry(specs: list[tuple[str, str, str]], version: int) -> Schemas:
    """``residents`` at ``version`` with the first steps of ``specs``."""
    steps: dict[int, Upcaster] = {v: step_of(specs[v - 1]) for v in range(1, version)}
    return Schemas({"residents": Schema(version, steps)})


def everyone(change: Change) -> bool:
    return True


@st.composite
def changes_of(draw: st.DrawFn, top: int) -> list[Change]:
    """Puts, deletes and erase orders of two records, of schema versions 0 … top + 1
    (one past what the newest replica knows)."""
    n = draw(st.integers(1, 10))
    out = []
    for seq in range(1, n + 1):
        op = draw(st.sampled_from([PUT, PUT, PUT, PUT, DELETE, ERASE]))
        fields = (
            canonical_fields(draw(FIELDS))
            if op == PUT
            else erase_fields("asked")
            if op == ERASE
            else None
        )
        out.append(
            Change(
                SIGNER.public_key,
                seq,
                draw(st.integers(0, 8)),
                "residents",
                draw(st.sampled_from(KEYS)),
                op,
                fields,
                (),
                "3519",
                draw(st.integers(0, top + 1)),
            )
        )
    return out


class Model:
    """A replica's applied and held changes, every decision taken by the plan."""

    def __init__(self, schemas: Schemas) -> None:
        self.schemas = schemas
        self.applied: list[Change] = []
        self.held: list[Change] = []

    def receive(self, change: Change) -> None:
        v = verdict(change, self.schemas)
        if isinstance(v, Hold):
            assert v.status.kind is Kind.SCHEMA
            self.held.append(change)
        else:
            self.applied.append(change)

    def upgrade(self, schemas: Schemas) -> None:
        self.schemas = schemas
        again = reexamine(self.held, schemas)
        self.applied.extend(again.apply)
        self.held = [c for c, _ in again.still_held]

    def state(self, policy: Policy) -> dict[Record, bytes | None]:
        by_record: dict[Record, list[Change]] = {}
        for c in self.applied:
            by_record.setdefault((c.collection, c.key), []).append(c)
        out = {}
        for record, changes in by_record.items():
            state = merge(changes, policy, everyone, self.schemas)
            if state is not None:
                out[record] = state.fields
        return out


CHAINS = st.lists(STEP, min_size=1, max_size=4)


@given(CHAINS, st.data())
def test_any_order_gives_the_same_state(
    specs: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    top = len(specs) + 1
    changes = data.draw(changes_of(top))
    policy = LastWriterWins()
    first = Model(registry(specs, top))
    for c in changes:
        first.receive(c)
    for _ in range(2):
        other = Model(registry(specs, top))
        for c in data.draw(st.permutations(changes)):
            other.receive(c)
        assert other.state(policy) == first.state(policy)
        assert sorted(other.held) == sorted(first.held)
    # Reading an old put is writing its upcast fields at the current version.
    schemas = registry(specs, top)
    rewritten = Model(schemas)
    for c in changes:
        if c.op == PUT and c.schema <= top:
            assert c.fields is not None
            c = c._replace(
                fields=canonical_fields(schemas.upcast("residents", c.values(), c.schema)),
                schema=top,
            )
        rewritten.receive(c)
    assert rewritten.state(policy) == first.state(policy)


@given(CHAINS, st.data())
def test_a_replica_behind_holds_then_applies_after_upgrade(
    specs: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    top = len(specs) + 1
    behind_at = data.draw(st.integers(1, top - 1)) if top > 1 else 1
    changes = data.draw(changes_of(top))
    policy = LastWriterWins()
    current = Model(registry(specs, top))
    behind = Model(registry(specs, behind_at))
    for c in data.draw(st.permutations(changes)):
        current.receive(c)
        behind.receive(c)
    # Held exactly when newer than known (erase orders never), and nothing dropped.
    assert sorted(behind.held) == sorted(
        c for c in changes if c.schema > behind_at and not c.is_erase
    )
    assert sorted(behind.applied + behind.held) == sorted(changes)
    behind.upgrade(registry(specs, top))
    assert sorted(behind.held) == sorted(current.held)
    assert sorted(behind.applied) == sorted(current.applied)
    assert behind.state(policy) == current.state(policy)
