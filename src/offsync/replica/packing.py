"""Packing bundles for a peer, as ``offsync.plan.pack`` selects and groups them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..bundle import build_bundle
from ..errors import UsageError
from ..identity import PublicIdentity
from ..knowledge import Knowledge
from ..plan.pack import DEFAULT_MAX_BUNDLE, Fit, Item, bundles, carried, fit, select
from ..receipt import Receipt
from .sealing import _Sealing

__all__: list[str] = []


class _Packing(_Sealing):
    def pack(
        self,
        since: Knowledge | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BUNDLE,
        recipient: bytes | PublicIdentity | None = None,
        always: bool = False,
    ) -> list[bytes]:
        """Bundles carrying everything this replica holds that ``since`` lacks.

        ``since=None`` sends everything. Each bundle is at most ``max_bytes`` long, except
        that a single (foreign) segment too large for ``max_bytes`` travels alone. With
        ``always``, one bundle is produced even when there is nothing to send, so that
        this replica's receipt still travels. ``recipient`` encrypts to that site.
        Segments travel as they were sealed (compressed by their origin), so packing
        compresses nothing.
        """
        return list(self.iter_pack(since, max_bytes=max_bytes, recipient=recipient, always=always))

    def iter_pack(
        self,
        since: Knowledge | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BUNDLE,
        recipient: bytes | PublicIdentity | None = None,
        always: bool = False,
    ) -> Iterator[bytes]:
        """Like ``pack``, one bundle at a time, so a large backlog is never all in memory."""
        if isinstance(recipient, PublicIdentity):
            recipient = recipient.public_key
        with self._lock:
            self._seal()
            missing = self.knowledge() - (since or Knowledge())
            plan = select(self._st.segments, missing)
            forwarded = [self._kept(r) for p, _, _, r in self.store.peers() if p != recipient][
                : self.limits.max_receipts - 1
            ]
        for i, group in enumerate(bundles(plan, max_bytes, always=always)):
            yield from self._build(group, max_bytes, recipient, [] if i else forwarded)

    def _build(
        self,
        group: Sequence[Item],
        max_bytes: int,
        recipient: bytes | None,
        forwarded: list[Receipt],
    ) -> Iterator[bytes]:
        with self._lock:
            data = self.store.segment_data([(o, s.first) for o, s in group])
            now = self._tick()
            own = Receipt.issue(self.identity, now, self._receipt_knowledge())
        bundle = build_bundle(
            self.identity,
            data,
            ranges=carried(group),
            receipts=[own, *forwarded],
            created=now,
            recipient=recipient,
        )
        verdict = fit(len(bundle), len(group), max_bytes, self.limits)
        if verdict is Fit.SEND:
            yield bundle
        elif verdict is Fit.SPLIT:  # the receipts in the header took more room than planned
            half = len(group) // 2
            yield from self._build(group[:half], max_bytes, recipient, forwarded)
            yield from self._build(group[half:], max_bytes, recipient, [])
        else:
            raise UsageError(
                f"one segment's bundle is {len(bundle)} bytes, over the bundle limit"
                f" of {self.limits.max_bundle_bytes}"
            )
