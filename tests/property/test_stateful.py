"""Three replicas under random writes, resolutions and a hostile, lossy courier; one of
them scoped, its scope growing and shrinking.

The machine writes on a small key space in three collections (one per builtin
policy), packs bundles (sometimes encrypted to one peer) into a courier's bag and
delivers them at random: duplicated, out of order, to the wrong site, truncated or
bit-flipped, or never. A damaged or misdelivered bundle must raise an OffsyncError and
change nothing. After every step each replica is held against an independent model:
the set of changes it holds, and the record states recomputed from them by a plain
reference implementation of the merge rules in ``offsync.policies``. At the end a full
exchange must bring every replica to the same state, equal to the model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle as Bag,
)
from hypothesis.stateful import (
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from offsync import ChangeId, Identity, Knowledge, Replica, policies, read_header
from offsync.change import Change
from offsync.encoding import canonical_fields, decode_fields
from offsync.errors import ImmutableRecordError, OffsyncError, SequenceReuseError, UsageError
from offsync.scope import Partition, Scope, Stream

N = 3
#: The last replica is scoped: it holds some of the collections, and its scope grows and
#: shrinks (``change_scope``); the others hold everything.
SCOPED = N - 1
KEYS = ("1", "2", "3")
COLLECTIONS = {"lww": "lww", "fww": "fww", "mv": "mv"}
POLICIES = {
    "lww": policies.LastWriterWins(),
    "fww": policies.FirstWriterWins(),
    "mv": policies.MultiValue(),
}
BASE_WALL = 1_700_000_000_000
HOUR = 3_600_000

field_values = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.integers(0, 3) | st.none(), min_size=1, max_size=3
)


# -- the reference model -------------------------------------------------------------------


class MId(NamedTuple):
    """A change in the model: its origin, its collection (the partition of its
    stream) and its seq in that stream."""

    origin: bytes
    collection: str
    seq: int


@dataclass(frozen=True)
class MChange:
    origin: bytes
    seq: int
    hlc: int
    collection: str
    key: str
    fields: dict[str, Any] | None  # None: a tombstone
    parents: frozenset[MId]

    @property
    def id(self) -> MId:
        return MId(self.origin, self.collection, self.seq)

    @property
    def stamp(self) -> tuple[int, bytes, int]:
        return (self.hlc, self.origin, self.seq)


def ref_version(changes: list[MChange]) -> dict[str, Any] | None:
    """Puts update fields, a tombstone empties the record, in stamp order."""
    ordered = sorted(changes, key=lambda c: c.stamp)
    since_last_delete = ordered
    for i, c in enumerate(ordered):
        if c.fields is None:
            since_last_delete = ordered[i + 1 :]
    if not since_last_delete:
        return None
    out: dict[str, Any] = {}
    for c in since_last_delete:
        assert c.fields is not None
        out.update(c.fields)
    return out


def ref_ancestors(c: MChange, held: dict[MId, MChange]) -> list[MChange]:
    out = {c.id: c}
    todo = list(c.parents)
    while todo:
        p = todo.pop()
        if p in held and p not in out:
            out[p] = held[p]
            todo.extend(held[p].parents)
    return list(out.values())


def ref_state(policy: str, changes: list[MChange]) -> tuple[dict[str, Any] | None, bool]:
    """(visible fields, in conflict) of one record holding ``changes``."""
    if not changes:
        return None, False
    held = {c.id: c for c in changes}
    referenced = {p for c in changes for p in c.parents}
    heads = [c for c in changes if c.id not in referenced]
    versions = {h.id: ref_version(ref_ancestors(h, held)) for h in heads}
    distinct = {None if v is None else canonical_fields(v) for v in versions.values()}
    if policy == "lww":
        return ref_version(changes), False
    if policy == "mv":
        winner = max(heads, key=lambda h: h.stamp)
        return versions[winner.id], len(distinct) > 1
    standing: MChange | None = None
    for c in sorted(changes, key=lambda c: c.stamp):
        if standing is None or standing.id in {a.id for a in ref_ancestors(c, held)}:
            standing = c
    assert standing is not None
    value = ref_version(ref_ancestors(standing, held))
    return value, any(v != value for v in versions.values())


def expand(k: Knowledge) -> set[MId]:
    return {
        MId(st_.origin, st_.collection, s)
        for st_ in k.streams()
        for a, b in k.get(st_)
        for s in range(a, b + 1)
    }


def as_knowledge(ids: set[MId]) -> Knowledge:
    by_stream: dict[Stream, list[tuple[int, int]]] = {}
    for o, c, s in ids:
        by_stream.setdefault(Stream(o, Partition(c)), []).append((s, s))
    return Knowledge(by_stream)


def own_seq(rep: Replica, collection: str) -> int:
    """The last seq ``rep`` issued in ``collection``'s stream (each collection is one)."""
    return rep.seqs().get(Stream(rep.id, Partition(collection)), (0, 0))[0]


# -- the machine -------------------------------------------------------------------------


class Replicas(RuleBasedStateMachine):
    bag = Bag("bag")

    def __init__(self) -> None:
        super().__init__()
        self.now = BASE_WALL
        self.offsets = [0] * N
        self.replicas = [
            Replica.open(
                ":memory:",
                identity=Identity(bytes([i + 1]) * 32, f"r{i}"),
                policies=POLICIES,
                wall=self._wall(i),
                scope=Scope.whole("lww", "mv") if i == SCOPED else None,
            )
            for i in range(N)
        ]
        self.changes: dict[MId, MChange] = {}
        self.held: list[set[MId]] = [set() for _ in range(N)]
        self.scopes: list[set[str]] = [set(COLLECTIONS) for _ in range(N)]
        self.scopes[SCOPED] = {"lww", "mv"}

    def _wall(self, i: int) -> Any:
        return lambda: self.now + self.offsets[i]

    # model helpers
    def inside(self, i: int, ids: set[MId] | frozenset[MId]) -> set[MId]:
        """Those of ``ids`` in replica i's scope."""
        return {x for x in ids if x.collection in self.scopes[i]}

    def lost_own(self, i: int, collection: str) -> bool:
        """Whether replica i wrote changes in ``collection`` it does not hold (they left
        with a shrink and have not come back): writing there waits for them."""
        rep = self.replicas[i]
        return any(
            x.origin == rep.id and x.collection == collection and x not in self.held[i]
            for x in self.changes
        )

    def record(self, i: int, collection: str, key: str) -> list[MChange]:
        return [
            self.changes[c]
            for c in self.held[i]
            if self.changes[c].collection == collection and self.changes[c].key == key
        ]

    def expected(self, i: int, collection: str, key: str) -> tuple[dict[str, Any] | None, bool]:
        return ref_state(collection, self.record(i, collection, key))

    def take_new_changes(self, i: int, before_seq: int, collection: str, key: str) -> None:
        """Add the changes replica i just wrote to the model, checking how it wrote them."""
        rep = self.replicas[i]
        written = {
            c.seq: c
            for c in rep.store.changes_for(collection, key)
            if c.origin == rep.id and c.seq > before_seq
        }
        assert sorted(written) == list(range(before_seq + 1, own_seq(rep, collection) + 1))
        seen = self.record(i, collection, key)
        seen_ids = {c.id for c in seen}
        referenced = {p for c in seen for p in c.parents}
        heads = tuple(sorted(c for c in seen_ids if c not in referenced))
        floor = max((self.changes[c].hlc for c in self.held[i]), default=0)
        for seq in sorted(written):
            c: Change = written[seq]
            named = tuple(sorted(MId(p.origin, collection, p.seq) for p in c.parents))
            assert named == heads, "a write names exactly the heads its writer held"
            assert c.hlc > floor, "a write's HLC is past everything its writer held"
            m = MChange(
                c.origin,
                c.seq,
                c.hlc,
                collection,
                key,
                None if c.fields is None else decode_fields(c.fields),
                frozenset(MId(p.origin, collection, p.seq) for p in c.parents),
            )
            self.changes[m.id] = m
            self.held[i].add(m.id)
            heads, floor = (m.id,), c.hlc

    def check_replica(self, i: int) -> None:
        rep = self.replicas[i]
        assert rep.knowledge() == as_knowledge(self.held[i])
        assert rep.quarantined() == []
        conflicts = set()
        for collection in COLLECTIONS:
            for key in KEYS:
                value, conflict = self.expected(i, collection, key)
                assert rep.get(collection, key) == value, (i, collection, key)
                if conflict:
                    conflicts.add((collection, key))
        assert {(c.collection, c.key) for c in rep.conflicts()} == conflicts

    # rules
    @initialize(offsets=st.lists(st.integers(-HOUR, HOUR), min_size=N, max_size=N))
    def set_clocks(self, offsets: list[int]) -> None:
        self.offsets = offsets

    @rule(i=st.integers(0, N - 1), ms=st.integers(-HOUR, 5000))
    def clocks(self, i: int, ms: int) -> None:
        """Time passes for everyone, or one site's wall clock jumps back."""
        if ms >= 0:
            self.now += ms
        else:
            self.offsets[i] = max(self.offsets[i] + ms, -6 * HOUR)

    @rule(
        i=st.integers(0, N - 1),
        collection=st.sampled_from(list(COLLECTIONS)),
        key=st.sampled_from(KEYS),
        fields=field_values,
    )
    def put(self, i: int, collection: str, key: str, fields: dict[str, Any]) -> None:
        rep = self.replicas[i]
        before = own_seq(rep, collection)
        if collection not in self.scopes[i]:
            with pytest.raises(UsageError):
                rep.put(collection, key, fields)
            assert own_seq(rep, collection) == before
            return
        if self.lost_own(i, collection):
            with pytest.raises(SequenceReuseError):
                rep.put(collection, key, fields)
            return
        visible, _ = self.expected(i, collection, key)
        if collection == "fww" and visible is not None:
            try:
                rep.put(collection, key, fields)
            except ImmutableRecordError:
                assert own_seq(rep, collection) == before
                return
            raise AssertionError("a plain put over a first-writer-wins record must fail")
        rep.put(collection, key, fields)
        self.take_new_changes(i, before, collection, key)
        self.check_replica(i)

    @rule(
        i=st.integers(0, N - 1),
        collection=st.sampled_from(list(COLLECTIONS)),
        key=st.sampled_from(KEYS),
    )
    def delete(self, i: int, collection: str, key: str) -> None:
        rep = self.replicas[i]
        before = own_seq(rep, collection)
        visible, _ = self.expected(i, collection, key)
        if visible is None:
            assert rep.delete(collection, key) is None
            assert own_seq(rep, collection) == before
            return
        if collection == "fww":
            try:
                rep.delete(collection, key)
            except ImmutableRecordError:
                assert own_seq(rep, collection) == before
                return
            raise AssertionError("a plain delete of a first-writer-wins record must fail")
        assert rep.delete(collection, key) == ChangeId(rep.id, before + 1)
        self.take_new_changes(i, before, collection, key)
        self.check_replica(i)

    @rule(i=st.integers(0, N - 1), data=st.data())
    def resolve(self, i: int, data: st.DataObject) -> None:
        rep = self.replicas[i]
        conflicts = rep.conflicts()
        if conflicts:
            target = data.draw(st.sampled_from(conflicts), label="conflict")
            collection, key = target.collection, target.key
        else:
            collection = data.draw(st.sampled_from(list(COLLECTIONS)), label="collection")
            key = data.draw(st.sampled_from(KEYS), label="key")
        held = self.record(i, collection, key)
        if not held:
            return
        referenced = {p for c in held for p in c.parents}
        heads = sorted(c.id for c in held if c.id not in referenced)
        how = data.draw(st.sampled_from(["choose", "fields", "delete"]), label="how")
        before = own_seq(rep, collection)
        if how == "choose":
            head = data.draw(st.sampled_from(heads), label="head")
            chosen = ref_version(ref_ancestors(self.changes[head], {c.id: c for c in held}))
            rep.resolve(collection, key, choose=ChangeId(head.origin, head.seq))
        elif how == "fields":
            rep.resolve(collection, key, data.draw(field_values, label="fields"))
        else:
            rep.resolve(collection, key, delete=True)
        self.take_new_changes(i, before, collection, key)
        value, conflict = self.expected(i, collection, key)
        assert not conflict, "a resolution settles the record"
        if how == "choose":
            assert value == chosen, "resolve(choose=h) shows exactly h's version"
        if how == "delete":
            assert value is None
        self.check_replica(i)

    @rule(
        target=bag,
        src=st.integers(0, N - 1),
        dst=st.integers(0, N - 1),
        since=st.sampled_from(["peer", "none", "empty"]),
        encrypt=st.booleans(),
        scoped=st.booleans(),
    )
    def pack(self, src: int, dst: int, since: str, encrypt: bool, scoped: bool) -> Any:
        rep, peer = self.replicas[src], self.replicas[dst]
        knowledge = {"peer": peer.knowledge(), "none": None, "empty": Knowledge()}[since]
        recipient = peer.identity.public if encrypt and src != dst else None
        scope = peer.scope if scoped else None  # packed for the receiver's scope
        bundles = rep.pack(knowledge, recipient=recipient, always=True, scope=scope)
        assert bundles, "always=True packs at least a receipt"
        out = []
        for b in bundles:
            header, _ = read_header(b)
            ids = expand(header.ranges)
            assert ids <= self.held[src], "a bundle carries only what its sender holds"
            if scoped:
                assert ids <= self.inside(dst, ids), "a scoped pack carries only the scope"
            out.append((b, frozenset(ids), header.recipient))
        if knowledge is not None:
            # whole segments, so possibly more, but never less than what was missing
            wanted = self.inside(dst, self.held[src]) if scoped else self.held[src]
            assert wanted - expand(knowledge) <= set().union(*(x[1] for x in out))
        return multiple(*out)

    @rule(
        item=bag,
        dst=st.integers(0, N - 1),
        damage=st.sampled_from(["none", "none", "none", "truncate", "flip"]),
        data=st.data(),
    )
    def deliver(self, item: Any, dst: int, damage: str, data: st.DataObject) -> None:
        bundle, ids, recipient = item
        rep = self.replicas[dst]
        digest, knowledge = rep.state_digest(), rep.knowledge()
        if damage == "truncate":
            cut = data.draw(st.integers(0, len(bundle) - 1), label="cut")
            bundle = bundle[:cut]
        elif damage == "flip":
            at = data.draw(st.integers(0, len(bundle) * 8 - 1), label="bit")
            bundle = bytes(x ^ (1 << (at % 8)) if n == at // 8 else x for n, x in enumerate(bundle))
        if damage != "none" or (recipient is not None and recipient != rep.id):
            try:
                rep.apply(bundle)
            except OffsyncError:
                pass
            else:
                raise AssertionError("a damaged or misdelivered bundle must be refused")
            assert rep.state_digest() == digest
            assert rep.knowledge() == knowledge
            return
        report = rep.apply(bundle)
        kept = self.inside(dst, ids)  # the rest is not for this replica: not kept
        new = kept - self.held[dst]
        assert (report.applied, report.duplicates, report.quarantined) == (
            len(new),
            len(kept) - len(new),
            0,
        )
        assert report.out_of_scope == len(ids) - len(kept)
        self.held[dst] |= kept
        self.check_replica(dst)

    @rule(src=st.integers(0, N - 1), dst=st.integers(0, N - 1))
    def sync(self, src: int, dst: int) -> None:
        """A clean, direct exchange: everything dst lacks, in one go."""
        if src == dst:
            return
        for b in self.replicas[src].pack(self.replicas[dst].knowledge()):
            self.replicas[dst].apply(b)
        self.held[dst] |= self.inside(dst, self.held[src])
        self.check_replica(dst)

    @rule(collections=st.sets(st.sampled_from(list(COLLECTIONS))))
    def change_scope(self, collections: set[str]) -> None:
        """The scoped replica grows or shrinks its scope. A shrink is refused while its
        own changes in what would leave are not claimed by a peer; else what left is
        gone from it, and what came needs a pull."""
        i = SCOPED
        rep = self.replicas[i]
        leaving = self.scopes[i] - collections
        claimed: dict[Stream, int] = {}
        for c in rep.seq_claims():
            if c.counted and c.stream is not None:
                claimed[c.stream] = max(c.seq, claimed.get(c.stream, 0))
        unsent = [
            s
            for s, (seq, _) in rep.seqs().items()
            if s.collection in leaving and seq > claimed.get(s, 0)
        ]
        if unsent:
            with pytest.raises(UsageError, match="not yet held by a peer"):
                rep.set_scope(Scope.whole(*collections))
        else:
            rep.set_scope(Scope.whole(*collections))
            self.scopes[i] = set(collections)
            self.held[i] = self.inside(i, self.held[i])
        assert rep.scope == Scope.whole("_trust", *self.scopes[i])
        self.check_replica(i)

    @rule(item=consumes(bag))
    def courier_loses_a_bundle(self, item: Any) -> None:
        pass

    @precondition(lambda self: any(self.held))
    @invariant()
    def knowledge_matches(self) -> None:
        for i, rep in enumerate(self.replicas):
            assert rep.knowledge() == as_knowledge(self.held[i])

    def teardown(self) -> None:
        try:
            self.final_exchange()
        finally:
            for rep in self.replicas:
                rep.close()

    def final_exchange(self) -> None:
        pairs = [(s, d) for s in range(N) for d in range(N) if s != d]
        for src, dst in pairs:
            peer = self.replicas[dst]
            for b in self.replicas[src].pack(peer.knowledge(), scope=peer.scope):
                peer.apply(b)
        for src, dst in pairs:  # one round was enough: nothing is missing anywhere
            peer = self.replicas[dst]
            assert self.replicas[src].pack(peer.knowledge(), scope=peer.scope) == []
        everything = set(self.changes)
        full = self.replicas[0].state_digest()
        for i, rep in enumerate(self.replicas):
            # Each holds the full state restricted to its scope.
            assert rep.state_digest() == self.replicas[0].state_digest(scope=rep.scope)
            self.held[i] = set(self.held[i]) | self.inside(i, everything)
            assert rep.knowledge() == as_knowledge(self.inside(i, everything))
            self.check_replica(i)
        assert self.replicas[1].state_digest() == full
        for collection in COLLECTIONS:
            for key in KEYS:
                values = [
                    rep.get(collection, key)
                    for i, rep in enumerate(self.replicas)
                    if collection in self.scopes[i]
                ]
                assert values == [values[0]] * len(values)


#: About 4 s of CPU under the ci profile.
pytestmark = pytest.mark.slow

TestReplicas = Replicas.TestCase
TestReplicas.settings = settings(
    settings.default, max_examples=min(settings().max_examples, 60), stateful_step_count=100
)
