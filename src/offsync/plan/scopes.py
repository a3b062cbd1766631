"""Scopes (docs/design.md, "Scopes"): what a replica holds, and what changing its scope takes.

A replica opened with a scope holds nothing outside it (docs/spec.md §4, §11). Its
**held scope** is the scope it was given plus ``_trust`` and the deployment's
reference collections, which every replica holds. These functions decide, from plain
values, what a scope change means: which held partitions leave, and whether own
changes there would be lost by dropping them (the shrink is then refused). This
module is sans-IO.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import UsageError
from ..scope import TRUST_COLLECTION, Partition, PartitionRule, Scope, Stream

__all__ = ["held_scope", "leaving", "unconfirmed", "within"]


def held_scope(scope: Scope | None, reference: Iterable[str], rule: PartitionRule) -> Scope:
    """What a replica opened with ``scope`` (None: everything) holds: the scope, plus
    ``_trust`` and the ``reference`` collections. ``UsageError`` for a prefix longer
    than ``rule``'s L (a site cannot hold part of a partition) or a reference
    collection cut into partitions (reference data is held whole, by every site)."""
    if scope is None:
        scope = Scope.everything()
    if not isinstance(scope, Scope):
        raise UsageError("scope is an offsync.Scope")
    names = [reference] if isinstance(reference, str) else list(reference)
    for name in names:
        if type(name) is not str:
            raise UsageError("reference is a list of collection names")
        if rule.length(name):
            raise UsageError(
                f"reference collection {name!r} has partitions under the rule: reference"
                " data is one partition (L = 0), held whole by every site"
            )
    return scope.including(TRUST_COLLECTION, *names).validate(rule)


def leaving(held: Iterable[Partition], new: Scope) -> list[Partition]:
    """The partitions among ``held`` (what a replica holds anything of) that are not in
    ``new``: what a shrink removes from the store, sorted."""
    return sorted({p for p in held if not new.holds(p.collection, p.prefix)})


def unconfirmed(own: Mapping[Stream, tuple[int, int, int]], new: Scope) -> list[Stream]:
    """The own streams outside ``new`` with changes no peer whose word counts is known
    to hold (per stream ``(seq, sealed, claim)``: seq above the counted claim). Dropping
    them would lose this site's own work, so such a shrink is refused until a sync has
    delivered them (``Replica.set_scope``)."""
    return sorted(
        s
        for s, (seq, _, claim) in own.items()
        if seq > claim and not new.holds(s.collection, s.prefix)
    )


def within(scope: Scope, streams: Iterable[Stream]) -> tuple[list[Stream], list[Stream]]:
    """``streams`` split into those in ``scope`` and those outside it."""
    inside: list[Stream] = []
    outside: list[Stream] = []
    for s in streams:
        (inside if scope.holds(s.collection, s.prefix) else outside).append(s)
    return inside, outside
