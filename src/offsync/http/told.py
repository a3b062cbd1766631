"""What a server last told each site about itself: the receipt its last pull answer
carried, so that an idle pull can be answered with no bundle at all (spec-v3 §15.3).

A site sends ``receipt_known``, the hash of the newest receipt of the server it holds.
If that is the receipt this server last sent it, and what the server holds of the
site's own streams and of the sites it relays for is what it held then, the receipt
is still the whole truth the site needs: with nothing new to send either, the answer
is the end frame alone. The record is in memory and bounded (least recently told
sites are forgotten first): a restarted server, or one that forgot a site, sends one
bundle with a fresh receipt, which is always correct, only not the cheapest.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from ..knowledge import Knowledge

__all__ = ["MAX_TOLD_SITES", "Told", "ToldReceipts"]

#: Sites remembered; some 60 bytes plus their knowledge each (a site's own streams).
MAX_TOLD_SITES = 100_000


@dataclass(frozen=True, slots=True)
class Told:
    """The receipt hash last sent to a site, about which origins, and what the server
    held of those origins when it packed it."""

    receipt: bytes
    origins: frozenset[bytes]
    held: Knowledge


class ToldReceipts:
    """Per site, the last ``Told`` (thread-safe: pulls pack in worker threads)."""

    def __init__(self, limit: int = MAX_TOLD_SITES) -> None:
        self.limit = limit
        self._told: OrderedDict[bytes, Told] = OrderedDict()
        self._guard = threading.Lock()

    def __len__(self) -> int:
        return len(self._told)

    @staticmethod
    def origins(site: bytes, relays_for: tuple[bytes, ...]) -> frozenset[bytes]:
        return frozenset((site, *relays_for))

    def remember(self, site: bytes, told: Told) -> None:
        with self._guard:
            self._told[site] = told
            self._told.move_to_end(site)
            while len(self._told) > self.limit:
                self._told.popitem(last=False)

    def still_true(
        self, site: bytes, known: bytes | None, relays_for: tuple[bytes, ...], held: Knowledge
    ) -> bool:
        """Whether the receipt ``known`` (a hash) the site holds is the one last sent it
        and says all it needs: same origins, and ``held`` (the server's knowledge now)
        unchanged for them."""
        if known is None:
            return False
        with self._guard:
            told = self._told.get(site)
        origins = self.origins(site, relays_for)
        return (
            told is not None
            and told.receipt == known
            and told.origins == origins
            and held.restrict_origins(origins) == told.held
        )
