"""The in-memory transports pass the public conformance check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from offsync import Replica
from offsync.testing import check_transport
from offsync.transports import LoopbackTransport, MemoryTransport, Transport


@contextmanager
def mailbox_pair(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
    yield MemoryTransport.pair(a, b)


@contextmanager
def sealed_mailbox_pair(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
    yield MemoryTransport.pair(a, b, encrypt=True)


@contextmanager
def loopback(a: Replica, b: Replica) -> Iterator[tuple[Transport, Transport | None]]:
    yield LoopbackTransport(b, me=a.id), None


def test_memory_pair_conforms() -> None:
    check_transport(mailbox_pair)


def test_sealed_memory_pair_conforms() -> None:
    check_transport(sealed_mailbox_pair)


def test_loopback_conforms() -> None:
    check_transport(loopback)
