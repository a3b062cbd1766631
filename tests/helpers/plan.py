"""Values for driving the planners (offsync.plan) without any store."""

from __future__ import annotations

from collections.abc import Sequence

from offsync import Identity
from offsync.change import PUT, Change, ChangeId
from offsync.encoding import canonical_fields
from offsync.limits import DEFAULT_LIMITS
from offsync.plan.admit import Admission
from offsync.plan.apply import ApplyContext
from offsync.scope import Partition
from offsync.segindex import HeldSegment, SegmentIndex, Stream
from offsync.segment import NO_PREVIOUS, Segment
from offsync.status import APPLIED, Status
from offsync.trust import TrustStore

T0 = 1_700_000_000_000  # ms
ME = Identity(bytes([1]) * 32, "me")
SITE = Identity(bytes([2]) * 32, "site")
OTHER = Identity(bytes([3]) * 32, "other")
AUTH = Identity(bytes([9]) * 32, "authority")


def change(
    origin: Identity,
    seq: int,
    key: str = "",
    *,
    ms: int = T0,
    collection: str = "residents",
    parents: tuple[ChangeId, ...] = (),
) -> Change:
    fields = canonical_fields({"n": seq})
    return Change(
        origin.public_key, seq, ms << 16, collection, key or f"k{seq}", PUT, fields, parents
    )


def seal(
    origin: Identity, first: int, count: int, prev: bytes = NO_PREVIOUS, **options: object
) -> Segment:
    changes = [change(origin, first + i, **options) for i in range(count)]  # type: ignore[arg-type]
    return Segment.seal(origin, changes, prev, 3)


def chain(origin: Identity, *counts: int) -> list[Segment]:
    """Consecutive segments of ``origin``, each chained to the one before."""
    out: list[Segment] = []
    first, prev = 1, NO_PREVIOUS
    for n in counts:
        out.append(seal(origin, first, n, prev))
        first, prev = first + n, out[-1].hash
    return out


#: The partition ``change`` writes to by default (the rule's default: one per collection).
RESIDENTS = Partition("residents")


def stream(site: Identity, partition: Partition = RESIDENTS) -> Stream:
    """A site's stream of ``partition`` (by default the one ``change`` writes to)."""
    return Stream(site.public_key, partition)


def entry(seg: Segment, status: Status = APPLIED) -> tuple[Stream, HeldSegment]:
    held = HeldSegment(
        seg.first_seq, seg.last_seq, seg.hash, seg.prev_hash, status, len(seg.encode())
    )
    return seg.stream, held


def index(*segments: Segment, status: Status = APPLIED) -> SegmentIndex:
    return SegmentIndex().updated(add=[entry(s, status) for s in segments])


def rules(trust: TrustStore | None = None, now: int = T0, **validators: object) -> Admission:
    return Admission(trust, validators, DEFAULT_LIMITS, now)  # type: ignore[arg-type]


def context(
    idx: SegmentIndex,
    *,
    seq: int = 0,
    sealed: int = 0,
    trust: TrustStore | None = None,
    now: int = T0,
    held: Sequence[Change] = (),
) -> ApplyContext:
    """What ``plan_segments`` judges against: ``held`` are the changes applied here."""
    by_record: dict[tuple[str, str], list[Change]] = {}
    for c in held:
        by_record.setdefault((c.collection, c.key), []).append(c)
    return ApplyContext(
        None,
        0,
        idx,
        rules(trust, now),
        lambda collection, key: by_record.get((collection, key), []),
        0,
        ME.public_key,
        {stream(ME): (seq, sealed)},
    )


def certified(*sites: Identity, prefixes: tuple[str, ...] = ()) -> TrustStore:
    from offsync.trust import Certificate

    records = [
        (f"cert/{s.public_key.hex()}", Certificate(s.public_key, prefixes=prefixes).to_fields())
        for s in sites
    ]
    return TrustStore.from_records([AUTH.public_key], records)
