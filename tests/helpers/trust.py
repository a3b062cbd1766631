"""The trust tests' cast and clock: an authority, sites certified for a region each,
a stranger, and replicas on a wall clock the test moves (tests/unit/test_trust.py and
tests/integration/test_reopening.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from offsync import Identity, Replica
from offsync.trust import issue_certificate

T0 = 1_700_000_000_000  # ms; every writer's clock starts here
DAY = 86_400_000


class Wall:
    """An injectable wall clock that tests move by hand."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def ident(n: int, label: str = "") -> Identity:
    return Identity(bytes([n]) * 32, label or f"site{n}")


AUTH = ident(1, "authority")
SARADAN = ident(2, "saradan")  # region 3519
KARE = ident(3, "kare")  # region 3520
STRANGER = ident(4, "stranger")


def replica(
    identity: Identity,
    *,
    trust: bool = True,
    wall: Callable[[], int] | None = None,
    path: str = ":memory:",
    **options: Any,
) -> Replica:
    return Replica.open(
        path,
        identity=identity,
        trust=[AUTH.public_key] if trust else None,
        wall=wall or Wall(T0 + 30 * DAY),
        **options,
    )


def send(src: Replica, dst: Replica) -> int:
    applied = 0
    for bundle in src.pack(dst.knowledge()):
        report = dst.apply(bundle)
        applied += report.applied + report.unlocked
    return applied


def reasons(rep: Replica) -> list[str]:
    return [q.reason for q in rep.quarantined_changes()]


def certifying_authority() -> Replica:
    """The authority's replica, having certified SARADAN (3519) and KARE (3520) to
    write residents in their region."""
    rep = replica(AUTH)
    issue_certificate(
        rep, SARADAN, label="kec-saradan", collections=["residents"], prefixes=["3519"]
    )
    issue_certificate(rep, KARE, label="kec-kare", collections=["residents"], prefixes=["3520"])
    return rep
