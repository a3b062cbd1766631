"""Receipts bounded by their receiver (issue 18; format 3 by origin, a first cut). Sans-IO.

A receipt is a signed true statement "the signer holds at least this". Nothing in
format 2 says it lists everything, so a sender may sign one restricted to the origins
its receiver needs, and a reader unions what the receipts of one signer say (knowledge
only grows) instead of letting a newer, narrower receipt replace an older one; except
the signer's own word to it, the first receipt of a bundle the signer sent, which names
every origin it holds that it knows the reader needs and so is taken as it is
(``heard_union``: a restored signer's loss shows; docs/spec.md §8.1, docs/design.md
"Receipts and knowledge at scale").

What a receiver needs (``needs``) is: its own origin and the sender's; every origin it
said it holds (the knowledge of its signed pull request, the union of its receipts the
sender heard); and every origin a bundle carries. That is exactly the set of origins
for which it can use the sender's statement: to plan what to send back (it only ever
sends what it holds), to tell whether its own changes arrived, and to pass it on to the
sites behind it (whose origins it holds, since it relays their changes).

Receipts passed on (``HeardReceipts.candidates``) are those that say something about
an origin the receiver needs other than the signer's own (a site's word that it holds
its own changes tells nobody else anything), the receiver's own receipt last; those
stating the receiver's own changes first, highest seq first, then those stating most of
the origins it needs (a centre's, a relay's), so that the receipts that matter for
delivery and for restore safety travel before the byte budget runs out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import msgpack

from ..encoding import packb
from ..knowledge import Knowledge
from ..limits import DEFAULT_LIMITS
from ..receipt import Receipt
from ..scope import Scope, Stream
from ..segment import hash32

__all__ = [
    "FORWARD_BYTES",
    "HEADER_SLACK",
    "OTHERS_BYTES",
    "HeardReceipts",
    "SUBJECT_ISSUERS",
    "Subject",
    "forward_budget",
    "heard_union",
    "kept_knowledge",
    "kept_subjects",
    "needs",
    "outside",
    "passed_on",
    "relays_closure",
    "restricted",
    "stated_bytes",
    "subject_digests",
    "subject_of",
    "take_subject",
    "told_digest",
]

#: What a store kept was checked when it was kept: read back without the wire's bounds.
_KEPT = replace(DEFAULT_LIMITS, max_decode_bytes=1 << 62, max_origins=1 << 62, max_streams=1 << 62)
#: At most this many bytes of receipts passed on in one bundle (whatever else fits).
FORWARD_BYTES = 256 * 1024
#: Of those, at most this many bytes of receipts that say nothing of the receiver's own.
OTHERS_BYTES = 64 * 1024
#: Room kept in a header for its framing and ranges' msgpack beside the receipts.
HEADER_SLACK = 64 * 1024


def needs(receiver: bytes, sender: bytes, *statements: Knowledge | None) -> frozenset[bytes]:
    """The origins a receiver needs to hear about from ``sender``: both keys, and every
    origin of ``statements`` (what it said it holds; what a bundle carries)."""
    out = {receiver, sender}
    for k in statements:
        if k is not None:
            out.update(k.origins())
    return frozenset(out)


def restricted(held: Knowledge, origins: Iterable[bytes]) -> Knowledge:
    """``held`` restricted to the streams of ``origins``: what a bounded receipt
    states (a first cut of docs/spec.md §8.2's ``statement_for``: by origin)."""
    return held.restrict_origins(origins)


def outside(
    knowledge: Knowledge,
    origins: Iterable[bytes],
    scope: Scope | None = None,
    streams: Knowledge | None = None,
) -> Knowledge:
    """The streams of ``knowledge`` neither of ``origins``, nor (a scope of partitions
    given) in ``scope``, nor among ``streams``: what a sender's own receipt to us does
    not cover (spec §8.2, and the streams our receipts to it stated), and so says
    nothing about."""
    mine = set(origins)
    kept = knowledge.restrict_origins(o for o in knowledge.origins() if o not in mine)
    if scope is not None and not scope.is_everything and kept:
        kept = kept - kept.restrict(scope)
    if streams and kept:
        kept = kept - kept.only_streams(streams.streams())
    return kept


def heard_union(
    signer: bytes,
    before: Knowledge,
    stated: Knowledge,
    *,
    direct: bool = False,
    domain: tuple[Iterable[bytes], Scope | None, Knowledge | None] | None = None,
) -> Knowledge:
    """What ``signer`` holds after a newer receipt ``stated``, given what its receipts
    said ``before``: the union, unless ``stated`` names an origin with less than
    ``before`` said of it, or does not name the signer's own origin that ``before``
    named (a receipt always names its signer's own origin when it holds any of it). A
    receipt states everything its signer holds of each origin it names, and knowledge
    only grows, except when the signer was restored from a backup (or dropped
    quarantined data): then the newer receipt is taken alone, as before issue 18, so
    that peers send back what it lost.

    ``direct``: the signer sent this receipt itself, first in its own bundle, signed
    for us (or for anyone, stating everything). It names every origin the signer holds
    among those it knows we hold, so an origin it no longer names is one it holds
    nothing of, or one it never heard that we hold: it is taken alone. Older entries
    of the union (receipts signed for other receivers, passed on) never override the
    signer's newer word to us; at worst we send an origin it holds once more.

    ``domain`` (format 3, spec §8.2: our origin and those we relay for, our read
    scope when it is a set of partitions, and the streams our receipts to the signer
    stated), and the signer's own origin: the streams a signer's own receipt to us
    states in full. It is taken at its word there only; outside, what earlier
    receipts said (the streams they carried, an upload's answer) is kept, so that an
    unscoped reader does not send a bounded sender everything again every round."""
    if direct:
        if domain is None:
            return stated
        origins, scope, streams = domain
        # What a signer states of its own origin is whole: it knows what it holds of
        # its streams, and names each it holds sealed (a site restored from a backup
        # names less, or none, and must be sent back what it lost).
        rest = outside(before, (*origins, signer), scope, streams)
        return stated | rest if rest else stated
    named = restricted(before, stated.origins())
    if not named <= stated or (
        any(True for _ in before.partitions(signer))
        and not any(True for _ in stated.partitions(signer))
    ):
        return stated
    return before if stated <= before else before | stated


def relays_closure(
    configured: Iterable[bytes], declared: Mapping[bytes, Iterable[bytes]], me: bytes, most: int
) -> tuple[bytes, ...]:
    """The sites a relay relays for: those it was configured with and, for each of
    them, the sites that one said it relays for (its last bundle or pull request
    states its own closure, so one level is the whole chain); sorted, without ``me``,
    at most ``most`` (a header's ``max_relays_for``: the first in key order)."""
    out = set(configured)
    for site in list(out):
        out.update(declared.get(site, ()))
    out.discard(me)
    return tuple(sorted(out)[:most])


class Subject(NamedTuple):
    """A receipt about one subject: its issuer's statement restricted to the subject's
    own streams (spec §8.2 point 2), encoded as signed."""

    issuer: bytes
    created: int
    encoded: bytes


def subject_of(issuer: bytes, knowledge: Knowledge) -> bytes | None:
    """The subject of a receipt: the one origin it states, when that is not its issuer
    (None: it states several origins, none, or only its issuer's own)."""
    origins = knowledge.origins()
    first = next(origins, None)
    if first is None or first == issuer or next(origins, None) is not None:
        return None
    return first


#: Issuers kept per subject (newest first): a subject's word from a centre or two.
SUBJECT_ISSUERS = 4


def kept_subjects(data: bytes | None) -> list[Subject]:
    """The subject receipts a store kept for one subject (newest first)."""
    if not data:
        return []
    return [Subject(bytes(i), int(c), bytes(e)) for i, c, e in msgpack.unpackb(data)]


def take_subject(data: bytes | None, receipt: Subject) -> bytes | None:
    """The kept value after hearing ``receipt`` (None: nothing changes): the newest
    receipt per issuer, the ``SUBJECT_ISSUERS`` newest issuers."""
    held = kept_subjects(data)
    for old in held:
        if old.issuer == receipt.issuer and old.created >= receipt.created:
            return None
    rest = [s for s in held if s.issuer != receipt.issuer]
    kept = sorted([receipt, *rest], key=lambda s: (-s.created, s.issuer))[:SUBJECT_ISSUERS]
    return packb([[s.issuer, s.created, s.encoded] for s in kept])


def stated_bytes(encoded: bytes) -> bytes:
    """The canonical bytes of the knowledge a kept receipt (canonical, verified when it
    was kept) states, without building it."""
    return packb(msgpack.unpackb(encoded)[2])


def told_digest(issuer: bytes, knowledge: bytes) -> bytes:
    """What a receipt about a subject said (issuer and its knowledge's canonical
    bytes), as remembered per receiver: a receipt saying the same again is not resent."""
    return hash32(issuer + knowledge)[:16]


def subject_digests(receipts: Iterable[Receipt]) -> dict[bytes, bytes]:
    """subject + issuer -> ``told_digest`` of the subject receipts among ``receipts``:
    what a receiver was told about whom (not said again while it holds)."""
    out = {}
    for r in receipts:
        subject = subject_of(r.replica, r.knowledge)
        if subject is not None:
            out[subject + r.replica] = told_digest(r.replica, r.knowledge.to_bytes())
    return out


def kept_knowledge(data: bytes) -> Knowledge:
    """Knowledge a store kept (canonical, checked when it was kept), decoded without
    checking it again: a centre reads one per site it heard from."""
    return Knowledge.from_wire(msgpack.unpackb(data), _KEPT)


def forward_budget(max_header: int, max_bytes: int, own: int, ranges: int) -> int:
    """Bytes of receipts a bundle may pass on beside its own receipt (``own`` bytes) and
    ranges (``ranges`` bytes): never enough to take a header over ``max_header`` or a
    receipt-only bundle over a quarter of ``max_bytes``. Of it, receipts that say
    nothing of the receiver's own changes take at most ``OTHERS_BYTES``."""
    room = max_header - own - ranges - HEADER_SLACK
    return max(0, min(FORWARD_BYTES, room, max_bytes // 4))


def passed_on(
    candidates: Sequence[tuple[bytes, int, bytes, bool]], budget: int
) -> list[tuple[bytes, int, bytes, bool]]:
    """The prefix of ``candidates`` (in their order, skipping what does not fit) that
    fits in ``budget`` bytes, those not about the receiver's own changes in at most
    ``OTHERS_BYTES`` of it (they tell it what other sites hold of the origins it holds:
    useful, never needed)."""
    out = []
    others = min(budget, OTHERS_BYTES)
    for row in candidates:
        size = len(row[2])
        if size > budget or (not row[3] and size > others):
            continue
        budget -= size
        if not row[3]:
            others -= size
        out.append(row)
    return out


@dataclass(frozen=True, slots=True)
class _Entry:
    created: int
    encoded: bytes
    mentions: tuple[tuple[bytes, int], ...]  # (origin, highest seq stated), not the signer
    own_top: int  # the highest seq of the signer's own that it states


class HeardReceipts:
    """The newest receipt heard from each signer, indexed by the origins it states, so
    that choosing what to pass on to one receiver costs in proportion to what that
    receiver needs, not to the number of signers heard from."""

    def __init__(self) -> None:
        self._by_signer: dict[bytes, _Entry] = {}
        self._by_origin: dict[bytes, dict[bytes, int]] = {}

    def __len__(self) -> int:
        return len(self._by_signer)

    def put(self, signer: bytes, created: int, knowledge: Knowledge, encoded: bytes) -> None:
        """Keep ``encoded`` (a receipt of ``signer``) if it is newer than the held one."""
        tops = ((o, max(map(knowledge.max_seq, streams))) for o, streams in _by_origin(knowledge))
        self._put(signer, created, tops, encoded)

    def put_kept(self, signer: bytes, created: int, encoded: bytes) -> None:
        """Like ``put``, for a receipt a store kept (verified and canonical when it was
        kept): only the origins and top seqs it states are read, without building its
        knowledge, so that a centre indexes 80,000 receipts in about a second."""
        wire = msgpack.unpackb(encoded)[2]
        tops = ((bytes(o), max(p[2][-1] for p in parts)) for o, parts in wire if parts)
        self._put(signer, created, tops, encoded)

    def _put(
        self, signer: bytes, created: int, tops: Iterable[tuple[bytes, int]], encoded: bytes
    ) -> None:
        held = self._by_signer.get(signer)
        if held is not None:
            if held.created >= created:
                return
            for origin, _ in held.mentions:
                signers = self._by_origin[origin]
                del signers[signer]
                if not signers:
                    del self._by_origin[origin]
        own_top = 0
        mentions = []
        for origin, top in tops:
            if origin == signer:
                own_top = top
            else:
                mentions.append((origin, top))
        self._by_signer[signer] = _Entry(created, encoded, tuple(mentions), own_top)
        for origin, top in mentions:
            self._by_origin.setdefault(origin, {})[signer] = top

    def created(self, signer: bytes) -> int | None:
        held = self._by_signer.get(signer)
        return None if held is None else held.created

    def candidates(
        self,
        receiver: bytes | None,
        exclude: bytes,
        wanted: frozenset[bytes] | None,
        told: Mapping[bytes, int] | None = None,
        receiver_top: int = 0,
    ) -> list[tuple[bytes, int, bytes, bool]]:
        """(signer, created, encoded, about the receiver's own changes) of the receipts
        to pass on to ``receiver``, most useful first; never ``exclude``'s (the
        sender's own travels first anyway).

        ``wanted``: the origins the receiver needs (None: unknown receiver, every receipt
        is passed on, newest first: the rule before issue 18). ``told``: per signer, the
        ``created`` of the receipt this receiver already got from us (not sent again).
        The receiver's own receipt goes back to it (last) only if it states own seqs
        above ``receiver_top`` (the sender's own statement covers the rest): a site
        restored from a backup learns that way what it had sealed before."""
        told = told or {}

        def fresh(signer: bytes) -> bool:
            entry = self._by_signer[signer]
            return signer != exclude and entry.created > told.get(signer, -1)

        if wanted is None or receiver is None:
            every = [s for s in self._by_signer if s != receiver and fresh(s)]
            every.sort(key=lambda s: -self._by_signer[s].created)
            return [self._row(s, False) for s in every]
        about_receiver = self._by_origin.get(receiver, {})
        first = sorted(
            (s for s in about_receiver if s != receiver and fresh(s)),
            key=lambda s: (-about_receiver[s], -self._by_signer[s].created, s),
        )
        seen = set(first)
        stated: dict[bytes, int] = {}  # signer -> how many needed origins it states
        if len(wanted) < len(self._by_origin):
            pairs = ((o, self._by_origin.get(o)) for o in wanted)
        else:
            pairs = ((o, s) for o, s in self._by_origin.items() if o in wanted)
        for _, signers in pairs:
            for s in signers or ():
                stated[s] = stated.get(s, 0) + 1
        # A relay's or a centre's receipt (stating many of the receiver's origins) first.
        others = sorted(
            (s for s in stated if s not in seen and s != receiver and fresh(s)),
            key=lambda s: (-stated[s], -self._by_signer[s].created, s),
        )
        mine = self._by_signer.get(receiver)
        echo = [receiver] if mine and mine.own_top > receiver_top and fresh(receiver) else []
        return [
            *(self._row(s, True) for s in first),
            *(self._row(s, False) for s in others),
            *(self._row(s, True) for s in echo),
        ]

    def _row(self, signer: bytes, about: bool) -> tuple[bytes, int, bytes, bool]:
        entry = self._by_signer[signer]
        return signer, entry.created, entry.encoded, about


def _by_origin(knowledge: Knowledge) -> Iterable[tuple[bytes, list[Stream]]]:
    """The streams of ``knowledge`` grouped by origin."""
    by: dict[bytes, list[Stream]] = {}
    for stream in knowledge.streams():
        by.setdefault(stream.origin, []).append(stream)
    return by.items()
