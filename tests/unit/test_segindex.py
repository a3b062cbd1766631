"""The segment index is a value: updating it makes a new one and leaves the old as it was."""

from __future__ import annotations

import pytest

from offsync.errors import StorageError
from offsync.segindex import SegmentIndex
from offsync.status import APPLIED, CLOCK_AHEAD
from tests.helpers.plan import OTHER, SITE, chain, entry, index, seal


def test_updates_make_a_new_index_and_share_what_they_do_not_touch() -> None:
    a, b, c = chain(SITE, 2, 2, 2)
    other = seal(OTHER, 1, 1)
    old = index(a, c, other)
    new = old.updated(add=[entry(b)])
    assert [s.first for s in old[SITE.public_key]] == [1, 5]
    assert [s.first for s in new[SITE.public_key]] == [1, 3, 5]
    assert new[OTHER.public_key] is old[OTHER.public_key]  # untouched streams are shared
    assert old.updated(add=[entry(b)]) is not old
    assert new.updated(add=[entry(b)]) is new  # nothing changes: the same index


def test_an_entry_at_a_held_position_replaces_it_and_drops_forget_ranges() -> None:
    a, b = chain(SITE, 2, 2)
    idx = index(a, b)
    restated = idx.updated(add=[entry(b, CLOCK_AHEAD)])
    assert restated.find(SITE.public_key, 3).status is CLOCK_AHEAD  # type: ignore[union-attr]
    assert idx.find(SITE.public_key, 3).status is APPLIED  # type: ignore[union-attr]
    assert [s.first for s in idx.updated(drop=[(SITE.public_key, 2, 9)])[SITE.public_key]] == [1]
    emptied = idx.updated(drop=[(SITE.public_key, 1, 9)])
    assert SITE.public_key not in emptied and len(emptied) == 0 and emptied.intervals() == {}


def test_store_rows_come_in_with_their_status_text() -> None:
    (a,) = chain(SITE, 2)
    row = (a.origin, 1, 2, a.hash, a.prev_hash, "clock: timestamp too far in the future", 10)
    idx = SegmentIndex.from_rows([row])
    assert idx[SITE.public_key][0].status == CLOCK_AHEAD
    assert idx.updated(rows=[row]) is idx
    with pytest.raises(StorageError):
        SegmentIndex.from_rows([(*row[:5], "lost: who knows", 10)])


def test_held_back_lists_what_is_not_applied_by_stream() -> None:
    (a,) = chain(SITE, 2)
    held = seal(OTHER, 1, 1)
    idx = index(a).updated(add=[entry(held, CLOCK_AHEAD)])
    assert [(o, s.first) for o, s in idx.held_back()] == [(OTHER.public_key, 1)]
