"""Sync drivers: what runs rounds over transports (the ``sync`` layer).

Transports move opaque bundles and know nothing of rounds; the replica applies and
packs. What sits between them is here:

* ``sync(replica, transport)``, ``SyncReport`` — one round over any transport
  (``sync.rounds``);
* ``forward(source, target)``, ``ForwardReport`` — a relay carrying sealed bundles on
  unopened (``sync.relay``).
"""

from __future__ import annotations

from .relay import ForwardReport, forward
from .rounds import SyncReport, sync

__all__ = ["ForwardReport", "SyncReport", "forward", "sync"]
