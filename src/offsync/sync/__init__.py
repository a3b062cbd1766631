"""Sync drivers: what runs rounds over transports (the ``sync`` layer).

Transports move opaque bundles and know nothing of rounds; the replica applies and
packs. What sits between them is here:

* ``sync(replica, transport)``, ``SyncReport`` — one round over any transport
  (``sync.rounds``);
* ``forward(source, target)``, ``ForwardReport`` — a relay carrying sealed bundles on
  unopened (``sync.relay``);
* ``exchange(replica, mount, peers)``, ``exchange_folder(replica, folder, peers)``,
  ``ExchangeReport``, ``NotWritten`` — a stop at a courier's disk or a shared folder:
  take what is there for this replica, then answer each site due a reply
  (``sync.mailbox``).

The transports are chosen from a location by ``offsync.transports.open_transport``.
"""

from __future__ import annotations

from .mailbox import ExchangeReport, NotWritten, exchange, exchange_folder
from .relay import ForwardReport, forward
from .rounds import SyncReport, sync

__all__ = [
    "ExchangeReport",
    "ForwardReport",
    "NotWritten",
    "SyncReport",
    "exchange",
    "exchange_folder",
    "forward",
    "sync",
]
