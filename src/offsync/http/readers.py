"""Who may pull what from a server: the ``readable`` policies, as read scopes.

Security is the default: a server in trust mode offers a site exactly what its trust
store certifies it may read now (``certified``: the certificate's read scope plus
``_trust`` and the deployment's reference collections; an authority everything;
a stranger, an expired, revoked or retired key nothing, answered ``403``), unless its
operator says otherwise. In open mode there is no certificate to check, so every key
may pull everything (``everything``); open mode is for trials and closed networks
(docs/operations.md, "Who may read").

A finer policy is a function ``readable(site_key) -> Scope``: what that site may read
now (an empty scope is a ``403``). It may narrow ``certified_readers``'s answer, e.g.
``lambda site: certified(site) - Scope.whole("notes")``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

from ..errors import UsageError
from ..readable import peer_scope, read_scope_of
from ..replica import Replica
from ..scope import Scope
from .state import ReadScopes

__all__ = ["READABLE", "Policy", "ReadScopes", "certified_readers", "readers"]

#: The policies that can be said in one word: ``auto`` is ``certified`` in trust mode
#: and ``everything`` in open mode.
READABLE = ("auto", "everything", "certified")

Policy = Literal["auto", "everything", "certified"]


def certified_readers(replica: Replica, reference: Iterable[str] | None = None) -> ReadScopes:
    """``readable`` for ``certified``: what the trust store, now, certifies the site
    may read (``offsync.readable.read_scope_of``), with ``reference`` (default: the
    replica's reference collections) added for every certified site."""
    if isinstance(reference, str):
        raise UsageError("reference is a list of collection names, not one str")
    names = None if reference is None else tuple(reference)

    def readable(site: bytes) -> Scope:
        if replica.trust_store is None:
            return Scope.nothing()
        if names is None:
            return peer_scope(replica, site)
        return _with_reference(replica, site, names)

    return readable


def _with_reference(replica: Replica, site: bytes, reference: tuple[str, ...]) -> Scope:
    trust = replica.trust_store
    assert trust is not None
    return read_scope_of(trust, site, int(time.time() * 1000), reference)


def readers(
    replica: Replica,
    policy: Policy | ReadScopes | None,
    reference: Iterable[str] | None = None,
) -> ReadScopes | None:
    """The ``readable`` function a server applies for ``policy``; ``None`` (the answer
    for ``everything``, and taken as it) serves everything to every key. ``reference``:
    the reference collections every certified site reads (default: the replica's).
    ``UsageError`` for ``certified`` without trust mode or an unknown word."""
    if policy is None or callable(policy):
        return policy
    if policy == "auto":
        return certified_readers(replica, reference) if replica.trust_store is not None else None
    if policy == "everything":
        return None
    if policy == "certified":
        if replica.trust_store is None:
            raise UsageError("readable=certified needs trust mode: this server trusts no authority")
        return certified_readers(replica, reference)
    raise UsageError(f"readable is one of {', '.join(READABLE)} or a function, not {policy!r}")
