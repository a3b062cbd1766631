"""Scoped and unscoped replicas converge, each to the full state restricted to its scope.

Two properties. ``test_any_delivery_order_converges``: sites write (scoped ones within
their scope), every bundle any of them packs is delivered to every site in a random
order, duplicated; each site's state digest then equals the digest of the full state
restricted to its scope, its knowledge is the full knowledge restricted to it, and it
holds no record outside it. ``ScopedReplicas``: a stateful machine of one centre and
scoped sites that write, exchange through a courier bag (duplicated, reordered, lost),
and grow and shrink their scopes; after every step no site's knowledge claims a
stream outside its scope or anything nobody wrote, and at the end one exchange with
the centre brings every site to the centre's state restricted to its scope.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle as Bag
from hypothesis.stateful import RuleBasedStateMachine, invariant, multiple, rule

from offsync import Identity, Replica, read_header
from offsync.errors import SequenceReuseError, UsageError
from offsync.scope import Scope
from offsync.segindex import SegmentIndex, knowledge_of

RULE = {"r": 1}
REFERENCE = ("lots",)
#: Keys of "r" in partitions "a", "b", "c" (L = 1); "lots" is reference data (L = 0).
KEYS = ("a1", "a2", "b1", "b2", "c1")
#: The scopes a site may hold of "r" (reference data and _trust are always held).
SCOPES = (
    Scope({"r": ["a"]}),
    Scope({"r": ["b"]}),
    Scope({"r": ["a", "c"]}),
    Scope({"r": {"": True, "b": False}}),  # all of it but "b"
    Scope.nothing(),
    Scope.everything(),
)
WALL = 1_700_000_000_000


def site(n: int, scope: Scope | None) -> Replica:
    return Replica.open(
        ":memory:",
        identity=Identity(bytes([n + 1]) * 32, f"s{n}"),
        partitions=RULE,
        reference=REFERENCE,
        scope=scope,
        wall=lambda: WALL,
    )


def held_outside(rep: Replica) -> list[tuple[str, str]]:
    scope = rep.scope
    return [
        (r.collection, r.key)
        for r in rep.store.iter_records()
        if not scope.holds(r.collection, r.key)
    ]


def check_restricted(rep: Replica, full: Replica) -> None:
    """``rep`` holds exactly ``full``'s state and knowledge restricted to its scope."""
    assert rep.state_digest() == full.state_digest(scope=rep.scope)
    assert rep.knowledge() == full.knowledge().restrict(rep.scope)
    assert held_outside(rep) == []


writes = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from([*KEYS, "L"]), st.integers(0, 9)), max_size=12
)


@given(
    scopes=st.lists(st.sampled_from(SCOPES), min_size=3, max_size=3),
    writes=writes,
    order=st.randoms(use_true_random=False),
    twice=st.lists(st.booleans(), max_size=40),
)
def test_any_delivery_order_converges(
    scopes: list[Scope], writes: list[tuple[int, str, int]], order: Any, twice: list[bool]
) -> None:
    sites = [site(i, s) for i, s in enumerate(scopes)]
    full = site(9, None)
    try:
        bundles: list[bytes] = []
        for i, key, value in writes:
            rep = sites[i]
            collection = "lots" if key == "L" else "r"
            if not rep.scope.holds(collection, key):
                with pytest.raises(UsageError):
                    rep.put(collection, key, {"v": value})
                continue
            rep.put(collection, key, {"v": value, "by": i})
            bundles += rep.pack()  # every bundle ever packed travels, in any order
        for rep in sites:
            bundles += rep.pack()
        for dst in [*sites, full]:
            mine = list(bundles)
            mine += [b for b, again in zip(bundles, twice, strict=False) if again]
            order.shuffle(mine)
            for b in mine:
                report = dst.apply(b)
                assert report.out_of_scope == 0 or not dst.scope.is_everything
        for rep in sites:
            check_restricted(rep, full)
    finally:
        for rep in [*sites, full]:
            rep.close()


class ScopedReplicas(RuleBasedStateMachine):
    """A centre (index 0, unscoped) and scoped sites under writes, a lossy courier and
    scope changes."""

    bag = Bag("bag")

    def __init__(self) -> None:
        super().__init__()
        self.sites = [site(0, None), site(1, SCOPES[0]), site(2, SCOPES[2])]
        self.written: set[tuple[bytes, Any]] = set()  # (origin, stream) of every write

    @rule(i=st.integers(0, 2), key=st.sampled_from([*KEYS, "L"]), v=st.integers(0, 9))
    def put(self, i: int, key: str, v: int) -> None:
        rep = self.sites[i]
        collection = "lots" if key == "L" else "r"
        before = rep.state_digest()
        if not rep.scope.holds(collection, key):
            with pytest.raises(UsageError):
                rep.put(collection, key, {"v": v})
            assert rep.state_digest() == before
            return
        try:
            rep.put(collection, key, {"v": v})
        except SequenceReuseError:
            # Its own history of that partition left with a shrink and has not come
            # back yet: writing waits for it, as after a restore.
            assert rep.state_digest() == before
            return
        assert rep.get(collection, key) == {"v": v}

    @rule(
        target=bag,
        src=st.integers(0, 2),
        dst=st.integers(0, 2),
        scoped=st.booleans(),
    )
    def pack(self, src: int, dst: int, scoped: bool) -> Any:
        rep, peer = self.sites[src], self.sites[dst]
        scope = peer.scope if scoped else None
        bundles = rep.pack(peer.knowledge(), scope=scope, always=True)
        for b in bundles:
            if scope is not None:
                ranges = read_header(b)[0].ranges
                assert ranges == ranges.restrict(scope), "a scoped pack sends only the scope"
        return multiple(*bundles)

    @rule(item=bag, dst=st.integers(0, 2))
    def deliver(self, item: bytes, dst: int) -> None:
        self.sites[dst].apply(item)

    @rule(i=st.integers(1, 2), scope=st.sampled_from(SCOPES))
    def change_scope(self, i: int, scope: Scope) -> None:
        rep = self.sites[i]
        before, digest = rep.scope, rep.state_digest()
        new = scope.including("_trust", *REFERENCE)
        restricted = rep.state_digest(scope=new)
        known = rep.knowledge().restrict(new)
        try:
            rep.set_scope(scope)
        except UsageError:
            # Own changes in what would leave are not held by a peer yet: nothing moved.
            assert rep.scope == before and rep.state_digest() == digest
            return
        assert rep.scope == new
        # What stays is as it was; what left is gone (a grow adds nothing by itself).
        assert rep.state_digest() == restricted
        assert rep.knowledge() == known
        assert held_outside(rep) == []

    @rule(a=st.integers(0, 2), b=st.integers(0, 2))
    def sync(self, a: int, b: int) -> None:
        """A clean exchange both ways, each side packing for the other's scope."""
        x, y = self.sites[a], self.sites[b]
        for src, dst in ((x, y), (y, x)):
            for bundle in src.pack(dst.knowledge(), scope=dst.scope, always=True):
                dst.apply(bundle)

    @rule(i=st.integers(1, 2), key=st.sampled_from(KEYS), back=st.booleans())
    def hand_over(self, i: int, key: str, back: bool) -> None:
        """A site writes, syncs with the centre and gives the partition up: the centre's
        receipt says it holds the site's change, so the shrink goes through, and the
        site's own history there is the centre's to give back if the scope grows again."""
        rep = self.sites[i]
        if not rep.scope.holds("r", key):
            return
        # (SequenceReuseError: its own history there has not come back yet; the syncs
        # below bring it.)
        with contextlib.suppress(SequenceReuseError):
            rep.put("r", key, {"v": 99})
        for _ in range(2):  # the second brings the centre's receipt of the first
            self.sync(0, i)
        rep = self.sites[i]
        rep.set_scope(rep.scope - Scope({"r": [key[0]]}))
        assert not rep.scope.holds("r", key) and rep.get("r", key) is None
        if back:  # and takes it back at once: its own history there must come back first
            rep.set_scope(rep.scope | Scope({"r": [key[0]]}))
            with pytest.raises(SequenceReuseError):
                rep.put("r", key, {"v": 98})

    @rule(i=st.integers(1, 2))
    def reopen_keeps_the_scope(self, i: int) -> None:
        """A replica's scope is kept in its store (a new Replica on the same store)."""
        rep = self.sites[i]
        again = Replica(
            rep.store,
            rep.identity,
            partitions=RULE,
            reference=REFERENCE,
            wall=lambda: WALL,
        )
        assert again.scope == rep.scope
        assert again.knowledge() == rep.knowledge()
        self.sites[i] = again

    @invariant()
    def nothing_outside_the_scope(self) -> None:
        for rep in self.sites:
            known = rep.knowledge()
            assert known == known.restrict(rep.scope), "knowledge claims only its scope"
            assert held_outside(rep) == []

    @invariant()
    def knowledge_claims_only_what_is_held(self) -> None:
        """What a site says it holds of other origins is what its store holds (own
        changes may also wait unsealed in its outbox)."""
        for rep in self.sites:
            stored = knowledge_of(SegmentIndex.from_rows(rep.store.segment_index()).intervals())
            others = [o for o in rep.knowledge().origins() if o != rep.id]
            assert rep.knowledge().restrict_origins(others) == stored.restrict_origins(others)
            assert stored == stored.restrict(rep.scope), "the store holds only the scope"

    def teardown(self) -> None:
        try:
            centre = self.sites[0]
            for rep in self.sites[1:]:
                for b in rep.pack(centre.knowledge()):
                    centre.apply(b)
            for rep in self.sites[1:]:
                for b in centre.pack(rep.knowledge(), scope=rep.scope):
                    rep.apply(b)
            for rep in self.sites[1:]:
                check_restricted(rep, centre)
        finally:
            for rep in self.sites:
                rep.close()


#: A few seconds of CPU under the ci profile.
pytestmark = pytest.mark.slow

TestScopedReplicas = ScopedReplicas.TestCase
TestScopedReplicas.settings = settings(
    settings.default, max_examples=min(settings().max_examples, 40), stateful_step_count=40
)
