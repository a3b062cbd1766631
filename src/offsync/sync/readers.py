"""Who a site may hand its data to, and which of it: the one rule every round, courier
stop and blob lane applies on the sending side (``offsync.readable``, the rule servers
apply too)."""

from __future__ import annotations

from ..readable import peer_scope
from ..replica import Replica
from ..scope import Scope

__all__ = ["may_receive", "receiver_scope"]


def receiver_scope(replica: Replica, peer: bytes | None) -> Scope:
    """What this replica may hand to ``peer`` now: everything in open mode; in trust
    mode the peer's certified read scope plus ``_trust`` and the reference collections
    (an authority: everything), and nothing for a stranger, an expired, revoked or
    retired key, or an unnamed peer (``offsync.readable.peer_scope``). So no path gives
    personal data to a key no authority certified for it (a stranger's disk, a rogue
    server, a revoked site, a neighbouring district)."""
    return peer_scope(replica, peer)


def may_receive(replica: Replica, peer: bytes | None) -> bool:
    """Whether this replica may hand ``peer`` anything at all (its scope is not empty)."""
    return bool(receiver_scope(replica, peer))
