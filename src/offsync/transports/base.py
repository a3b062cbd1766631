"""The transport interface: how bundles move between a replica and one peer.

A transport knows nothing about merges. ``offsync.sync(replica, transport)`` drives it
through one round, in this order::

    for item in transport.receive(replica.knowledge()):   # what the peer offers us
        bytes   -> replica.apply(item), then transport.acknowledge(item)
                   (on a RemoteDataError: transport.reject(item, reason); never applied)
        Refused -> the transport could not hand over an item intact (a truncated or
                   corrupted file, say); it goes into the round's report
    theirs = transport.knowledge()                         # what the peer holds, if known
    transport.send(replica.iter_pack(theirs | newest receipt of transport.peer,
                                     max_bytes=transport.max_bundle_bytes,
                                     recipient=transport.recipient, always=True))
    if changes were sent: receive and apply once more      # a live peer's fresh receipt
    for r in transport.receipts(): replica.record_receipt(r)   # also if the round failed

Rules every transport keeps (``offsync.testing.check_transport`` checks them):

* ``send`` delivers whole bundles or raises ``TransportError``; a half-delivered bundle
  is never handed to anyone as if whole. Sending the same bytes twice is harmless.
* ``receive`` yields only bundles meant for this replica. An item stays available
  (and may be yielded again in a later round) until it is acknowledged or rejected, so a
  crash between apply and cleanup loses nothing: applying a bundle twice is a no-op.
* ``knowledge`` may be ``None`` (nothing to ask). A mailbox returns what is in transit
  to the peer (sent, not yet picked up, so not sent again) and what the newest receipt
  the peer left says. Never claim more than that: a claim too large means changes are
  never sent, while one too small only costs duplicates, which are harmless.
* ``receipts`` hands over, once each, the peer's receipts the transport learnt outside
  bundles (a live server's answer to an upload or to ``GET /knowledge``); bundles
  carry their own. The default has none.
* A transport is a context manager; ``close`` is idempotent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from ..knowledge import Knowledge
from ..receipt import Receipt

if TYPE_CHECKING:
    from ..lane import BlobPeer
    from .blobbox import BlobBox

__all__ = ["DEFAULT_MAX_BUNDLE", "Refused", "Transport"]

#: Default upper bound for one bundle a transport carries, as it travels.
DEFAULT_MAX_BUNDLE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Refused:
    """An item that was not applied: where it came from and why, in words for a clerk."""

    source: str  # a file name, a bundle id in hex, a URL
    reason: str


class Transport(ABC):
    """One replica's path to one peer (or to a shared medium where peers leave mail)."""

    #: The other side's public key, when known (HTTP learns it from ``knowledge``).
    peer: bytes | None = None
    #: Encrypt outgoing bundles to this key; ``None`` sends them readable by any relay.
    recipient: bytes | None = None
    #: Largest bundle to hand this transport (``offsync.sync`` packs to this size).
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE
    #: A pull answer always carries the peer's fresh receipt covering every origin we
    #: said we hold (HTTP, a loopback): after a pull that brought one, ``offsync.sync``
    #: does not ask ``knowledge()`` again.
    receipt_in_pull: bool = False

    def knowledge(self) -> Knowledge | None:
        """What the peer holds (or has in transit from us), or ``None`` if unknown."""
        return None

    @abstractmethod
    def send(self, bundles: Iterable[bytes]) -> int:
        """Deliver bundles to the peer; returns how many were delivered."""

    @abstractmethod
    def receive(self, knowledge: Knowledge) -> Iterator[bytes | Refused]:
        """Bundles for this replica; ``knowledge`` is what it already holds."""

    def receipts(self) -> list[Receipt]:
        """Receipts learnt outside bundles since the last call, each handed over once.

        ``offsync.sync`` records them in the replica (``Replica.record_receipt``), so
        an upload answered with the peer's receipt counts as delivered at once.
        """
        return []

    def blob_peer(self) -> BlobPeer | None:
        """The other side of the blob lane (``offsync.sync.blobs``), if this transport
        carries blobs; ``None`` (the default) if it does not yet."""
        return None

    def blob_mailbox(self) -> BlobBox | None:
        """The chunk files of a mailbox (a folder, a disk: ``offsync.sync.mailblobs``),
        if this transport is one; ``None`` (the default) if it is not."""
        return None

    def acknowledge(self, bundle: bytes) -> None:  # noqa: B027 - optional hook
        """``bundle`` was applied (or was a duplicate): it may be cleaned up."""

    def reject(self, bundle: bytes, reason: str) -> None:  # noqa: B027 - optional hook
        """``bundle`` was refused: set it aside so it is not offered again."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections or locks; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
