"""Who may read what: the one rule servers, relays and disk exports apply before handing
data to a site (docs/design.md, "Who may read what"; docs/spec-v3.md §4, §13.3).

Open mode (no trust store): anyone may read everything, as anyone may write. Trust mode:
an authority reads everything; a site whose certificate is in force reads its
certificate's read scope (``read``, else what it may write) plus ``_trust`` (it must
learn the certificates and revocations it decides by) plus the deployment's reference
collections (vaccine lots: every site needs them); any other key (a stranger, an expired,
revoked or retired one) reads nothing at all, not even ``_trust``.

A pure function of its arguments (the clock is a parameter), so every server, relay and
export decides alike; this module is sans-IO.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import UsageError
from .scope import TRUST_COLLECTION, Scope
from .trust import TrustStore

__all__ = ["read_scope_of"]


def read_scope_of(
    trust: TrustStore | None, site: bytes, now_ms: int, reference: Iterable[str] = ()
) -> Scope:
    """What ``site`` may be given at ``now_ms`` (ms since the epoch).

    ``trust`` None is open mode: everything. ``reference`` names the deployment's
    reference collections, which every certified site reads whole.
    """
    if isinstance(reference, str):  # one name would become its letters
        raise UsageError("reference is a list of collection names, not one str")
    extra = Scope.whole(TRUST_COLLECTION, *reference)
    if trust is None:
        return Scope.everything()
    if site in trust.authorities:
        return Scope.everything()
    if not trust.may_read(site, now_ms):
        return Scope.nothing()
    return trust.read_scope(site, now_ms) | extra
