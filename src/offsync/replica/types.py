"""What the replica's methods return (public: ``offsync.ApplyReport`` and the rest)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..change import ChangeId
from ..knowledge import Knowledge
from ..scope import Stream

__all__ = ["APPLIED", "ApplyReport", "Conflict", "Quarantined", "QuarantinedChange", "SeqClaim"]

#: The status text of an applied segment (``offsync.status.APPLIED`` as a string).
APPLIED = "applied"


@dataclass(slots=True)
class ApplyReport:
    """What applying one bundle did."""

    bundle_id: bytes
    sender: bytes
    applied: int = 0  # changes newly applied
    duplicates: int = 0  # changes already held
    quarantined: int = 0  # changes held but not applied (see Replica.quarantined)
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    receipts: int = 0  # receipts that told us something new
    unlocked: int = 0  # held changes applied because this bundle changed trust (or time passed)
    #: changes of partitions outside this replica's scope: not kept, not counted as held
    out_of_scope: int = 0
    #: What the bundle carried (its header's ranges): an answer's receipt covers them.
    ranges: Knowledge = field(default_factory=Knowledge)


@dataclass(frozen=True, slots=True)
class Conflict:
    """An open conflict: concurrent versions of one record that differ."""

    collection: str
    key: str
    current: dict[str, Any] | None  # the provisional winner, what get() shows
    versions: Mapping[ChangeId, dict[str, Any] | None]  # head -> version (None: deleted)


class Quarantined(NamedTuple):
    origin: bytes
    first_seq: int
    last_seq: int
    reason: str


class QuarantinedChange(NamedTuple):
    """One held change that is not applied, and why (see ``offsync.trust.refusal``)."""

    id: ChangeId
    collection: str
    key: str
    reason: str


class SeqClaim(NamedTuple):
    """What one peer's newest receipt says it holds of this site's own changes.

    ``counted``: whether the claim stops this site from writing above its seq (see
    ``Replica.seq_claims``); in trust mode only certified, unrevoked sites' and
    authorities' claims count.
    """

    peer: bytes
    seq: int  # the highest own seq of ``stream`` the peer claims to hold
    counted: bool
    stream: Stream | None = None  # the own stream claimed (one claim per stream)
