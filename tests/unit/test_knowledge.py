"""Stream-keyed knowledge (format 3 §7) against a model: a set of seqs per stream."""

from __future__ import annotations

import pytest

from offsync.encoding import packb
from offsync.errors import BundleFormatError, LimitExceededError, UsageError
from offsync.knowledge import Knowledge
from offsync.limits import Limits
from offsync.scope import Partition, Stream
from offsync.unpack import Budget
from tests.helpers.v3_strategies import ORIGINS


def test_values_validate_themselves() -> None:
    s = Stream(ORIGINS[0], Partition("residents", "35"))
    assert Knowledge({s: [(3, 5), (1, 2), (9, 9)]}).get(s) == ((1, 5), (9, 9))
    assert not Knowledge({s: []})
    for bad in (
        {s: [(0, 1)]},
        {s: [(2, 1)]},
        {s: [(1, 1 << 63)]},
        {s: [1]},
        {("o", "p"): [(1, 1)]},
    ):
        with pytest.raises(UsageError):
            Knowledge(bad)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        Knowledge()._streams = {}
    with pytest.raises(TypeError):
        hash(Knowledge())


def test_decoding_is_bounded() -> None:
    o = ORIGINS[0]
    many_streams = [[o, [["residents", f"{i:04d}", [1, 1]] for i in range(50)]]]
    with pytest.raises(LimitExceededError, match="streams"):
        Knowledge.from_wire(many_streams, Limits(max_streams=49))
    Knowledge.from_wire(many_streams, Limits(max_streams=50))
    with pytest.raises(LimitExceededError, match="origins"):
        Knowledge.from_wire(
            [[bytes([i]) * 32, [["c", "", [1, 1]]]] for i in range(1, 4)], Limits(max_origins=2)
        )
    with pytest.raises(LimitExceededError, match="intervals"):
        Knowledge.from_wire([[o, [["c", "", [1, 1, 3, 3, 5, 5]]]]], Limits(max_intervals=2))
    with pytest.raises(LimitExceededError, match="max_decode_bytes"):
        Knowledge.from_wire(many_streams, budget=Budget(50 * 256, "test"))
    with pytest.raises(LimitExceededError):
        Knowledge.from_bytes(packb(many_streams), Limits(max_header_bytes=100))
    with pytest.raises(LimitExceededError):
        Knowledge.from_wire([[o, [["c" * 65, "", [1, 1]]]]])
    with pytest.raises(BundleFormatError):
        Knowledge.from_wire([[o, [["c", 5, [1, 1]]]]])


def test_set_operations_share_what_they_do_not_change() -> None:
    """A centre's 300 000 streams: an origin the other side does not name is kept as
    it is (no copy), one it names with the same intervals is dropped without a walk."""
    big = Knowledge(
        {
            Stream(o, Partition("residents", f"{i:06d}")): [(1, 9)]
            for o in ORIGINS
            for i in range(300)
        }
    )
    assert not big - big
    small = big.restrict_origins(ORIGINS[:1])
    rest = big - small
    assert rest._streams[ORIGINS[1]] is big._streams[ORIGINS[1]]
    assert rest | small == big
