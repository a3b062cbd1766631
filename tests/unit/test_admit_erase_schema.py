"""Admission of format 3's erase orders and schema versions (``plan.admit``), and the
merge's bulk path under them (``plan.merge.split``): pure, no store."""

from __future__ import annotations

from offsync.change import DELETE, ERASE, PUT, Change, canonical_fields, erase_fields
from offsync.limits import DEFAULT_LIMITS
from offsync.plan.admit import NOT_AN_AUTHORITY_ERASE, Admission, admit, change_verdict
from offsync.plan.merge import split
from offsync.policies import LastWriterWins
from offsync.schemas import Schema, Schemas
from offsync.status import Kind
from offsync.trust import TrustStore

AUTHORITY, SITE = b"\x01" * 32, b"\x02" * 32
SCHEMAS = Schemas({"r": Schema(2, {1: lambda f: f})})


def _rules(trust: TrustStore | None, schemas: Schemas | None = None) -> Admission:
    return Admission(trust, {}, DEFAULT_LIMITS, 1 << 40, schemas)


def _order(origin: bytes) -> Change:
    return Change(origin, 1, 1 << 20, "r", "k", ERASE, erase_fields("request"))


def test_an_erase_order_is_admitted_from_an_authority_alone() -> None:
    trust = TrustStore.from_records([AUTHORITY], [])
    assert change_verdict(_order(AUTHORITY), _rules(trust)) is None
    assert change_verdict(_order(SITE), _rules(trust)) == NOT_AN_AUTHORITY_ERASE
    assert change_verdict(_order(SITE), _rules(None)) is None  # open mode: anyone


def test_a_change_newer_than_known_is_held_for_schema_but_an_order_never() -> None:
    rules = _rules(None, SCHEMAS)
    newer = Change(SITE, 1, 1 << 20, "r", "k", PUT, canonical_fields({"a": 1}), schema=3)
    status = change_verdict(newer, rules)
    assert status is not None and status.kind is Kind.SCHEMA
    assert change_verdict(newer._replace(op=DELETE, fields=None), rules) is not None
    assert change_verdict(newer._replace(schema=2), rules) is None
    order = _order(SITE)._replace(schema=9)
    assert change_verdict(order, rules) is None
    held, _ = admit([newer._replace(schema=1), newer], rules)
    assert held.kind is Kind.SCHEMA and not held.whole  # the older one applies anyway


def test_the_bulk_path_takes_no_order_stub_or_older_put() -> None:
    put = Change(SITE, 1, 1, "r", "a", PUT, canonical_fields({"a": 1}), schema=2)
    order = Change(SITE, 2, 2, "r", "b", ERASE, erase_fields("x"))
    stub = Change(SITE, 3, 3, "r", "c", PUT, None)
    older = put._replace(seq=4, key="d", schema=1)
    plan = split([put, order, stub, older], lambda _: LastWriterWins(), SCHEMAS)
    assert list(plan.firsts) == [put]
    assert set(plan.to_merge) == {("r", "b"), ("r", "c"), ("r", "d")}
    assert list(split([put], lambda _: LastWriterWins(), SCHEMAS).firsts) == [put]


def test_an_unregistered_collection_is_read_at_version_one_and_newer_is_held() -> None:
    """§10.2: a replica that registered no version reads 0 and 1 and holds later ones,
    in open mode too (no trust store, no validators)."""
    rules = _rules(None, Schemas())
    assert rules.open
    put = Change(SITE, 1, 1 << 20, "doses", "k", PUT, canonical_fields({"a": 1}), schema=1)
    assert admit([put, put._replace(schema=0)], rules)[0].applied
    held, _ = admit([put, put._replace(seq=2, schema=2)], rules)
    assert held.kind is Kind.SCHEMA
