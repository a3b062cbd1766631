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
from ..plan.pack import DEFAULT_MAX_BUNDLE, Fit, Item, bundles, carried, fit, select
from ..plan.receipts import forward_budget, kept_knowledge, needs, passed_on
from ..receipt import Receipt
from ..scope import Scope, new_stream
from ..unpack import unpack
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
        relays_for: Iterable[bytes] = (),
    ) -> Iterator[bytes]:
        """Like ``pack``, one bundle at a time, so a large backlog is never all in memory.

        ``receiver``: the replica the bundles are for. Then the receipts they carry are
        bounded by what it needs (``offsync.plan.receipts``, docs/spec.md §6): this
        replica's own receipt states only the origins it needs (its own, ours, those it
        ``stated`` or its receipts said it holds, those carried) and only receipts that
        say something about those origins are passed on, within a byte budget. Without
        a receiver, every receipt held is passed on (within that budget) and our own
        states everything. ``quiet`` (with a receiver, as ``offsync.sync`` packs): no
        bundle at all when there is nothing to send and nothing new to say; receipts
        the receiver already had from us are not sent again (what it was sent is kept
        per receiver by ``told``, once the bundles were delivered). ``readable``: the
        origins the receiver may be sent (a server's policy); the others are treated
        as held by it, without building knowledge of them (None: every origin).
        ``scope``: the receiver's (read) scope: only the streams of partitions in it
        travel, and our receipt states our knowledge restricted to the receiver's own
        streams, the scope and the streams carried (docs/spec-v3.md §8.2 point 1); a
        server passes the certified read scope here (None: everything;
        ``reader_scope`` adds ``_trust`` and the reference collections to a certified
        one). ``relays_for``: the sites the receiver relays for (its bundle's or
        request's ``relays_for``), whose streams our receipt states too."""
        relays = frozenset(relays_for) - {self.id}
        readers = frozenset() if receiver is None else relays | {receiver}
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
            if scope is not None:
                held = held.restrict(scope)
            missing = held - (since or Knowledge())
            plan = select(self._st.segments, missing)
            told = _Told.read(self, receiver) if quiet else _Told()
            wanted: frozenset[bytes] | None = None
            if receiver is not None:
                row = self.store.peer(receiver)
                heard = None if row is None else kept_knowledge(row[2])
                wanted = needs(receiver, self.id, heard, stated) | {o.origin for o, _ in plan}
                wanted |= relays
            top = _own_top(self.knowledge(), receiver)
            candidates = self._heard_receipts().candidates(
                receiver or recipient, self.id, wanted, told.forwarded if quiet else None, top
            )[: self.limits.max_receipts - 1]
            if quiet and not plan:
                assert wanted is not None
                if (
                    told.known
                    and not candidates
                    and self._statement(wanted, scope, readers, Knowledge()) <= told.own
                ):
                    return  # nothing to send, nothing new to say: no bundle
        pending = [_Pending(s, c, e, about) for s, c, e, about in candidates]
        for group in bundles(plan, max_bytes, always=always or quiet):
            yield from self._build(group, max_bytes, recipient, pending, wanted, scope, readers)
            pending = []

    def _statement(
        self,
        wanted: frozenset[bytes] | None,
        scope: Scope | None,
        readers: frozenset[bytes],
        ranges: Knowledge,
    ) -> Knowledge:
        """What our receipt in a bundle of ``ranges`` states: for a receiver with a
        ``scope``, our knowledge restricted to the streams of ``readers`` (the receiver
        and the sites it relays for), the scope and the streams carried
        (``offsync.receipt.statement_for``); else bounded by the origins it needs
        (``wanted``; None: everything)."""
        if scope is not None:
            held = self._receipt_knowledge()
            stated = held.restrict_origins(readers) | held.restrict(scope)
            return stated | held.only_streams(ranges.streams()) if ranges else stated
        if wanted is None:
            return self._receipt_knowledge()
        return self._bounded_receipt_knowledge(wanted | set(ranges.origins()))

    def forget_told(self) -> None:
        """Say everything again to every receiver, at its next round, as to a first
        contact. For a store put back from a backup (``offsync restore`` does it): its
        records of what it told each peer are the backup's, and a peer still believes
        what this site told it later (an origin the backup lacks), so both would stay
        quiet; this site's next receipt, taken at its word, makes the peer send again
        what it lacks (docs/design.md, "Receipts bounded by the receiver")."""
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
            plan = select(self._st.segments, missing)
            forwarded = [
                _Pending(p, c, r, True) for p, c, _, r in self.store.peers() if p != recipient
            ][: self.limits.max_receipts - 1]
        for i, group in enumerate(bundles(plan, max_bytes, always=always)):
            yield from self._build(group, max_bytes, recipient, [] if i else forwarded, None)

    def _build(
        self,
        group: Sequence[Item],
        max_bytes: int,
        recipient: bytes | None,
        forwarded: list[_Pending],
        wanted: frozenset[bytes] | None,
        scope: Scope | None = None,
        readers: frozenset[bytes] = frozenset(),
    ) -> Iterator[bytes]:
        """The bundle(s) of ``group``; ``wanted``: the origins the receiver needs (None:
        all), which our receipt states and the receipts passed on concern; ``scope``:
        the receiver's, which bounds our receipt instead (``_statement``)."""
        ranges = carried(group)
        with self._lock:
            body = bundle_body(self.store.segment_data([(o, s.first) for o, s in group]))
            now = self._tick()
            knowledge = self._statement(wanted, scope, readers, ranges)
            own = Receipt.issue(self.identity, now, knowledge)
        passed = forwarded
        if self.bounded_receipts:
            budget = forward_budget(
                self.limits.max_header_bytes,
                max_bytes,
                len(own.encode()),
                len(ranges.to_bytes()),
            )
            passed = [_Pending(*row) for row in passed_on(forwarded, budget)]
        bundle = build_bundle_body(
            self.identity,
            body,
            len(group),
            ranges=ranges,
            receipts=[own, *(self._kept(p.encoded) for p in passed)],
            created=now,
            recipient=recipient,
        )
        del body  # not held while this generator waits below for the bundle to be sent
        verdict = fit(len(bundle), len(group), max_bytes, self.limits)
        if verdict is Fit.SEND:
            yield bundle
        elif verdict is Fit.SPLIT:  # the receipts in the header took more room than planned
            half = len(group) // 2
            yield from self._build(
                group[:half], max_bytes, recipient, forwarded, wanted, scope, readers
            )
            yield from self._build(group[half:], max_bytes, recipient, [], wanted, scope, readers)
        else:
            raise UsageError(
                f"one segment's bundle is {len(bundle)} bytes, over the bundle limit"
                f" of {self.limits.max_bundle_bytes}"
            )


class _Pending(NamedTuple):
    """A receipt heard from ``signer`` that may be passed on (encoded, as kept)."""

    signer: bytes
    created: int
    encoded: bytes
    about: bool  # states the receiver's own changes (or is its own receipt)


@dataclass(slots=True)
class _Told:
    """What a receiver was told by us (kept in the store's meta per receiver): the union
    of our receipts' knowledge sent to it, and per signer the ``created`` of the newest
    receipt passed on to it. Losing it only means saying things again; one written
    before the store was restored from a backup (``RESTORED_META``) is not believed."""

    own: Knowledge = field(default_factory=Knowledge)
    forwarded: dict[bytes, int] = field(default_factory=dict)
    known: bool = False  # False: never told this receiver anything (a first contact)

    @staticmethod
    def _name(receiver: bytes) -> str:
        return "told:" + receiver.hex()

    @classmethod
    def read(cls, replica: _Packing, receiver: bytes | None) -> _Told:
        raw = None if receiver is None else replica.store.get_meta(cls._name(receiver))
        if raw is None:
            return cls()
        try:
            own, passed, *mark = unpack(raw, "told", replica.limits, max_depth=6)
            if bytes(mark[0] if mark else b"") != _restore_mark(replica):
                return cls()  # told before a restore: the peer may know more than we hold
            return cls(
                Knowledge.from_wire(own, replica.limits),
                {bytes(s): int(c) for s, c in passed},
                known=True,
            )
        except (ValueError, TypeError, RemoteDataError):
            return cls()  # unreadable: say everything again

    def note(self, own: Knowledge, passed: Iterable[Receipt]) -> None:
        if not own <= self.own:
            self.own = self.own | own
        for r in passed:
            self.forwarded[r.replica] = max(r.created, self.forwarded.get(r.replica, -1))

    def write(self, replica: _Packing, receiver: bytes) -> None:
        passed = [[s, c] for s, c in sorted(self.forwarded.items())]
        value = packb([self.own.to_wire(), passed, _restore_mark(replica)])
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
