"""Trust and quarantine: re-examining held segments, and bounding unknown signers' data.

The decisions are ``offsync.plan.examine`` and ``offsync.plan.quarantine``; this module
reads what they need from the store, writes what they decide, and publishes the state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..change import Change
from ..encoding import packb
from ..plan import erasure
from ..plan.examine import candidates, changed_origins, fingerprint, reexamine_segment
from ..plan.quarantine import is_unknown, plan_evictions
from ..segindex import HeldSegment, Stream
from ..trust import TRUST_COLLECTION, TrustStore
from .redacting import _Redacting
from .state import Pending

__all__: list[str] = []  # internal: offsync.replica.Replica is the public class

log = logging.getLogger("offsync")
#: Rounds of re-examination after one change; each needs a changed trust store.
MAX_ROUNDS = 16


class _Examining(_Redacting):
    def reexamine(self, *, full: bool = False) -> int:
        """Re-check segments held for their clock, and (``full=True``) every segment
        against the trust store and validators as they are now.

        Runs by itself after a bundle or write that changes the trust store (for the
        origins whose rules changed) and when a segment held for its clock may have
        become admissible; call it with ``full=True`` after changing a validator's
        behaviour. Returns how many changes were newly applied.
        """
        with self._lock:
            return self._reexamine(full=full)

    def _trust_fingerprint(self) -> bytes:
        return fingerprint(self._st.trust, self.validators)

    def _reexamine(self, *, full: bool = False) -> int:
        """Make the applied changes of every affected segment what admission says now.

        Candidates: segments held for their clock, and every segment of an origin whose
        certificate or revocation changed (applied ones too: their changes may have to
        be taken back); with ``full``, every segment. Loops because applying ``_trust``
        changes can change trust again. If it fails (a full disk), the next write or
        bundle tries again, comparing with the trust store this one started from.
        """
        st = self._st
        before = st.pending.trust if st.pending is not None else st.trust
        try:
            unlocked = self._reexamine_rounds(full, before)
        except BaseException:
            self._put(self._st._replace(pending=Pending(before), clock_due=0))
            raise
        self._put(self._st._replace(pending=None))
        return unlocked

    def _reexamine_rounds(self, full: bool, before: TrustStore | None) -> int:
        unlocked = 0
        for _ in range(MAX_ROUNDS):
            # The trust store follows the committed _trust records: in force at once.
            self._put(self._st._replace(trust=self._load_trust(), clock_due=None))
            add, drop = self._reexamine_round(changed_origins(self._st.trust, before), full)
            unlocked += len(add)
            if not any(c.collection == TRUST_COLLECTION for c in (*add, *drop)):
                break
            before, full = self._st.trust, False
        with self._transaction():
            st = self._st
            self.store.set_meta("trust_examined", fingerprint(st.trust, self.validators))
        self._put(self._with_counted_claims(self._st))  # whose claims count may have changed
        return unlocked

    def _reexamine_round(
        self, changed: set[bytes], full: bool
    ) -> tuple[list[Change], list[Change]]:
        """One round: judge the candidates, then write what changed in one transaction."""
        st = self._st
        rules = self._rules(st.trust)
        add: list[Change] = []
        drop: list[Change] = []
        due: list[int] = []
        statuses: list[tuple[Stream, HeldSegment]] = []
        for stream, _, s in candidates(st.segments, changed, full):
            changes = self._held_segment(stream, s)
            keys = {(c.collection, c.key) for c in changes}
            applied = {x.id for k in keys for x in self.store.changes_for(*k)}
            outcome = reexamine_segment(changes, applied, rules)
            add += outcome.add
            drop += outcome.drop
            due += [outcome.due] if outcome.due is not None else []
            if outcome.status != s.status:
                statuses.append((stream, s._replace(status=outcome.status)))
        clock_due = min(due, default=None)
        if not (add or drop or statuses):
            self._put(st._replace(clock_due=clock_due))
            return add, drop
        with self._transaction():
            st = self._st
            self.store.remove_changes(drop)
            self._merge(add)
            # Erase orders admitted now (their authority's key came) erase now.
            self._erase_records(erasure.erased_by(add, _admitted))
            added = {(c.collection, c.key) for c in add}
            self._recompute({(c.collection, c.key) for c in drop} - added)
            for stream, s in statuses:
                self.store.set_segment_status(stream, s.first, str(s.status))
            top = max((c.hlc for c in add), default=0)
            if top > st.hlc:
                self.store.set_meta("hlc", str(top).encode())
            self._put(
                st._replace(
                    segments=st.segments.updated(add=statuses),
                    hlc=max(st.hlc, top),
                    clock_due=clock_due,
                )
            )
        return add, drop

    # -- unknown signers' quarantine, bounded (offsync.plan.quarantine) -----------------

    def _bound_unknown(self, stored: Sequence[bytes], trust_touched: bool) -> tuple[int, int]:
        """Inside an apply's transaction, after its segments are stored and indexed in
        the working state: drop unknown signers' data beyond the limits. Only when such
        data arrived, so a bundle of known sites costs nothing more. ``stored``: the
        origins of the segments the bundle stored. Returns what ``_evict_unknown`` does."""
        st = self._st
        if st.trust is None or self.store.shared:
            return 0, 0
        # Trust records applied by this bundle count already (a certificate that came
        # with its site's data).
        trust = self._load_trust() if trust_touched else st.trust
        new = [o for o in stored if is_unknown(o, trust, self.id)]
        if not new and not trust_touched:
            return 0, 0
        return self._evict_unknown(trust, new, rescan=trust_touched)

    def _evict_unknown(
        self, trust: TrustStore | None, new: Sequence[bytes] = (), *, rescan: bool = False
    ) -> tuple[int, int]:
        """Drop from the store what ``plan_evictions`` says, keep the signers' order,
        and forget the dropped segments in the working state. Returns how many segments
        were dropped and their bytes (for ``_log_evicted``, once committed)."""
        st = self._st
        plan = plan_evictions(
            st.segments, st.unknown, trust, self.id, self.limits, new=new, rescan=rescan
        )
        if plan.drop:
            self.store.remove_segments(list(plan.drop))
        if plan.order != st.unknown:
            self.store.set_meta("unknown_signers", packb(list(plan.order)))
        size = sum(s.size for o, f in plan.drop if (s := st.segments.find(o, f)) is not None)
        index = st.segments.updated(drop=[(o, f, f) for o, f in plan.drop])
        self._put(st._replace(segments=index, unknown=plan.order))
        return len(plan.drop), size


def _admitted(change: Change) -> bool:
    return True  # what a re-examination adds is admitted


def _log_evicted(dropped: tuple[int, int]) -> None:
    """After the commit: say what was dropped (no key: keys are personal data)."""
    if dropped[0]:
        log.info(
            "dropped %d quarantined segments (%d bytes) of signers without a certificate,"
            " to stay within Limits.max_unknown_*",
            *dropped,
        )
