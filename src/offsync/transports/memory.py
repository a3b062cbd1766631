"""In-process transports, for tests and simulations.

* ``MemoryTransport.pair(a, b)`` — two mailboxes in memory, like a shared folder that
  never fails: what one side sends waits until the other side's next round.
* ``LoopbackTransport(remote)`` — talks to another ``Replica`` object directly, the way
  the HTTP client talks to a server: it asks for the peer's knowledge, and the peer
  applies what is sent and packs what is asked for at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from ..blobs import BlobRef
from ..bundle import peek_header, read_header
from ..errors import BlobError, RemoteDataError, TransportError
from ..identity import Identity, PublicIdentity, key_of
from ..knowledge import Knowledge
from ..readable import peer_scope, readable_blobs
from .base import Refused, Transport

if TYPE_CHECKING:  # the other side of a loopback is a replica object; no import needed
    from ..replica import Replica

__all__ = ["LoopbackTransport", "MemoryTransport", "ReplicaBlobPeer"]


class _Mailbox:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[bytes] = []


class MemoryTransport(Transport):
    """One side of an in-memory mailbox pair; build both with ``pair``."""

    def __init__(
        self,
        me: bytes,
        peer: bytes,
        inbox: _Mailbox,
        outbox: _Mailbox,
        *,
        encrypt: bool = False,
        max_bundle_bytes: int | None = None,
    ) -> None:
        self.me = me
        self.peer = peer
        self.recipient = peer if encrypt else None
        if max_bundle_bytes is not None:
            self.max_bundle_bytes = max_bundle_bytes
        self._inbox = inbox
        self._outbox = outbox

    @classmethod
    def pair(
        cls,
        a: bytes | Identity | PublicIdentity | Replica,
        b: bytes | Identity | PublicIdentity | Replica,
        *,
        encrypt: bool = False,
        max_bundle_bytes: int | None = None,
    ) -> tuple[MemoryTransport, MemoryTransport]:
        """``(a's transport to b, b's transport to a)``."""
        ab, ba = _Mailbox(), _Mailbox()
        ka, kb = key_of(a), key_of(b)
        return (
            cls(ka, kb, inbox=ba, outbox=ab, encrypt=encrypt, max_bundle_bytes=max_bundle_bytes),
            cls(kb, ka, inbox=ab, outbox=ba, encrypt=encrypt, max_bundle_bytes=max_bundle_bytes),
        )

    def knowledge(self) -> Knowledge:
        """What waits in the peer's mailbox from us (in transit), and what the newest
        receipt waiting in ours from the peer says it holds."""
        held = Knowledge()
        with self._outbox.lock:
            outgoing = list(self._outbox.items)
        with self._inbox.lock:
            incoming = list(self._inbox.items)
        for bundle in outgoing:  # ours, in transit: counted, not verified again
            held = held | peek_header(bundle).ranges
        receipts = []
        for bundle in incoming:
            with contextlib.suppress(RemoteDataError):
                receipts.append(read_header(bundle)[0].receipts[0])
        if receipts:
            held = held | max(receipts, key=lambda r: r.created).knowledge
        return held

    def send(self, bundles: Iterable[bytes]) -> int:
        n = 0
        for bundle in bundles:
            with self._outbox.lock:
                if bundle not in self._outbox.items:
                    self._outbox.items.append(bytes(bundle))
            n += 1
        return n

    def receive(self, knowledge: Knowledge) -> Iterator[bytes | Refused]:
        with self._inbox.lock:
            pending = list(self._inbox.items)
        yield from pending

    def _remove(self, bundle: bytes) -> None:
        with self._inbox.lock:
            if bundle in self._inbox.items:
                self._inbox.items.remove(bundle)

    def acknowledge(self, bundle: bytes) -> None:
        self._remove(bundle)

    def reject(self, bundle: bytes, reason: str) -> None:
        self._remove(bundle)


class LoopbackTransport(Transport):
    """A direct line to another replica in this process (a stand-in for HTTP): with
    ``me``, what it receives is packed for ``me`` as a server answers a pull."""

    receipt_in_pull = True

    def __init__(
        self, remote: Replica, *, me: bytes | None = None, max_bundle_bytes: int | None = None
    ) -> None:
        self.remote = remote
        self.peer = remote.id
        self.me = me
        #: The sites ``me`` relays for, as a pull request says (``offsync.sync`` sets it).
        self.relays_for: tuple[bytes, ...] = ()
        if max_bundle_bytes is not None:
            self.max_bundle_bytes = max_bundle_bytes
        self.online = True  # tests switch this off to simulate an outage

    def _check(self) -> None:
        if not self.online:
            raise TransportError("loopback peer is offline")

    def knowledge(self) -> Knowledge:
        self._check()
        return self.remote.knowledge()

    def blob_peer(self) -> ReplicaBlobPeer:
        """The remote replica's blobs, as a server's (it takes only blobs its records
        reference)."""
        self._check()
        return ReplicaBlobPeer(self.remote, reader=self.me)

    def send(self, bundles: Iterable[bytes]) -> int:
        n = 0
        for bundle in bundles:
            self._check()
            try:
                self.remote.apply(bundle)
            except RemoteDataError as exc:
                raise TransportError(f"the peer refused a bundle: {exc}") from exc
            n += 1
        return n

    def receive(self, knowledge: Knowledge) -> Iterator[bytes | Refused]:
        """What the remote packs for ``me``, as a server answers: in trust mode only
        ``me``'s read scope (``offsync.readable.peer_scope``), nothing for a key that may
        read nothing there (or an unnamed ``me``)."""
        self._check()
        scope = peer_scope(self.remote, self.me)
        if not scope:
            return
        yield from self.remote.iter_pack(
            knowledge,
            max_bytes=self.max_bundle_bytes,
            recipient=None,
            always=True,
            receiver=self.me,
            stated=knowledge,
            scope=None if scope.is_everything else scope,
            relays_for=self.relays_for if self.me is not None else None,
        )


class ReplicaBlobPeer:
    """A replica in this process as a lane peer (tests, and in-process relays).

    Like a server, it takes only blobs that its visible records reference and it lacks;
    with ``reader`` (the key asking), it offers only blobs a record in that key's read
    scope refers to, as a server does (``offsync.readable``; open mode: all).
    """

    def __init__(
        self, replica: Replica, chunk_bytes: int | None = None, *, reader: bytes | None = None
    ) -> None:
        self.replica = replica
        self.chunk_bytes = chunk_bytes or replica.limits.blob_chunk_bytes
        self.reader = reader

    def _readable(self, hashes: list[bytes]) -> list[bytes]:
        scope = peer_scope(self.replica, self.reader)
        if scope.is_everything:
            return hashes
        keep = readable_blobs(self.replica, hashes, scope)
        return [h for h in hashes if h in keep]

    def held(self, hashes: list[bytes]) -> dict[bytes, int]:
        return self.replica.held_blobs(self._readable(hashes))

    def put_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        if not self.replica.has_blob(ref) and not self.replica.references_blob(ref):
            raise BlobError(f"blob {ref.hex[:16]}: no record here references it")
        return self.replica.receive_blob_chunk(ref, offset, data)

    def get_chunk(self, ref: BlobRef, offset: int, length: int) -> bytes:
        if not self._readable([ref.hash]):
            raise BlobError(f"blob {ref.hex[:16]}: not readable by this site here")
        return self.replica.read_blob_chunk(ref, offset, length)
