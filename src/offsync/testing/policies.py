"""Property checks for merge policies, and hypothesis strategies for change DAGs.

A policy must be a function of the *set* of changes held for a record: replicas that
hold the same changes, received in any order, must show the same state. The strategies
here draw the change histories of one record that real sites produce — several
origins writing with seqs 1, 2, 3 …, each write naming the heads its writer had seen,
HLCs that move past every parent — and ``check_policy`` merges random subsets of them
(so parents may be missing, as when changes arrive before their ancestors) in random
orders and demands the same ``RecordState`` every time.

Needs ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as Settings
from hypothesis import strategies as st

from ..change import DELETE, PUT, Change, ChangeId
from ..encoding import canonical_fields, unpack_strict
from ..policies import Policy, RecordState

__all__ = ["ORIGINS", "change_dags", "check_policy", "field_maps", "subsets_of"]

#: Three fixed, sorted 32-byte origins (not real keys: policies never verify signatures).
ORIGINS: tuple[bytes, ...] = tuple(bytes([i]) * 32 for i in (1, 2, 3))

_FIELD_NAMES = ("a", "b", "c")


def field_maps() -> st.SearchStrategy[dict[str, Any]]:
    """Small field maps over three names, so concurrent writes collide on fields."""
    return st.dictionaries(
        st.sampled_from(_FIELD_NAMES),
        st.one_of(st.integers(-3, 3), st.sampled_from(["x", "y", ""]), st.none()),
        min_size=1,
        max_size=3,
    )


_FIELD_MAPS = field_maps()
_INTS = [st.integers(0, i) for i in range(16)]


def _small_ints(top: int) -> st.SearchStrategy[int]:
    return _INTS[top] if top < len(_INTS) else st.integers(0, top)


@st.composite
def change_dags(
    draw: st.DrawFn,
    *,
    collection: str = "c",
    key: str = "k",
    max_changes: int = 8,
    origins: Sequence[bytes] = ORIGINS,
    deletes: bool = True,
) -> list[Change]:
    """The full history of one record, in the order it was written.

    Each change picks its parents among changes written before it: usually the heads
    of what its writer had seen (a subset of earlier changes, closed under ancestry),
    so that both linear histories and concurrent branches appear.
    """
    n = draw(st.integers(1, max_changes))
    changes: list[Change] = []
    next_seq = dict.fromkeys(origins, 1)
    for _ in range(n):
        origin = origins[draw(_small_ints(len(origins) - 1))]
        seen: set[ChangeId] = set()
        if changes:
            last = len(changes) - 1
            picked = [draw(_small_ints(last)) for _ in range(draw(_small_ints(3)))]
            # A writer has always seen its own earlier changes.
            own = [i for i, c in enumerate(changes) if c.origin == origin]
            if own:
                picked.append(own[-1])
            by_id = {c.id: c for c in changes}
            stack = [changes[i].id for i in picked]
            while stack:
                cid = stack.pop()
                if cid not in seen:
                    seen.add(cid)
                    stack.extend(by_id[cid].parents)
        referenced = {p for c in changes if c.id in seen for p in c.parents}
        parents = tuple(sorted(cid for cid in seen if cid not in referenced))
        floor = max((c.hlc for c in changes if c.id in seen), default=0)
        # Concurrent branches may share an HLC; the origin then breaks the tie.
        hlc = floor + 1 + draw(_small_ints(2))
        is_delete = bool(deletes and changes and draw(_small_ints(4)) == 0)
        fields = None if is_delete else canonical_fields(draw(_FIELD_MAPS))
        seq = next_seq[origin]
        next_seq[origin] = seq + 1
        changes.append(
            Change(origin, seq, hlc, collection, key, DELETE if is_delete else PUT, fields, parents)
        )
    return changes


def subsets_of(changes: Sequence[Change]) -> st.SearchStrategy[list[Change]]:
    """Non-empty subsets, in a random order (ancestors may be missing)."""
    return (
        st.lists(st.sampled_from(list(changes)), min_size=1, unique_by=lambda c: c.id)
        .flatmap(st.permutations)
        .map(list)
    )


def _check_state(state: Any, held: Sequence[Change]) -> None:
    assert isinstance(state, RecordState), f"merge returned {type(state).__name__}"
    ids = {c.id for c in held}
    assert set(state.heads) <= ids, "heads must be ids of held changes"
    assert list(state.heads) == sorted(set(state.heads)), "heads must be sorted and unique"
    if state.fields is not None:
        assert type(state.fields) is bytes
        value = unpack_strict(state.fields, "merged fields")
        assert canonical_fields(value) == state.fields, "merged fields must be canonical"


def check_policy(policy: Policy, *, settings: Settings | None = None) -> None:
    """Property-test that ``policy.merge`` depends only on the set of changes.

    Raises ``AssertionError`` (with hypothesis' shrunk counterexample) when two orders
    of one set give different states, when a state names heads that are not held, or
    when its fields are not canonically encoded. ``versions`` (what a clerk chooses
    between) must not depend on the order either.
    """

    @given(st.data())
    def run(data: st.DataObject) -> None:
        history = data.draw(change_dags(), label="history")
        held = data.draw(subsets_of(history), label="held")
        reordered = data.draw(st.permutations(held), label="reordered")
        first = policy.merge(list(held))
        _check_state(first, held)
        again = policy.merge(list(reordered))
        assert again == first, f"{policy!r}: merge depends on the order of its input"
        assert policy.versions(list(reordered)) == policy.versions(list(held)), (
            f"{policy!r}: versions depend on the order of their input"
        )

    # One clear AssertionError rather than a group of distinct failures; and a check of
    # a policy, not of the machine: a slow or busy machine must not fail it.
    run = Settings(
        settings,
        report_multiple_bugs=False,
        suppress_health_check=[
            *(settings or Settings()).suppress_health_check,
            HealthCheck.too_slow,
        ],
    )(run)
    run()
