"""Schema-version planning (offsync.plan.schema), its edge cases: versions 0 and 1 are
one, a collection never registered reads 0 and 1 and holds later ones, erase orders are
never held, re-examination after an upgrade moves exactly what became readable, and
puts reach the fold upcast (the same tuples when nothing is). The properties are in
tests/property/test_schema_rules.py."""

from __future__ import annotations

import pytest

from offsync.change import DELETE, ERASE, PUT, Change, canonical_fields, erase_fields
from offsync.errors import SchemaVersionError, UpcastError
from offsync.plan.schema import Apply, Hold, for_fold, held, reexamine, verdict
from offsync.schemas import Schema, Schemas
from offsync.status import Kind, Status
from tests.helpers.v3_strategies import SIGNER

V3 = Schemas(
    {
        "residents": Schema(
            3,
            {
                1: lambda f: {**f, "region": "Sulawesi"},
                2: lambda f: {k: v for k, v in f.items() if k != "old"},
            },
        )
    }
)


def change(seq: int, schema: int, op: int = PUT, collection: str = "residents") -> Change:
    fields = (
        canonical_fields({"name": "Siti", "old": 1})
        if op == PUT
        else erase_fields("asked")
        if op == ERASE
        else None
    )
    return Change(SIGNER.public_key, seq, seq, collection, "3519a", op, fields, (), "3519", schema)


def test_older_and_current_versions_apply_newer_ones_are_held() -> None:
    for v in (0, 1, 2, 3):
        assert verdict(change(1, v), V3) == Apply(v, 3)
    hold = verdict(change(1, 4), V3)
    assert isinstance(hold, Hold) and hold.status.kind is Kind.SCHEMA
    assert str(hold.status) == "schema: version 4 of 'residents' is newer than this replica's 3"
    assert "3519" not in str(hold.status)  # no key in a reason


def test_an_unregistered_collection_reads_zero_and_one_only() -> None:
    assert verdict(change(1, 0, collection="lots"), V3) == Apply(0, 1)
    assert verdict(change(1, 1, collection="lots"), V3) == Apply(1, 1)
    assert isinstance(verdict(change(1, 2, collection="lots"), V3), Hold)
    assert isinstance(verdict(change(1, 2, DELETE), Schemas()), Hold)  # deletes too (§10.2)


def test_an_erase_order_is_never_held_for_its_version() -> None:
    assert verdict(change(1, 9, ERASE), V3) == Apply(9, 3)
    assert verdict(change(1, 9, ERASE), Schemas()) == Apply(9, 1)


def test_held_lists_the_changes_to_quarantine_with_their_reasons() -> None:
    cs = [change(1, 1), change(2, 5), change(3, 5, ERASE), change(4, 4, DELETE)]
    got = held(cs, V3)
    assert [c.seq for c, _ in got] == [2, 4]
    assert all(isinstance(s, Status) and s.kind is Kind.SCHEMA for _, s in got)


def test_reexamine_after_an_upgrade_moves_exactly_what_became_readable() -> None:
    v1 = Schemas({"residents": Schema(1)})
    cs = [change(1, 2), change(2, 3), change(3, 4)]
    assert [c for c, _ in held(cs, v1)] == cs
    once = reexamine(cs, V3)
    assert once.apply == cs[:2]
    assert [c for c, _ in once.still_held] == cs[2:]
    assert str(once.still_held[0][1]).endswith("newer than this replica's 3")
    same = reexamine(cs, v1)  # no upgrade: nothing moves
    assert same.apply == [] and len(same.still_held) == 3


def test_for_fold_upcasts_puts_and_leaves_the_rest() -> None:
    cs = [change(1, 0), change(2, 2), change(3, 3), change(4, 1, DELETE), change(5, 9, ERASE)]
    out = for_fold(cs, V3)
    assert out[0].fields == canonical_fields({"name": "Siti", "region": "Sulawesi"})
    assert out[0]._replace(fields=cs[0].fields) == cs[0]  # the schema it was written under stays
    assert out[1].fields == canonical_fields({"name": "Siti"})
    assert out[2] is cs[2]  # current version: the same tuple
    assert out[3] is cs[3] and out[4] is cs[4]  # a delete, an erase order
    stub = change(6, 1)._replace(fields=None)
    assert for_fold([stub], V3)[0] is stub


def test_for_fold_refuses_what_should_have_been_held_and_reports_failing_upcasters() -> None:
    with pytest.raises(SchemaVersionError):
        for_fold([change(1, 4)], V3)

    def fails(fields: dict[str, object]) -> dict[str, object]:
        raise ZeroDivisionError

    broken = Schemas({"residents": Schema(2, {1: fails})})
    with pytest.raises(UpcastError):
        for_fold([change(1, 1)], broken)
