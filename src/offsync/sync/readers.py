"""Who a site may hand its data to: the one rule every round, courier stop and blob
lane applies on the sending side (``TrustStore.may_read``, the rule servers apply too)."""

from __future__ import annotations

import time

from ..replica import Replica

__all__ = ["may_receive"]


def may_receive(replica: Replica, peer: bytes | None) -> bool:
    """Whether this replica may hand its data to ``peer``: always in open mode; in trust
    mode only a named peer that may read now (``TrustStore.may_read``), the rule every
    server and courier stop applies, so that no path gives personal data to a key no
    authority certified (a stranger's disk, a rogue server, a revoked site)."""
    trust = replica.trust_store
    if trust is None:
        return True
    return peer is not None and trust.may_read(peer, int(time.time() * 1000))
