"""What to merge: which changes take the bulk path, and which records are recomputed.

A record's state is a function of the set of its changes (``offsync.policies``). The
hot path of applying a backlog: a record that receives one parentless change under a
policy for which that change alone is the state is written as is, in one bulk insert,
with no policy call and no read (``Store.add_first_changes``). When a whole chunk is
such changes (a backlog of new records) that is decided with a few C-level passes over
the chunk, not a Python loop per change. This module is sans-IO.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from ..change import ERASE, Change, ChangeId
from ..policies import Policy, RecordState
from ..schemas import Schemas
from . import erasure

__all__ = ["MergeSplit", "Record", "recompute", "split", "to_recompute"]

#: (collection, key)
Record = tuple[str, str]
_COLLECTION = operator.itemgetter(3)  # of a Change
_RECORD = operator.itemgetter(3, 4)
_PARENTS = operator.itemgetter(7)
_OP = operator.itemgetter(5)
_FIELDS = operator.itemgetter(6)


class MergeSplit(NamedTuple):
    """A chunk of changes to apply, split by how they are stored (a tuple: one per
    write on the local write path)."""

    firsts: Sequence[Change]  # each alone, its record's state: bulk-inserted as is
    rest: Sequence[Change]  # stored plainly, then their records recomputed
    to_merge: Sequence[Record]  # the records of ``rest``, in order of first appearance
    order: Iterable[Record]  # every record of the chunk, in order of first appearance


def split(
    changes: Sequence[Change], policy: Callable[[str], Policy], schemas: Schemas | None = None
) -> MergeSplit:
    """Split ``changes``; ``policy``: each collection's merge policy. A change takes the
    bulk path only if it alone is its record's state as written
    (``erasure.alone_is_state``: no erase order, stub or put of an older schema)."""
    simple_of = {
        name: policy(name).single_change_is_identity for name in set(map(_COLLECTION, changes))
    }
    keys = list(map(_RECORD, changes))
    lone = _not_alone(changes, schemas)
    if (
        all(simple_of.values())
        and not lone
        and len(set(keys)) == len(keys)
        and not any(map(_PARENTS, changes))
    ):
        return MergeSplit(changes, (), (), keys)
    groups: dict[Record, list[Change]] = {}
    for k, c in zip(keys, changes, strict=True):
        group = groups.get(k)
        if group is None:
            groups[k] = [c]
        else:
            group.append(c)
    firsts, rest, to_merge = [], [], []
    for k, group in groups.items():
        first = group[0]
        if (
            len(group) == 1
            and not first.parents
            and simple_of[first.collection]
            and first.id not in lone
        ):
            firsts.append(first)
        else:
            rest.extend(group)
            to_merge.append(k)
    return MergeSplit(firsts, rest, to_merge, groups)


def _not_alone(changes: Sequence[Change], schemas: Schemas | None) -> set[ChangeId]:
    """The changes that alone are not their record's state (``erasure.alone_is_state``);
    asked of each change only when the chunk holds an erase order, a change without
    fields (a stub, or a delete) or schema versions are registered: C-level passes
    otherwise."""
    if (
        ERASE not in set(map(_OP, changes))
        and not list(map(_FIELDS, changes)).count(None)
        and (schemas is None or not any(True for _ in schemas))
    ):
        return set()
    return {c.id for c in changes if not erasure.alone_is_state(c, schemas)}


def to_recompute(plan: MergeSplit, existed: Iterable[Record]) -> list[Record]:
    """The records to recompute, once the store said which bulk-path records existed
    after all (those are merged too, in the chunk's order: conflicts are reported in
    it)."""
    found = set(existed)
    if not found:
        return list(plan.to_merge)
    found.update(plan.to_merge)
    return [k for k in dict.fromkeys(plan.order) if k in found]


def recompute(
    keys: Iterable[Record],
    held: Mapping[Record, Sequence[Change]],
    policy: Callable[[str], Policy],
    schemas: Schemas | None = None,
) -> list[tuple[str, str, RecordState | None]]:
    """Each record's state from every change held of it (``erasure.merge``: erased
    records have no fields, older puts are read upcast); None: no change is held (its
    changes were taken back), so the record is cleared. Every held change is applied,
    so admitted: erase orders among them erase."""
    out: list[tuple[str, str, RecordState | None]] = []
    for collection, key in keys:
        changes = held.get((collection, key))
        state = erasure.merge(changes, policy(collection), _ADMITTED, schemas) if changes else None
        out.append((collection, key, state))
    return out


def _admitted(change: Change) -> bool:
    return True


_ADMITTED = _admitted
