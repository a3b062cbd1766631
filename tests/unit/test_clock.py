"""The hybrid logical clock: monotonic on one site, always past what it has seen."""

from __future__ import annotations

import pytest

from offsync.clock import LOGICAL_BITS, MAX_HLC, HybridClock, hlc_millis, make_hlc


class FakeWall:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_layout_is_millis_high_counter_low() -> None:
    assert LOGICAL_BITS == 16
    assert make_hlc(1, 0) == 1 << 16
    assert make_hlc(1_700_000_000_000, 7) == (1_700_000_000_000 << 16) | 7
    assert hlc_millis(make_hlc(1_700_000_000_000, 65535)) == 1_700_000_000_000


def test_now_follows_the_wall_clock() -> None:
    wall = FakeWall(1000)
    clock = HybridClock(wall=wall)
    assert clock.now() == make_hlc(1000)
    wall.now = 2000
    assert clock.now() == make_hlc(2000)


def test_same_millisecond_bumps_the_counter() -> None:
    clock = HybridClock(wall=FakeWall(1000))
    assert [clock.now() for _ in range(3)] == [make_hlc(1000, i) for i in range(3)]


def test_wall_clock_going_backwards_never_moves_time_back() -> None:
    wall = FakeWall(5000)
    clock = HybridClock(wall=wall)
    a = clock.now()
    wall.now = 10  # the site's clock was reset to 1970
    b = clock.now()
    c = clock.now()
    assert a < b < c
    assert hlc_millis(c) == 5000
    wall.now = 6000  # and recovers
    assert clock.now() == make_hlc(6000)


def test_observe_moves_past_remote_timestamps() -> None:
    clock = HybridClock(wall=FakeWall(1000))
    remote = make_hlc(9_000_000, 3)  # a peer whose clock is far ahead
    clock.observe(remote)
    assert clock.now() == remote + 1
    clock.observe(make_hlc(5))  # an old timestamp changes nothing
    assert clock.now() == remote + 2


def test_restarts_from_a_persisted_value() -> None:
    clock = HybridClock(last=make_hlc(7000, 9), wall=FakeWall(10))
    assert clock.now() == make_hlc(7000, 10)


def test_exhausted_clock_raises() -> None:
    clock = HybridClock(last=MAX_HLC, wall=FakeWall(0))
    with pytest.raises(OverflowError):
        clock.now()
