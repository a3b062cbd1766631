"""Who may read what: the one rule servers, relays and disk exports apply before handing
data to a site (docs/design.md, "Who may read what"; docs/spec.md §4, §13.3).

Open mode (no trust store): anyone may read everything, as anyone may write. Trust mode:
an authority reads everything; a site whose certificate is in force reads its
certificate's read scope (``read``, else what it may write) plus ``_trust`` (it must
learn the certificates and revocations it decides by) plus the deployment's reference
collections (vaccine lots: every site needs them); any other key (a stranger, an expired,
revoked or retired one) reads nothing at all, not even ``_trust``.

``read_scope_of`` is a pure function of its arguments (the clock is a parameter), so
every server, relay and export decides alike. ``peer_scope`` applies it with a replica's
trust store, reference collections and clock; ``blobs_in_scope`` and
``readable_blobs`` say which blobs follow the records of a scope (a blob is offered only
if a visible record in the reader's scope refers to it).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING

from .blobs import BlobRef
from .errors import UsageError
from .scope import TRUST_COLLECTION, Scope
from .trust import TrustStore

if TYPE_CHECKING:
    from .replica import Replica

__all__ = ["blobs_in_scope", "peer_scope", "read_scope_of", "readable_blobs"]

#: Blob references asked about at once (one indexed query of the store each).
_BLOB_BATCH = 512


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


def peer_scope(replica: Replica, peer: bytes | None, now_ms: int | None = None) -> Scope:
    """What ``replica`` may hand to ``peer`` now: ``read_scope_of`` with the replica's
    trust store and reference collections. Open mode: everything, named peer or not;
    trust mode: nothing for an unnamed peer (a mailbox nobody addressed)."""
    trust = replica.trust_store
    if trust is None:
        return Scope.everything()
    if peer is None:
        return Scope.nothing()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return read_scope_of(trust, peer, now, replica.reference)


def readable_blobs(replica: Replica, hashes: Iterable[bytes], scope: Scope) -> set[bytes]:
    """Of ``hashes``, those a visible record in ``scope`` refers to (one indexed query):
    the blobs a reader of ``scope`` may be given."""
    wanted = list(dict.fromkeys(hashes))
    if not wanted:
        return set()
    if scope.is_everything:
        return set(replica.blob_entries(wanted))
    return {
        ref.hash
        for collection, key, ref in replica.blob_records(wanted)
        if scope.holds(collection, key)
    }


def blobs_in_scope(
    replica: Replica, refs: Iterable[BlobRef], scope: Scope, batch: int = _BLOB_BATCH
) -> Iterator[BlobRef]:
    """``refs`` (in their order) that a visible record in ``scope`` refers to, asked of
    the store ``batch`` at a time: what a lane may offer a reader of ``scope``."""
    if scope.is_everything:
        yield from refs
        return
    it = iter(refs)
    while chunk := list(islice(it, batch)):
        keep = readable_blobs(replica, (r.hash for r in chunk), scope)
        yield from (r for r in chunk if r.hash in keep)
