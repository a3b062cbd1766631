"""Erasure planning (offsync.plan.erasure), its edge cases: an order for a record never
seen, an order arriving twice, redacting a redacted segment further, a delete and an
order in one segment, orders that are not admitted, stubs without their order, and an
origin that signed a false commitment. The properties are in
tests/property/test_erasure_rules.py."""

from __future__ import annotations

from offsync.change import DELETE, ERASE, PUT, Change, canonical_fields, erase_fields
from offsync.columns import encode_block
from offsync.compression import raw_frame
from offsync.identity import Identity
from offsync.plan.erasure import (
    alone_is_state,
    erased_by,
    hidden,
    is_erased,
    merge,
    on_arrival,
    redact,
    redactions,
    rows_to_redact,
    visible_changes,
)
from offsync.policies import FirstWriterWins, LastWriterWins, MultiValue
from offsync.schemas import Schema, Schemas
from offsync.scope import Partition
from offsync.segment import NO_PREVIOUS, RedactedSegment, Segment
from tests.helpers.v3_strategies import SIGNER

AUTHORITY = Identity(bytes([9]) * 32, "authority")
A = ("residents", "3519a")
B = ("residents", "3519b")


def admitted(change: Change) -> bool:
    return not change.is_erase or change.origin == AUTHORITY.public_key


def change(
    who: Identity, seq: int, record: tuple[str, str], op: int, value: str = "", hlc: int = 0
) -> Change:
    fields = (
        canonical_fields({"name": value})
        if op == PUT
        else erase_fields("asked by the resident")
        if op == ERASE
        else None
    )
    return Change(who.public_key, seq, hlc or seq, record[0], record[1], op, fields, (), "3519", 0)


def seal(who: Identity, changes: list[Change]) -> Segment:
    return Segment.seal(who, changes, NO_PREVIOUS, None)


def test_rows_to_redact_are_the_puts_of_erased_records_only() -> None:
    cs = [
        change(SIGNER, 1, A, PUT, "Siti"),
        change(SIGNER, 2, B, PUT, "Budi"),
        change(SIGNER, 3, A, DELETE),
        change(SIGNER, 4, A, PUT, "Siti Aminah"),
    ]
    assert rows_to_redact(cs, {A}) == (0, 3)
    assert rows_to_redact(cs, {B}) == (1,)
    assert rows_to_redact(cs, set()) == ()
    assert rows_to_redact([cs[0]._replace(fields=None)], {A}) == ()  # already a stub


def test_only_admitted_orders_erase() -> None:
    ours = change(SIGNER, 1, A, ERASE)
    theirs = change(AUTHORITY, 1, B, ERASE)
    assert erased_by([ours, theirs], admitted) == {B}
    assert not is_erased([ours, change(SIGNER, 2, A, PUT, "x")], admitted)
    assert is_erased([theirs], admitted)


def test_an_order_for_a_record_never_seen() -> None:
    order = seal(AUTHORITY, [change(AUTHORITY, 1, A, ERASE)])
    arrival = on_arrival(order, order.open_changes(), set(), admitted, level=None)
    assert arrival.newly_erased == {A} and arrival.redaction is None
    state = merge(order.open_changes(), LastWriterWins(), admitted)
    assert state is not None and state.fields is None  # hidden, heads kept
    assert [tuple(h) for h in state.heads] == [tuple(order.open_changes()[0].id)]
    # A put of it arriving later is redacted on arrival, never stored whole.
    late = seal(SIGNER, [change(SIGNER, 1, A, PUT, "Siti"), change(SIGNER, 2, B, PUT, "Budi")])
    later = on_arrival(late, late.open_changes(), {A}, admitted, level=None)
    assert later.newly_erased == frozenset() and later.redaction is not None
    kept = later.redaction.segment
    assert isinstance(kept, RedactedSegment) and kept.hash == late.hash
    assert later.redaction.rows == (0,)
    opened = kept.open_changes()
    assert opened[0].is_erased and opened[1] == late.open_changes()[1]
    assert b"Siti" not in kept.encode() and b"Budi" in kept.encode()


def test_an_order_arriving_twice() -> None:
    held = seal(SIGNER, [change(SIGNER, 1, A, PUT, "Siti")])
    order = seal(AUTHORITY, [change(AUTHORITY, 1, A, ERASE)])
    first = on_arrival(order, order.open_changes(), set(), admitted, level=None)
    assert first.newly_erased == {A}
    (done,) = redactions([(held, held.open_changes())], {A}, level=None)
    assert isinstance(done.segment, RedactedSegment)
    # Again (a duplicate the replica did not catch, or a second order for it): nothing new.
    again = on_arrival(order, order.open_changes(), {A}, admitted, level=None)
    assert again.newly_erased == frozenset() and again.redaction is None
    assert redactions([(done.segment, done.segment.open_changes())], {A}, level=None) == []
    second = seal(AUTHORITY, [change(AUTHORITY, 1, A, ERASE), change(AUTHORITY, 2, A, ERASE)])
    assert on_arrival(second, second.open_changes(), {A}, admitted).newly_erased == frozenset()


def test_redacting_a_redacted_segment_further() -> None:
    whole = seal(
        SIGNER,
        [
            change(SIGNER, 1, A, PUT, "Siti"),
            change(SIGNER, 2, B, PUT, "Budi"),
            change(SIGNER, 3, A, PUT, "Aminah"),
        ],
    )
    first = redact(whole, whole.open_changes(), {A}, level=None)
    assert first is not None and first.rows == (0, 2)
    once = first.segment
    assert isinstance(once, RedactedSegment)
    assert redact(once, once.open_changes(), {A}, level=None) is None  # nothing new
    second = redact(once, once.open_changes(), {A, B}, level=None)
    assert second is not None and second.rows == (1,)
    twice = second.segment
    assert isinstance(twice, RedactedSegment)
    twice.verify()
    assert twice.erased == (0, 1, 2) and twice.hash == whole.hash
    assert all(c.is_erased for c in twice.open_changes())
    for name in (b"Siti", b"Budi", b"Aminah"):
        assert name not in twice.encode()


def test_a_delete_and_an_order_in_one_segment() -> None:
    cs = [
        change(AUTHORITY, 1, A, PUT, "Siti"),
        change(AUTHORITY, 2, A, DELETE),
        change(AUTHORITY, 3, A, ERASE),
        change(AUTHORITY, 4, A, PUT, "written after the order"),
    ]
    seg = seal(AUTHORITY, cs)
    arrival = on_arrival(seg, seg.open_changes(), set(), admitted, level=None)
    assert arrival.newly_erased == {A}
    assert arrival.redaction is not None and arrival.redaction.rows == (0, 3)
    kept = arrival.redaction.segment.open_changes()
    assert kept[1] == cs[1] and kept[2] == cs[2]  # the delete and the order stay
    assert kept[0].is_erased and kept[3].is_erased
    for policy in (LastWriterWins(), MultiValue(), FirstWriterWins()):
        state = merge(kept, policy, admitted)
        assert state is not None and state.fields is None


def test_an_order_not_admitted_is_no_field_of_the_record() -> None:
    cs = [change(SIGNER, 1, A, PUT, "Siti", hlc=1), change(SIGNER, 2, A, ERASE, hlc=2)]
    assert visible_changes(cs) == cs[:1]
    state = merge(cs, LastWriterWins(), admitted)
    assert state is not None and state.fields == cs[0].fields
    seg = seal(SIGNER, cs)
    arrival = on_arrival(seg, seg.open_changes(), set(), admitted, level=None)
    assert arrival.newly_erased == frozenset() and arrival.redaction is None
    only = [cs[1]]
    assert merge(only, LastWriterWins(), admitted) is None  # nothing applied to show
    assert merge([], LastWriterWins(), admitted) is None


def test_a_stub_without_its_order_hides_the_record() -> None:
    put = change(SIGNER, 1, A, PUT, "Siti", hlc=1)
    later = change(SIGNER, 2, A, PUT, "Aminah", hlc=2)
    stub = put._replace(fields=None)
    assert not is_erased([stub, later], admitted) and hidden([stub, later], admitted)
    state = merge([stub, later], LastWriterWins(), admitted)
    assert state is not None and state.fields is None
    # Without the stub the record shows: the stub is no delete.
    shown = merge([later], LastWriterWins(), admitted)
    assert shown is not None and shown.fields == later.fields


def test_merge_reads_puts_in_the_current_schema_version() -> None:
    put = change(SIGNER, 1, A, PUT, "Siti")
    schemas = Schemas({"residents": Schema(2, {1: lambda f: {**f, "region": "Sulawesi"}})})
    state = merge([put], LastWriterWins(), admitted, schemas)
    assert state is not None
    assert state.fields == canonical_fields({"name": "Siti", "region": "Sulawesi"})


def test_a_false_commitment_is_reported_not_redacted() -> None:
    cs = [change(SIGNER, 1, A, PUT, "Siti")]
    plain, _ = encode_block(cs, Partition("residents", "3519"), bytes(32))
    liar = Segment.seal_block(
        SIGNER, Partition("residents", "3519"), 1, 1, raw_frame(plain), bytes(32), NO_PREVIOUS
    )
    done = redact(liar, liar.open_changes(), {A}, level=None)
    assert done is not None and done.false_commitment and done.segment is liar
    assert done.rows == (0,)


def test_only_plain_changes_take_the_bulk_path() -> None:
    """An order alone would otherwise be stored as a put of its reason."""
    schemas = Schemas({"residents": Schema(2, {1: lambda f: f})})
    put = change(SIGNER, 1, A, PUT, "Siti")
    assert alone_is_state(put) and alone_is_state(change(SIGNER, 2, A, DELETE))
    assert not alone_is_state(change(AUTHORITY, 1, A, ERASE))
    assert not alone_is_state(put._replace(fields=None))
    assert not alone_is_state(put, schemas)  # version 0 read at 2: upcast first
    assert alone_is_state(put._replace(schema=2), schemas)
    assert alone_is_state(change(SIGNER, 2, A, DELETE), schemas)


def test_an_order_taken_back_leaves_the_record_hidden() -> None:
    """Its authority revoked after the erasure: the values are gone, the stubs stay."""
    held = seal(SIGNER, [change(SIGNER, 1, A, PUT, "Siti"), change(SIGNER, 2, B, PUT, "Budi")])
    order = change(AUTHORITY, 1, A, ERASE, hlc=9)
    (done,) = redactions([(held, held.open_changes())], erased_by([order], admitted), level=None)
    kept = done.segment.open_changes()
    state = merge([kept[0]], LastWriterWins(), admitted)  # the order no longer applied
    assert state is not None and state.fields is None
    other = merge([kept[1]], LastWriterWins(), admitted)
    assert other is not None and other.fields == held.open_changes()[1].fields
