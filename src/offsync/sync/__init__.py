"""Sync drivers: what runs rounds over transports (the ``sync`` layer).

Transports move opaque bundles and know nothing of rounds; the replica applies and
packs. What sits between them is here:

* ``sync(replica, transport)``, ``SyncReport`` — one round over any transport
  (``sync.rounds``);
* ``forward(source, target)``, ``ForwardReport`` — a relay carrying sealed bundles on
  unopened (``sync.relay``);
* ``sync_any(replica, transports)``, ``FailoverReport`` — one round with whichever
  of several centres answers (``sync.failover``);
* ``Peering`` — a centre's rounds with the other centres, on a schedule
  (``sync.peering``);
* ``exchange(replica, mount, peers)``, ``exchange_folder(replica, folder, peers)``,
  ``ExchangeReport``, ``NotWritten`` — a stop at a courier's disk or a shared folder:
  take what is there for this replica, then answer each site due a reply
  (``sync.mailbox``).

The transports are chosen from a location by ``offsync.transports.open_transport``.
"""

from __future__ import annotations

from .failover import FailoverReport, Failure, prefer_last, sync_any
from .mailbox import ExchangeReport, NotWritten, exchange, exchange_folder
from .peering import Peering, PeeringRound
from .relay import ForwardReport, forward
from .rounds import SyncReport, sync

__all__ = [
    "ExchangeReport",
    "FailoverReport",
    "Failure",
    "ForwardReport",
    "NotWritten",
    "Peering",
    "PeeringRound",
    "SyncReport",
    "exchange",
    "exchange_folder",
    "forward",
    "prefer_last",
    "sync",
    "sync_any",
]
