"""Erasure rules (offsync.plan.erasure), by hypothesis, against a model replica that
holds real signed format-3 segments: whatever the order in which segments and erase
orders arrive, and whether a segment comes whole or already redacted by a relay, every
replica ends with the same visible state (the state of the whole history with erased
records hidden), no held segment holds an erased value (decoded, and as bytes), and
every held segment still verifies against its origin's signature and commitment.
Edge cases are in tests/unit/test_plan_erasure.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync.change import DELETE, ERASE, PUT, Change, canonical_fields, erase_fields
from offsync.identity import Identity
from offsync.plan.erasure import Record, merge, on_arrival, redact, redactions
from offsync.policies import FirstWriterWins, LastWriterWins, MultiValue, Policy
from offsync.segment import NO_PREVIOUS, AnySegment, RedactedSegment, Segment
from tests.helpers.v3_strategies import SIGNER, stream_changes

CLINIC = Identity(bytes([7]) * 32, "clinic")
AUTHORITY = Identity(bytes([9]) * 32, "authority")
WRITERS = (SIGNER, CLINIC, AUTHORITY)
KEYS = ("3519a", "3519b", "3519c")
PREFIX = "3519"


def admitted(change: Change) -> bool:
    """The trust check's verdict, as far as erasure asks: orders of the authority only."""
    return not change.is_erase or change.origin == AUTHORITY.public_key


def marker(origin: bytes, seq: int) -> str:
    """A value no other put holds, so a byte search for it cannot meet another row's."""
    return f"secret-{origin[:2].hex()}-{seq:03d}"


@st.composite
def stream_of(draw: st.DrawFn, writer: Identity) -> list[Change]:
    n = draw(st.integers(0, 6))
    out = []
    for seq in range(1, n + 1):
        key = draw(st.sampled_from(KEYS))
        op = draw(st.sampled_from([PUT, PUT, PUT, DELETE, ERASE]))
        fields: bytes | None = None
        if op == PUT:
            fields = canonical_fields(
                {"name": marker(writer.public_key, seq), "x": draw(st.integers(0, 3))}
            )
        elif op == ERASE:
            fields = erase_fields("court order")
        hlc = draw(st.integers(0, 12))  # ties happen: the stamp breaks them by origin
        out.append(Change(writer.public_key, seq, hlc, "residents", key, op, fields, (), PREFIX, 0))
    return out


@st.composite
def histories(draw: st.DrawFn) -> list[Segment]:
    """Every writer's stream, cut into segments at random points, each sealed."""
    segments: list[Segment] = []
    for writer in WRITERS:
        changes = draw(stream_of(writer))
        prev = NO_PREVIOUS
        i = 0
        while i < len(changes):
            size = draw(st.integers(1, len(changes) - i))
            seg = Segment.seal(writer, changes[i : i + size], prev, None)
            segments.append(seg)
            prev = seg.hash
            i += size
    return segments


class Model:
    """What a replica does with arriving segments, every decision taken by the plan."""

    def __init__(self) -> None:
        self.held: dict[bytes, tuple[AnySegment, list[Change]]] = {}
        self.erased: set[Record] = set()

    def receive(self, segment: AnySegment) -> None:
        segment.verify()
        if segment.hash in self.held:
            return  # a duplicate, in either form
        changes = segment.open_changes()
        arrival = on_arrival(segment, changes, self.erased, admitted, level=None)
        if arrival.redaction is not None:
            assert not arrival.redaction.false_commitment
            segment = arrival.redaction.segment
            changes = segment.open_changes()
        self.held[segment.hash] = (segment, changes)
        if arrival.newly_erased:
            self.erased |= arrival.newly_erased
            candidates = [
                (s, cs)
                for s, cs in self.held.values()
                if any((c.collection, c.key) in arrival.newly_erased for c in cs)
            ]
            for done in redactions(candidates, self.erased, level=None):
                assert not done.false_commitment
                self.held[done.segment.hash] = (done.segment, done.segment.open_changes())

    def state(self, policy: Policy) -> dict[Record, bytes]:
        by_record: dict[Record, list[Change]] = {}
        for _, changes in self.held.values():
            for c in changes:
                by_record.setdefault((c.collection, c.key), []).append(c)
        out = {}
        for record, changes in by_record.items():
            state = merge(changes, policy, admitted)
            if state is not None and state.fields is not None:
                out[record] = state.fields
        return out


def expected(segments: Sequence[Segment], policy: Policy) -> dict[Record, bytes]:
    """The visible state of the whole history: records with an authority's order
    hidden, the others as the policy folds their puts and deletes."""
    by_record: dict[Record, list[Change]] = {}
    for seg in segments:
        for c in seg.open_changes():
            by_record.setdefault((c.collection, c.key), []).append(c)
    out = {}
    for record, changes in by_record.items():
        if any(c.is_erase and admitted(c) for c in changes):
            continue
        rest = [c for c in changes if not c.is_erase]
        if rest:
            fields = policy.merge(rest).fields
            if fields is not None:
                out[record] = fields
    return out


def check_held(model: Model, segments: Sequence[Segment]) -> None:
    """No held segment holds an erased value; every one verifies and opens."""
    erased_markers = [
        marker(c.origin, c.seq).encode()
        for seg in segments
        for c in seg.open_changes()
        if c.op == PUT and (c.collection, c.key) in model.erased
    ]
    for seg, changes in model.held.values():
        seg.verify()
        again = seg.open_changes()  # a redacted form: checks the commitment too
        assert again == changes
        for c in again:
            if c.op == PUT and (c.collection, c.key) in model.erased:
                assert c.fields is None
        if any(c.op == PUT and (c.collection, c.key) in model.erased for c in again):
            assert isinstance(seg, RedactedSegment)
        encoded = seg.encode()
        for m in erased_markers:
            assert m not in encoded


@settings(max_examples=60)
@given(
    histories(),
    st.sampled_from([LastWriterWins(), MultiValue(), FirstWriterWins()]),
    st.data(),
)
def test_any_arrival_order_erases_alike(
    segments: list[Segment], policy: Policy, data: st.DataObject
) -> None:
    relay = Model()
    for seg in segments:
        relay.receive(seg)
    want = expected(segments, policy)
    assert relay.state(policy) == want
    check_held(relay, segments)
    for _ in range(2):
        order = data.draw(st.permutations(segments))
        # A segment may come through the relay, already redacted there.
        via_relay = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
        model = Model()
        for seg, relayed in zip(order, via_relay, strict=True):
            model.receive(relay.held[seg.hash][0] if relayed else seg)
            # Once erased here, never shown again, whatever arrives next.
            assert not model.erased & model.state(policy).keys()
        if order:
            model.receive(order[0])  # a repeat is a duplicate
        assert model.erased == relay.erased
        assert model.state(policy) == want
        check_held(model, segments)


@settings(max_examples=60)
@given(stream_changes(max_changes=10), st.data())
def test_redacting_any_run_by_records_in_two_steps(
    changes: list[Change], data: st.DataObject
) -> None:
    """Any run of a stream (v3_strategies), its records erased in two steps: the first
    redaction is of the whole form, the second of the redacted one; each verifies, each
    erased put is a stub holding no value, every other row is as sealed."""
    seg = Segment.seal(SIGNER, changes, NO_PREVIOUS, None)
    records = sorted({(c.collection, c.key) for c in changes})
    first = data.draw(st.sets(st.sampled_from(records)))
    more = first | data.draw(st.sets(st.sampled_from(records)))
    form: AnySegment = seg
    for erased in (first, more):
        done = redact(form, form.open_changes(), erased, level=None)
        if done is None:
            assert not any(
                c.op == PUT and c.fields is not None and (c.collection, c.key) in erased
                for c in form.open_changes()
            )
            continue
        assert not done.false_commitment and done.segment.hash == seg.hash
        form = done.segment
        form.verify()
        encoded = form.encode()
        for c, o in zip(changes, form.open_changes(), strict=True):
            if c.op == PUT and (c.collection, c.key) in erased:
                assert o.is_erased and o._replace(fields=c.fields) == c
                for v in c.values().values():
                    blob = v.encode() if isinstance(v, str) else v
                    if isinstance(blob, bytes) and len(blob) >= 4:
                        kept = [x.fields or b"" for x in form.open_changes()]
                        if all(blob not in k for k in kept):
                            assert blob not in encoded
            else:
                assert o == c
