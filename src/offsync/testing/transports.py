"""``check_transport(make_pair)``: does a transport keep the Transport contract?

``make_pair(a, b)`` is a context-manager factory (a ``@contextmanager`` generator, say)
that connects two fresh replicas and yields ``(ta, tb)``: ``ta`` is ``a``'s transport to
``b``; ``tb`` is ``b``'s transport to ``a``, or ``None`` when ``b`` is served passively
(behind an HTTP server, say), so that ``a``'s rounds move data both ways. The check runs
several scenarios, each on fresh replicas in SQLite files, and raises AssertionError
naming the first broken promise:

* rounds converge: both replicas end with equal state, knowledge and receipts;
* a round sends exactly what the peer lacks (nothing, then exactly the new changes);
* a bundle delivered three times is applied once;
* bundles bounded by ``max_bytes`` all arrive;
* a damaged bundle is refused (an error on sending, or a refusal in the receiver's
  report), never applied, not offered again, and does not block later rounds;
* an item received and applied but not acknowledged (a crash) is offered again and is
  then a duplicate (mailbox transports only);
* transports are context managers and ``close`` is idempotent.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from ..errors import OffsyncError
from ..identity import Identity
from ..replica import Replica
from ..sync import SyncReport, sync
from ..transports.base import Transport

__all__ = ["check_transport"]

Pair = tuple[Transport, Transport | None]
MakePair = Callable[[Replica, Replica], AbstractContextManager[Pair]]
MAX_ROUNDS = 6


@contextmanager
def _replicas() -> Iterator[tuple[Replica, Replica]]:
    with tempfile.TemporaryDirectory(prefix="offsync-check-") as tmp:
        a = Replica.open(str(Path(tmp) / "a.sqlite"), identity=Identity.generate("check-a"))
        b = Replica.open(str(Path(tmp) / "b.sqlite"), identity=Identity.generate("check-b"))
        try:
            yield a, b
        finally:
            a.close()
            b.close()


def _round(a: Replica, b: Replica, ta: Transport, tb: Transport | None) -> list[SyncReport]:
    reports = [sync(a, ta)]
    if tb is not None:
        reports.append(sync(b, tb))
    return reports


def _settled(a: Replica, b: Replica) -> bool:
    ra, rb = a.peer_knowledge(b.id).get(b.id), b.peer_knowledge(a.id).get(a.id)
    return (
        a.state_digest() == b.state_digest()
        and a.knowledge() == b.knowledge()
        and ra is not None
        and rb is not None
        and a.knowledge() <= ra
        and b.knowledge() <= rb
    )


def _settle(a: Replica, b: Replica, ta: Transport, tb: Transport | None, what: str) -> None:
    for _ in range(MAX_ROUNDS):
        _round(a, b, ta, tb)
        if _settled(a, b):
            return
    raise AssertionError(
        f"{what}: replicas did not converge (state, knowledge and receipts) "
        f"within {MAX_ROUNDS} rounds"
    )


def _write(r: Replica, prefix: str, n: int, size: int = 20) -> None:
    with r.batch():
        for i in range(n):
            pad = hashlib.shake_128(f"{prefix}{i}".encode()).hexdigest(size // 2)
            r.put("check", f"{prefix}{i:05d}", {"n": i, "pad": pad})
    r.pack(r.knowledge())  # seals the new changes into a segment; sends nothing


def _converges(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        _write(a, "a", 40)
        _write(b, "b", 25)
        a.put("check", "shared", {"by": "a"})
        b.put("check", "shared", {"by": "b"})
        _settle(a, b, ta, tb, "two replicas writing")
        assert a.get("check", "shared") == b.get("check", "shared")


def _exactly_what_lacks(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        _write(a, "a", 30)
        _settle(a, b, ta, tb, "initial delivery")
        for report in _round(a, b, ta, tb):
            assert report.sent_changes == 0, f"a settled round re-sent {report.sent_changes}"
            assert report.applied == 0
            assert report.sent_bundles <= 1, "a settled round has at most a receipt to say"
        for report in _round(a, b, ta, tb):
            assert report.sent_bundles == 0, "an idle round, with nothing new to say, sent"
        _write(a, "new", 3)
        report = sync(a, ta)
        assert report.sent_changes == 3, f"sent {report.sent_changes} changes for 3 new ones"
        _settle(a, b, ta, tb, "three new changes")


def _three_times(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        _write(a, "a", 10)
        bundles = a.pack(None, recipient=ta.recipient)
        for _ in range(3):
            assert ta.send(bundles) == len(bundles)
        if tb is not None:
            report = sync(b, tb)
            assert report.applied == 10, f"applied {report.applied} of 10 changes"
            assert report.duplicates in (0, 10, 20), report.duplicates
            again = sync(b, tb)
            assert again.applied == 0
        assert b.state_digest() == a.state_digest(), "the bundle did not arrive intact"
        assert b.knowledge().restrict_origins([a.id]).count() == 10


def _bounded(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        for batch in range(8):  # eight segments of about 15 KiB
            _write(a, f"a{batch}-", 50, size=300)
        report = sync(a, ta, max_bytes=24 * 1024)
        assert report.sent_bundles > 2, "a 24 KiB bound should split this delivery"
        assert report.sent_changes == 400
        _settle(a, b, ta, tb, "bounded bundles")


def _damaged(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        _write(a, "a", 5)
        good = a.pack(None, recipient=ta.recipient)[0]
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x40
        before = b.state_digest()
        try:
            ta.send([bytes(bad)])
        except OffsyncError:
            pass  # refused at the door: fine
        else:
            if tb is not None:
                report = sync(b, tb, push=False)
                assert report.refused, "a damaged bundle was neither refused on send nor on receipt"
                assert sync(b, tb, push=False).refused == [], "a refused bundle was offered again"
        assert b.state_digest() == before, "a damaged bundle changed the receiver's state"
        _settle(a, b, ta, tb, "after a damaged bundle")


def _crash_before_cleanup(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        if tb is None:
            return
        _write(a, "a", 8)
        sync(a, ta)
        for item in tb.receive(b.knowledge()):
            if isinstance(item, bytes):
                b.apply(item)  # ... and the process dies before acknowledging
        assert b.knowledge().restrict_origins([a.id]).count() == 8
        report = sync(b, tb)
        assert report.applied == 0, "an applied bundle was applied again"
        assert report.received, "an unacknowledged bundle was not offered again"
        _settle(a, b, ta, tb, "after a crash between apply and cleanup")


def _context_manager(make_pair: MakePair) -> None:
    with _replicas() as (a, b), make_pair(a, b) as (ta, tb):
        for t in (ta, tb):
            if t is None:
                continue
            with t as entered:
                assert entered is t
            t.close()  # idempotent


SCENARIOS: list[Callable[[MakePair], None]] = [
    _converges,
    _exactly_what_lacks,
    _three_times,
    _bounded,
    _damaged,
    _crash_before_cleanup,
    _context_manager,
]


def check_transport(make_pair: MakePair) -> None:
    """Run every scenario against transports made by ``make_pair``."""
    for scenario in SCENARIOS:
        try:
            scenario(make_pair)
        except AssertionError as exc:
            raise AssertionError(f"check_transport {scenario.__name__[1:]}: {exc}") from exc
