"""Who may pull what from a server: the ``readable`` policies.

Security is the default: a server in trust mode serves data only to sites its trust
store certifies now (``certified``), unless its operator says otherwise. In open mode
there is no certificate to check, so every key may pull everything (``everything``);
open mode is for trials and closed networks (docs/operations.md, "Who may read").
"""

from __future__ import annotations

import time
from typing import Literal

from ..errors import UsageError
from ..replica import Replica
from .state import Readable

__all__ = ["READABLE", "Policy", "certified_readers", "readers"]

#: The policies that can be said in one word: ``auto`` is ``certified`` in trust mode
#: and ``everything`` in open mode.
READABLE = ("auto", "everything", "certified")

Policy = Literal["auto", "everything", "certified"]


def certified_readers(replica: Replica) -> Readable:
    """``readable`` for ``certified``: a site may pull when the trust store, now, holds
    a certificate of its key in force (``TrustStore.may_read``), or it is an authority.
    Everything else is hidden from it, as if it held it already."""

    def readable(site: bytes, origin: bytes) -> bool:
        trust = replica.trust_store
        return trust is not None and trust.may_read(site, int(time.time() * 1000))

    return readable


def readers(replica: Replica, policy: Policy | Readable | None) -> Readable | None:
    """The ``readable`` function a server applies for ``policy``; ``None`` (the answer
    for ``everything``, and taken as it) serves everything. ``UsageError`` for
    ``certified`` without trust mode or an unknown word."""
    if policy is None or callable(policy):
        return policy
    if policy == "auto":
        return certified_readers(replica) if replica.trust_store is not None else None
    if policy == "everything":
        return None
    if policy == "certified":
        if replica.trust_store is None:
            raise UsageError("readable=certified needs trust mode: this server trusts no authority")
        return certified_readers(replica)
    raise UsageError(f"readable is one of {', '.join(READABLE)} or a function, not {policy!r}")
