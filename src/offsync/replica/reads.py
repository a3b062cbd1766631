"""Reading a replica: records, conflicts, quarantine, receipts and claims."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..change import Change
from ..encoding import decode_fields, packb
from ..knowledge import Knowledge
from ..plan.admit import held_reasons
from ..plan.claims import claim_counts, counted_claim
from ..plan.receipts import kept_knowledge, needs
from ..receipt import Receipt
from ..scope import Scope, Stream, new_stream
from ..segindex import top_seq
from ..segment import AnySegment
from ..status import FORK_AT_SAME_SEQS
from ..trust import TrustStore
from .core import _Core
from .state import ReplicaState
from .types import Conflict, Quarantined, QuarantinedChange, SeqClaim

__all__: list[str] = []


class _Reads(_Core):
    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.store.get_record(collection, key)
        if row is None or row.fields is None:
            return None
        return decode_fields(row.fields)

    def items(self, collection: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Visible records of a collection in key order."""
        with self._lock:
            rows = [r for r in self.store.iter_records(collection) if r.fields is not None]
        for r in rows:
            assert r.fields is not None
            yield r.key, decode_fields(r.fields)

    def collections(self) -> dict[str, int]:
        """How many visible records each collection holds (collections with none are
        not listed), by collection name."""
        counts: dict[str, int] = {}
        with self._lock:
            for row in self.store.iter_records():
                if row.fields is not None:
                    counts[row.collection] = counts.get(row.collection, 0) + 1
        return counts

    def record_changes(self, collection: str, key: str) -> list[Change]:
        """The changes applied to one record here (its history as this replica holds it;
        held changes that are not applied are in ``quarantined_changes``)."""
        with self._lock:
            return self.store.changes_for(collection, key)

    def state_digest(self, scope: Scope | None = None) -> bytes:
        """BLAKE2b-256 of the visible state; equal exactly when the states are equal.
        ``scope``: of the records in it only (a scoped replica's digest equals an
        unscoped one's restricted to its scope)."""
        h = hashlib.blake2b(b"offsync/state/v1\x00", digest_size=32)
        holds = None if scope is None or scope.is_everything else scope.holds
        with self._lock:
            for row in self.store.iter_records():
                if row.fields is not None and (holds is None or holds(row.collection, row.key)):
                    h.update(packb([row.collection, row.key, row.fields]))
        return h.digest()

    def conflicts(self) -> list[Conflict]:
        with self._lock:
            out = []
            for collection, key in self.store.conflicted():
                changes = self.store.changes_for(collection, key)
                versions = self.policy(collection).versions(changes)
                row = self.store.get_record(collection, key)
                current = decode_fields(row.fields) if row and row.fields is not None else None
                out.append(
                    Conflict(
                        collection,
                        key,
                        current,
                        {
                            h: (decode_fields(v) if v is not None else None)
                            for h, v in versions.items()
                        },
                    )
                )
            return out

    def quarantined(self) -> list[Quarantined]:
        with self._lock:
            self._follow_store()
            st = self._st
            return [
                Quarantined(o.origin, s.first, s.last, str(s.status))
                for o, s in st.segments.held_back()
            ] + [
                Quarantined(f.origin, f.first_seq, f.last_seq, str(FORK_AT_SAME_SEQS))
                for f in st.forks
            ]

    def quarantined_changes(self) -> list[QuarantinedChange]:
        """Every held change that is not applied, with its reason."""
        with self._lock:
            st = self._st
            rules = self._rules(st.trust)
            return [
                QuarantinedChange(c.id, c.collection, c.key, str(reason))
                for stream, s in st.segments.held_back()
                for c, reason in held_reasons(s.status, self._held_segment(stream, s), rules)
            ]

    def forks(self) -> list[AnySegment]:
        """Signed segments that conflict with a held segment at the same seqs.

        Two segments validly signed by one origin for the same seqs prove that the
        origin forked (a restore from an old backup, or a stolen key). The held one
        stays; these are not applied and not forwarded. Also listed by
        ``quarantined()`` with a reason starting with ``fork``. Kept redacted once
        a record they hold puts of is erased (the signed header is the evidence).
        """
        with self._lock:
            return list(self._st.forks)

    @property
    def trust_store(self) -> TrustStore | None:
        """The certificates and revocations in force; None in open mode."""
        return self._st.trust

    # -- receipts and claims (offsync.plan.claims) ---------------------------------------

    def receipts(self) -> dict[bytes, Receipt]:
        """The newest receipt heard from each peer (directly or passed on by relays).

        A receipt may state only what its receiver needed (docs/spec.md §6), so what a
        peer holds is the union of everything its receipts said: ``peer_knowledge``."""
        with self._lock:
            return {p: self._kept(r) for p, _, _, r in self.store.peers()}

    def peer_knowledge(self, peer: bytes | None = None) -> dict[bytes, Knowledge]:
        """What each peer holds as far as its receipts said: the union of them all
        (``peer``: that one only; an empty dict if none was heard from)."""
        with self._lock:
            if peer is not None:
                row = self.store.peer(peer)
                rows = [] if row is None else [row]
            else:
                rows = self.store.peers()
            return {p: kept_knowledge(k) for p, _, k, _ in rows}

    def receipt(self) -> Receipt:
        """A fresh signed statement of what this replica holds."""
        with self._lock:
            return Receipt.issue(self.identity, self._tick(), self._receipt_knowledge())

    def receipt_for(self, receiver: bytes, *stated: Knowledge | None) -> Receipt:
        """A fresh receipt restricted to what ``receiver`` needs (``offsync.plan.receipts``):
        its origin and ours, what it ``stated`` it holds (a pull request; a bundle's
        ranges), and what its own receipts said it holds."""
        with self._lock:
            if not self.bounded_receipts:  # the rule before issue 18 (benchmarks)
                return Receipt.issue(self.identity, self._tick(), self._receipt_knowledge())
            return Receipt.issue(self.identity, self._tick(), self._receipt_for(receiver, stated))

    def _receipt_for(self, receiver: bytes, stated: Sequence[Knowledge | None]) -> Knowledge:
        row = self.store.peer(receiver)
        heard = None if row is None else kept_knowledge(row[2])
        return self._bounded_receipt_knowledge(needs(receiver, self.id, heard, *stated))

    def record_receipt(self, receipt: Receipt) -> bool:
        """Take in a peer's receipt heard outside a bundle; True if it told us something new.

        A live peer answers an upload (or ``GET /knowledge``) with its fresh receipt;
        ``offsync.sync`` hands those to this method (``Transport.receipts``) so delivery
        status moves as soon as the peer has the changes, not at the next pull. The
        receipt is verified (``SignatureError`` if it does not), kept if it is newer
        than the one held from its signer (what it states is added to what that
        signer's receipts said before: ``peer_knowledge``), and its claim on this site's
        seqs counted as for a receipt carried in a bundle (``seq_claims``).
        """
        receipt.verify()
        if receipt.replica == self.id:
            return False
        with self._lock, self._transaction():
            if self.store.shared:  # another worker may keep one of this signer's now
                self.store.lock_peers([receipt.replica])
            if not self._keep_receipt(receipt):
                return False
            st = self._st
            if claim_counts(receipt.replica, st.trust):
                for stream in _own_streams(receipt.knowledge, self.id):
                    claim = max(st.seqs(stream).claim, top_seq(receipt.knowledge, stream))
                    st = st.with_seqs(stream, claim=claim)
                self._put(st)
            return True

    def seq_claims(self) -> list[SeqClaim]:
        """Peers whose newest receipt claims some of this site's own seqs, highest first.

        While a counted claim is above ``sealed`` (above ``seq``: changes this site lost;
        between the two: changes its backup held unsealed that it sealed since), writes
        raise ``SequenceReuseError`` and nothing is sealed. That clears once the claimed
        changes come back from a peer. A claim that is false (a hostile or broken
        peer) clears in trust mode when the authority revokes the claimant's key; in open
        mode the remedy is moving this site to a new key (docs/threat-model.md).
        """
        with self._lock:
            return self._seq_claims(None)

    def _seq_claims(self, only: Stream | None) -> list[SeqClaim]:
        """``seq_claims`` of every own stream, or of ``only``."""
        trust = self._st.trust
        claims = [
            SeqClaim(p, seq, claim_counts(p, trust), stream)
            for p, k in self._peer_knowledge()
            if p != self.id
            for stream in ([only] if only is not None else _own_streams(k, self.id))
            if (seq := top_seq(k, stream))
        ]
        return sorted(claims, key=lambda c: (-c.seq, c.peer, c.stream or ()))

    def _peer_knowledge(self) -> list[tuple[bytes, Knowledge]]:
        """Each peer's newest knowledge, as its receipt said."""
        return [(p, kept_knowledge(k)) for p, _, k, _ in self.store.peers()]

    def _with_counted_claims(self, st: ReplicaState) -> ReplicaState:
        """``st`` with each own stream's claim as the peers' receipts kept say."""
        peers = self._peer_knowledge()
        streams = {s for _, k in peers for s in _own_streams(k, self.id)} | set(st.own)
        for stream in sorted(streams):
            claim = counted_claim(peers, stream, st.trust)
            if claim != st.seqs(stream).claim:
                st = st.with_seqs(stream, claim=claim)
        return st

    def has_unsealed(self) -> bool:
        """Whether own changes wait in the outbox, not yet sealed into segments."""
        return any(m.seq > m.sealed for m in self._st.own.values())

    # -- for the HTTP server ----------------------------------------------------------------

    def probe(self) -> None:
        """Check that the store answers (a cheap query on a connection of its own, so it
        never waits for this replica's lock); ``StorageError`` if it does not."""
        self.store.probe()

    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        """Record a single-use value (an HTTP challenge) as used until ``expires``; False
        if it was used already and has not expired by ``now`` (a replay). Atomic across
        every process sharing the store (``Store.record_nonce``); times in ms."""
        with self._lock:
            return self.store.record_nonce(nonce, expires, now)


def _own_streams(knowledge: Knowledge, me: bytes) -> list[Stream]:
    """The streams of origin ``me`` that ``knowledge`` names."""
    return [new_stream(me, p) for p in knowledge.partitions(me)]
