"""Clock sanity: wrong site clocks cannot take over the merge.

* A change stamped more than ``Limits.max_clock_skew_ms`` ahead of the receiver's wall
  clock is quarantined ("clock: ..."), not applied and not observed by the receiver's
  clock, so it cannot drag anyone's clock into the future. It is re-examined when the
  receiver's wall clock has caught up (at the next apply, or ``reexamine()``).
* A change within the bound is applied and observed, so every write made after seeing
  it carries a greater HLC and wins: a fast clock wins only against writes that did not
  see it, and by at most the skew bound.
"""

from __future__ import annotations

from offsync import Identity, Limits, Replica

T0 = 1_700_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR
YEAR = 365 * DAY


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def site(n: int, wall: Wall, **options: object) -> Replica:
    return Replica.open(":memory:", identity=Identity(bytes([n]) * 32), wall=wall, **options)  # type: ignore[arg-type]


def send(src: Replica, dst: Replica) -> int:
    n = 0
    for bundle in src.pack(dst.knowledge()):
        report = dst.apply(bundle)
        n += report.applied + report.unlocked
    return n


def test_far_future_changes_wait_in_quarantine_and_do_not_move_clocks() -> None:
    centre_wall = Wall(T0)
    centre = site(9, centre_wall)
    broken = site(2, Wall(T0 + 10 * YEAR))  # a CMOS battery gave up
    broken.put("residents", "3519000000000001", {"name": "from the future"})
    clock_before = centre.clock.last
    send(broken, centre)
    assert centre.get("residents", "3519000000000001") is None
    assert [q.reason for q in centre.quarantined()] == ["clock: timestamp too far in the future"]
    assert centre.clock.last == clock_before  # not dragged ten years ahead
    # Later writes at the centre are stamped with the centre's own time.
    centre.put("residents", "3519000000000001", {"name": "written at the centre"})
    assert centre.clock.last >> 16 == T0
    # Nothing happens until time has caught up; then the change is re-examined.
    centre_wall.ms = T0 + 5 * YEAR
    assert centre.reexamine() == 0
    centre_wall.ms = T0 + 10 * YEAR
    assert centre.reexamine() == 1
    assert centre.quarantined() == []
    assert centre.get("residents", "3519000000000001") == {"name": "from the future"}


def test_time_catching_up_is_noticed_at_the_next_apply() -> None:
    centre_wall = Wall(T0)
    centre = site(9, centre_wall)
    ahead = site(2, Wall(T0 + 3 * DAY))
    ahead.put("residents", "3519000000000001", {"v": 1})
    send(ahead, centre)
    assert centre.get("residents", "3519000000000001") is None
    centre_wall.ms = T0 + 2 * DAY + 1
    other = site(3, Wall(T0 + 2 * DAY))
    other.put("residents", "3519000000000002", {"v": 2})
    assert send(other, centre) == 2  # its own change, and the one time has unlocked
    assert centre.get("residents", "3519000000000001") == {"v": 1}


def test_a_fast_clock_does_not_win_every_future_conflict() -> None:
    wall = Wall(T0)
    centre = site(9, wall)
    fast = site(2, Wall(T0 + 20 * HOUR))  # inside the 24 h bound: applied
    slow = site(3, Wall(T0))
    fast.put("residents", "3519000000000001", {"village": "fast"})
    send(fast, centre)
    assert centre.get("residents", "3519000000000001") == {"village": "fast"}
    # A concurrent write that did not see it loses (the bounded advantage) ...
    slow.put("residents", "3519000000000001", {"village": "slow, concurrent"})
    send(slow, centre)
    assert centre.get("residents", "3519000000000001") == {"village": "fast"}
    # ... but any write made after seeing it wins, whatever the writer's wall clock says.
    send(centre, slow)
    slow.put("residents", "3519000000000001", {"village": "slow, later"})
    send(slow, centre)
    assert centre.get("residents", "3519000000000001") == {"village": "slow, later"}
    third = site(4, Wall(T0))
    send(fast, third)
    send(slow, third)
    assert third.state_digest() == centre.state_digest()


def test_a_clock_years_ahead_never_wins_while_it_is_wrong() -> None:
    wall = Wall(T0)
    centre = site(9, wall)
    honest = site(3, Wall(T0))
    broken = site(2, Wall(T0 + 10 * YEAR))
    broken.put("residents", "3519000000000001", {"village": "broken clock"})
    honest.put("residents", "3519000000000001", {"village": "honest"})
    send(broken, centre)
    send(honest, centre)
    assert centre.get("residents", "3519000000000001") == {"village": "honest"}
    # A relay passes the held change on; the next replica holds it back too.
    district = site(5, Wall(T0))
    send(centre, district)
    assert district.get("residents", "3519000000000001") == {"village": "honest"}
    assert [q.reason for q in district.quarantined()] == ["clock: timestamp too far in the future"]


def test_the_skew_bound_is_a_limit() -> None:
    centre = site(9, Wall(T0), limits=Limits(max_clock_skew_ms=HOUR))
    ahead = site(2, Wall(T0 + 2 * HOUR))
    ahead.put("residents", "3519000000000001", {"v": 1})
    send(ahead, centre)
    assert [q.reason for q in centre.quarantined()] == ["clock: timestamp too far in the future"]
