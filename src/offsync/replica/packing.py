"""Packing bundles for a peer, as ``offsync.plan.pack`` selects and groups them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ..bundle import BundleHeader, build_bundle_body, bundle_body
from ..encoding import packb
from ..errors import RemoteDataError, UsageError
from ..identity import PublicIdentity
from ..knowledge import Knowledge
from ..plan.pack import (
    DEFAULT_MAX_BUNDLE,
    Fit,
    Item,
    bundles,
    carried,
    fit,
    prioritised,
    select,
)
from ..plan.receipts import (
    forward_budget,
    kept_knowledge,
    kept_subjects,
    stated_bytes,
    subject_digests,
    told_digest,
)
from ..receipt import Receipt, statement_for
from ..scope import Scope, new_stream
from ..unpack import unpack
from .core import RELAYS_META, SUBJECT_META
from .sealing import _Sealing

__all__ = ["RESTORED_META"]

#: Meta that marks a store put back from a backup (``Replica.forget_told``, set by
#: ``offsync restore``): records of what was told to receivers (``told:<key>``) written
#: under another mark, or before any, are not believed.
RESTORED_META = "restored"


class _Packing(_Sealing):
    def pack(
        self,
        since: Knowledge | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BUNDLE,
        recipient: bytes | PublicIdentity | None = None,
        always: bool = False,
        scope: Scope | None = None,
    ) -> list[bytes]:
        """Bundles carrying everything this replica holds that ``since`` lacks.

        ``since=None`` sends everything. Each bundle is at most ``max_bytes`` long, except
        that a single (foreign) segment too large for ``max_bytes`` travels alone. With
        ``always``, one bundle is produced even when there is nothing to send, so that
        this replica's receipt still travels. ``recipient`` encrypts to that site.
        Segments travel as they were sealed (compressed by their origin), so packing
        compresses nothing. ``scope``: the receiver's scope (``iter_pack``).
        """
        return list(
            self.iter_pack(
                since, max_bytes=max_bytes, recipient=recipient, always=always, scope=scope
            )
        )

    def iter_pack(
        self,
        since: Knowledge | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BUNDLE,
        recipient: bytes | PublicIdentity | None = None,
        always: bool = False,
        receiver: bytes | None = None,
        stated: Knowledge | None = None,
        quiet: bool = False,
        readable: Callable[[bytes], bool] | None = None,
        scope: Scope | None = None,
        relays_for: Iterable[bytes] | None = None,
    ) -> Iterator[bytes]:
        """Like ``pack``, one bundle at a time, so a large backlog is never all in memory.

        ``receiver``: the replica the bundles are for. Then what they say about
        knowledge is bounded by it (docs/spec.md §8.2): our receipt states our
        knowledge of its own streams, of the sites it relays for (``relays_for``, from
        its pull request; None: from its last bundle), of its read ``scope`` (None:
        everything, which adds nothing) and of the streams carried; the receipts passed
        on are, for it and each site it relays for, the newest another issuer's receipt
        about that subject we hold and one we sign about it (subject receipts), split
        across bundles when they do not fit one. Without a receiver our receipt states
        everything and the receipts heard are passed on, newest first, as many as fit the
        first bundle (format 2's rule: a bundle for anyone). ``quiet`` (with a receiver, as
        ``offsync.sync`` packs): no bundle at all when there is nothing to send and
        nothing new to say; what the receiver was told (our statement, each subject
        receipt) is not said again (kept per receiver by ``told`` once the bundles were
        delivered). ``readable``: the origins the receiver may be sent (a server's
        policy); the others are treated as held by it. ``stated`` (what the receiver
        said it holds) is accepted for callers of format 2's rule and not used: a
        receipt no longer grows with what its reader holds."""
        del stated
        if scope is not None and scope.is_everything:
            scope = None
        if isinstance(recipient, PublicIdentity):
            recipient = recipient.public_key
        if not self.bounded_receipts:
            # Before issue 18 every round sent a bundle: ``quiet`` did not exist.
            yield from self._iter_pack_unbounded(
                since, max_bytes, recipient, always or quiet, readable
            )
            return
        quiet = quiet and receiver is not None
        with self._lock:
            self._seal()
            held = self.knowledge() if readable is None else _readable(self.knowledge(), readable)
            in_scope = None
            if scope is not None:
                held = in_scope = held.restrict(scope)
            missing = held - (since or Knowledge())
            plan = prioritised(select(self._st.segments, missing), self.priorities)
            told = _Told.read(self, receiver) if quiet else _Told()
            subjects: tuple[bytes, ...] = ()
            if receiver is not None:
                if relays_for is None:
                    relays_for = self._declared_relays(receiver)
                else:
                    self._note_relays(receiver, tuple(sorted(set(relays_for))))
                # A relay may relay for us: we say nothing about ourselves to it; nor
                # about a site whose changes it may not be sent (``readable``).
                subjects = tuple(
                    s
                    for s in sorted(set(relays_for) - {receiver, self.id})
                    if readable is None or readable(s)
                )
            if receiver is None:  # for anyone (a file): format 2's rule, newest first
                says = [
                    _Say(signer, signer, b"", encoded, None)
                    for signer, _, encoded, _ in self._heard_receipts().candidates(
                        recipient, self.id, None
                    )
                ]
            else:
                says = self._subject_receipts(receiver, subjects, told)
            if (
                quiet
                and not plan
                and told.known
                and not says
                and self._statement(receiver, subjects, in_scope, Knowledge()) <= told.own
            ):
                return  # nothing to send, nothing new to say: no bundle
        mine = self.relays_for
        target = _Target(recipient, receiver, subjects, in_scope, mine)
        packed = False
        for group in bundles(plan, max_bytes, always=always or quiet):
            packed = True
            yield from self._build(group, max_bytes, target, says)
            if receiver is None:
                says = []  # what did not fit the first bundle is not said
        # More subjects than one header holds: receipt-only bundles (for a receiver; a
        # bundle for anyone that had nothing to carry is not made for its receipts).
        while (packed or receiver is not None) and says:
            yield from self._build([], max_bytes, target, says)

    @property
    def relays_for(self) -> tuple[bytes, ...]:
        """The sites this replica relays for (its bundles' and pull requests'
        ``relays_for``): those ``set_relays_for`` named and, for each, the sites that one
        said it relays for (spec §8.2: their receipts are carried back to them)."""
        with self._lock:
            return self._my_relays()

    def set_relays_for(self, sites: Iterable[bytes | PublicIdentity]) -> None:
        """Relay for ``sites`` (the sites behind this one that sync only with it): their
        receipts from further up are asked for and carried back to them."""
        keys = sorted({s.public_key if isinstance(s, PublicIdentity) else s for s in sites})
        if not all(type(k) is bytes and len(k) == 32 for k in keys) or self.id in keys:
            raise UsageError("relays_for names 32-byte keys of other sites")
        with self._lock, self._transaction():
            self.store.set_meta(RELAYS_META, packb(keys))

    def _subject_receipts(
        self, receiver: bytes | None, subjects: Sequence[bytes], told: _Told
    ) -> list[_Say]:
        """What we pass on to ``receiver`` (spec §8.2 point 2): for it and each site
        it relays for, the newest receipt about that subject of each other issuer we
        keep (``SUBJECT_ISSUERS`` at most: a district's word must not hide the
        centre's), and for each site it relays for one we sign (our knowledge of that
        site's own streams); those it was told already (``told``) are left out."""
        if receiver is None:
            return []
        out: list[_Say] = []
        held = self.knowledge()
        for subject in (receiver, *subjects):
            for kept in kept_subjects(self.store.get_meta(SUBJECT_META + subject.hex())):
                if kept.issuer in (self.id, receiver):
                    continue
                digest = told_digest(kept.issuer, stated_bytes(kept.encoded))
                if told.subjects.get(subject + kept.issuer) != digest:
                    out.append(_Say(subject, kept.issuer, digest, kept.encoded, None))
            if subject != receiver:
                ours = held.restrict_origins([subject])
                if ours:
                    digest = told_digest(self.id, ours.to_bytes())
                    if told.subjects.get(subject + self.id) != digest:
                        out.append(_Say(subject, self.id, digest, None, ours))
        return out

    def _statement(
        self,
        receiver: bytes | None,
        subjects: Sequence[bytes],
        in_scope: Knowledge | None,
        ranges: Knowledge,
    ) -> Knowledge:
        """What our receipt in a bundle of ``ranges`` for ``receiver`` states (spec
        §8.2 point 1, ``offsync.receipt.statement_for``; our own streams only as far as
        sealed), and the streams the receiver's receipts stated to us: without them
        an unscoped mailbox peer would never learn that we hold what it sent us, and
        would send it again every round (docs/design.md); they are bounded by what the
        receiver's own receipts may state. ``in_scope``: our knowledge restricted to
        the receiver's read scope (computed once per ``iter_pack``: one pass over the
        origins). Everything for an unknown receiver."""
        if receiver is None:
            return self._receipt_knowledge()
        held = self.knowledge()
        stated = statement_for(held, reader=receiver, relays_for=subjects, carried=ranges)
        if in_scope:
            stated |= in_scope
        row = self.store.peer(receiver)
        if row is not None:  # the streams its receipts stated (bounded by its role)
            stated |= held.only_streams(kept_knowledge(row[2]).streams())
        own = [s for s in stated.streams() if s.origin == self.id]
        if not own:
            return stated
        sealed = self._bounded_receipt_knowledge(frozenset({self.id})).only_streams(own)
        return stated.restrict_origins(o for o in stated.origins() if o != self.id) | sealed

    def forget_told(self) -> None:
        """Say everything again to every receiver, at its next round, as to a first
        contact. For a store put back from a backup (``offsync restore`` does it): its
        records of what it told each peer are the backup's, and a peer still believes
        what this site told it later (an origin the backup lacks), so both would stay
        quiet; this site's next receipt, taken at its word, makes the peer send again
        what it lacks (docs/design.md, "Receipts and knowledge at scale")."""
        with self._lock, self._transaction():
            self.store.set_meta(RESTORED_META, os.urandom(16).hex().encode())

    def told(self, receiver: bytes, headers: Iterable[BundleHeader]) -> None:
        """Remember that ``receiver`` got bundles with these headers (packed by us):
        ``iter_pack(quiet=True)`` does not say again what they said. ``offsync.sync``
        calls it once the transport took them all."""
        with self._lock:
            told = _Told.read(self, receiver)
            for header in headers:
                told.note(header.receipts[0].knowledge, header.receipts[1:])
            told.write(self, receiver)

    def _iter_pack_unbounded(
        self,
        since: Knowledge | None,
        max_bytes: int,
        recipient: bytes | None,
        always: bool,
        readable: Callable[[bytes], bool] | None,
    ) -> Iterator[bytes]:
        """The sender rule before issue 18 (``bounded_receipts = False``, for comparison
        in benchmarks/metadata_scale.py): our receipt states everything held and every
        receipt heard is passed on."""
        with self._lock:
            self._seal()
            held = self.knowledge() if readable is None else _readable(self.knowledge(), readable)
            missing = held - (since or Knowledge())
            plan = prioritised(select(self._st.segments, missing), self.priorities)
            forwarded = [
                _Say(p, p, b"", r, None) for p, _, _, r in self.store.peers() if p != recipient
            ][: self.limits.max_receipts - 1]
        target = _Target(recipient, None, (), None, ())
        for i, group in enumerate(bundles(plan, max_bytes, always=always)):
            yield from self._build(group, max_bytes, target, [] if i else forwarded)

    def _build(
        self, group: Sequence[Item], max_bytes: int, target: _Target, says: list[_Say]
    ) -> Iterator[bytes]:
        """The bundle(s) of ``group`` for ``target``, passing on as many of ``says``
        (taken from its front) as fit the header: at most ``max_receipts`` receipts and
        ``forward_budget`` bytes beside our own; the rest wait for the next bundle."""
        ranges = carried(group)
        with self._lock:
            body = bundle_body(self.store.segment_data([(o, s.first) for o, s in group]))
            now = self._tick()
            if self.bounded_receipts:
                knowledge = self._statement(
                    target.receiver, target.subjects, target.in_scope, ranges
                )
            else:
                knowledge = self._receipt_knowledge()
            own = Receipt.issue(self.identity, now, knowledge)
        budget = forward_budget(
            self.limits.max_header_bytes, max_bytes, len(own.encode()), len(ranges.to_bytes())
        )
        if not self.bounded_receipts:  # the rule before issue 18: every receipt heard
            budget = 1 << 62
        seen = {own.encode()}
        passed: list[Receipt] = []
        taken: list[_Say] = []
        while says and len(passed) < self.limits.max_receipts - 1:
            say = says[0]
            receipt = (
                Receipt.issue(self.identity, now, say.knowledge)
                if say.encoded is None and say.knowledge is not None
                else self._kept(say.encoded or b"")
            )
            encoded = receipt.encode()
            if len(encoded) > budget and passed:
                break
            taken.append(says.pop(0))
            if encoded in seen:
                continue
            seen.add(encoded)
            budget -= len(encoded)
            passed.append(receipt)
        bundle = build_bundle_body(
            self.identity,
            body,
            len(group),
            ranges=ranges,
            receipts=[own, *passed],
            created=now,
            recipient=target.recipient,
            relays_for=target.relays_for,
        )
        del body  # not held while this generator waits below for the bundle to be sent
        verdict = fit(len(bundle), len(group), max_bytes, self.limits)
        if verdict is Fit.SEND:
            yield bundle
        elif verdict is Fit.SPLIT:  # the receipts in the header took more room than planned
            says[:0] = taken
            half = len(group) // 2
            yield from self._build(group[:half], max_bytes, target, says)
            yield from self._build(group[half:], max_bytes, target, says)
        else:
            raise UsageError(
                f"one segment's bundle is {len(bundle)} bytes, over the bundle limit"
                f" of {self.limits.max_bundle_bytes}"
            )


class _Target(NamedTuple):
    """Whom a bundle is for and what bounds what it says (``iter_pack``)."""

    recipient: bytes | None  # the body is sealed to this key
    receiver: bytes | None  # None: anyone (our receipt states everything)
    subjects: tuple[bytes, ...]  # the sites the receiver relays for
    in_scope: Knowledge | None  # what we hold of the receiver's read scope (None: all)
    relays_for: tuple[bytes, ...]  # the sites we relay for (our header's)


class _Say(NamedTuple):
    """A receipt to pass on: about ``subject``, by ``issuer``; ``encoded`` as kept, or
    ``knowledge`` for us to sign (a subject receipt of ours)."""

    subject: bytes
    issuer: bytes
    digest: bytes  # ``told_digest`` of what it says
    encoded: bytes | None
    knowledge: Knowledge | None


@dataclass(slots=True)
class _Told:
    """What a receiver was told by us (kept in the store's meta per receiver): the union
    of our receipts' knowledge sent to it, and per signer the ``created`` of the newest
    receipt passed on to it. Losing it only means saying things again; one written
    before the store was restored from a backup (``RESTORED_META``) is not believed."""

    own: Knowledge = field(default_factory=Knowledge)
    forwarded: dict[bytes, int] = field(default_factory=dict)
    known: bool = False  # False: never told this receiver anything (a first contact)
    #: subject + issuer -> ``told_digest`` of the subject receipt last passed on
    subjects: dict[bytes, bytes] = field(default_factory=dict)

    @staticmethod
    def _name(receiver: bytes) -> str:
        return "told:" + receiver.hex()

    @classmethod
    def read(cls, replica: _Packing, receiver: bytes | None) -> _Told:
        raw = None if receiver is None else replica.store.get_meta(cls._name(receiver))
        if raw is None:
            return cls()
        try:
            own, passed, *rest = unpack(raw, "told", replica.limits, max_depth=6)
            if bytes(rest[0] if rest else b"") != _restore_mark(replica):
                return cls()  # told before a restore: the peer may know more than we hold
            return cls(
                Knowledge.from_wire(own, replica.limits),
                {bytes(s): int(c) for s, c in passed},
                known=True,
                subjects={bytes(k): bytes(d) for k, d in (rest[1] if len(rest) > 1 else ())},
            )
        except (ValueError, TypeError, RemoteDataError):
            return cls()  # unreadable: say everything again

    def note(self, own: Knowledge, passed: Iterable[Receipt]) -> None:
        if not own <= self.own:
            self.own = self.own | own
        for r in passed:
            self.forwarded[r.replica] = max(r.created, self.forwarded.get(r.replica, -1))
        self.subjects.update(subject_digests(passed))

    def write(self, replica: _Packing, receiver: bytes) -> None:
        passed = [[s, c] for s, c in sorted(self.forwarded.items())]
        subjects = [[k, d] for k, d in sorted(self.subjects.items())]
        value = packb([self.own.to_wire(), passed, _restore_mark(replica), subjects])
        with replica._lock, replica._transaction():
            replica.store.set_meta(self._name(receiver), value)


def _restore_mark(replica: _Packing) -> bytes:
    """The store's restore mark (``RESTORED_META``; empty if it was never restored)."""
    return replica.store.get_meta(RESTORED_META) or b""


def _readable(knowledge: Knowledge, readable: Callable[[bytes], bool]) -> Knowledge:
    """The part of ``knowledge`` about the origins ``readable`` accepts."""
    return knowledge.restrict_origins(o for o in knowledge.origins() if readable(o))


def _own_top(knowledge: Knowledge, origin: bytes | None) -> int:
    """The highest seq of ``origin``'s streams ``knowledge`` holds (0: none, or None)."""
    if origin is None:
        return 0
    return max(
        (knowledge.max_seq(new_stream(origin, p)) for p in knowledge.partitions(origin)), default=0
    )
