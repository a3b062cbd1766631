"""The sans-IO rules of receipts bounded by the receiver in format 3 (spec §8.2):
subject receipts, whom a relay relays for, and what a signer's own word replaces."""

from __future__ import annotations

from offsync.knowledge import Knowledge
from offsync.plan.receipts import (
    SUBJECT_ISSUERS,
    Subject,
    heard_union,
    kept_subjects,
    outside,
    relays_closure,
    subject_of,
    take_subject,
    told_digest,
)
from offsync.scope import Partition, Scope, Stream

A, B, C, D, ME = (bytes([i]) * 32 for i in (1, 2, 3, 4, 9))
P = Partition("residents", "35")
Q = Partition("residents", "36")


def _k(*streams: tuple[bytes, Partition, int]) -> Knowledge:
    return Knowledge({Stream(o, p): [(1, n)] for o, p, n in streams})


def test_a_subject_receipt_states_one_origin_other_than_its_issuer() -> None:
    assert subject_of(A, _k((B, P, 3))) == B
    assert subject_of(A, _k((B, P, 3), (B, Q, 1))) == B, "all of one site's streams"
    assert subject_of(A, _k((A, P, 3))) is None, "a site's word on itself"
    assert subject_of(A, _k((B, P, 3), (C, P, 1))) is None, "two subjects"
    assert subject_of(A, Knowledge()) is None


def test_kept_subjects_are_the_newest_per_issuer_newest_first() -> None:
    kept = take_subject(None, Subject(A, 5, b"a5"))
    assert kept is not None
    assert take_subject(kept, Subject(A, 4, b"a4")) is None, "older: nothing changes"
    assert take_subject(kept, Subject(A, 5, b"a5")) is None, "the same: nothing changes"
    kept = take_subject(kept, Subject(B, 7, b"b7"))
    assert kept is not None
    kept = take_subject(kept, Subject(A, 9, b"a9"))
    assert kept is not None
    assert kept_subjects(kept) == [Subject(A, 9, b"a9"), Subject(B, 7, b"b7")]
    for i, issuer in enumerate((C, D, ME)):
        kept = take_subject(kept, Subject(issuer, 10 + i, b"x")) or kept
    held = kept_subjects(kept)
    assert len(held) == SUBJECT_ISSUERS
    assert B not in {s.issuer for s in held}, "the oldest issuer goes first"


def test_a_relay_relays_for_the_sites_it_names_and_those_behind_them() -> None:
    declared = {A: (C, D), B: (ME,)}
    assert relays_closure([A, B], declared, ME, 4096) == (A, B, C, D), "never itself"
    assert relays_closure([B], {B: (C,), C: (D,)}, ME, 4096) == (B, C), "one level"
    assert relays_closure([A, B], declared, ME, 2) == (A, B), "at most max_relays_for"
    assert relays_closure([], declared, ME, 4096) == ()


def test_outside_is_what_a_direct_receipt_says_nothing_about() -> None:
    before = _k((ME, P, 1), (A, P, 2), (B, P, 3), (B, Q, 3), (C, Q, 4))
    assert outside(before, [ME, A]) == _k((B, P, 3), (B, Q, 3), (C, Q, 4))
    scope = Scope({"residents": ["35"]})
    assert outside(before, [ME, A], scope) == _k((B, Q, 3), (C, Q, 4))
    assert outside(before, [ME, A], scope, _k((C, Q, 1))) == _k((B, Q, 3))


def test_a_direct_receipt_replaces_the_union_only_where_it_is_whole() -> None:
    before = _k((ME, P, 5), (A, P, 2), (C, Q, 4))
    stated = _k((ME, P, 3))  # restored: it holds less of our stream, names nothing else
    got = heard_union(B, before, stated, direct=True, domain=([ME], None, None))
    assert got == _k((ME, P, 3), (A, P, 2), (C, Q, 4)), "outside the domain: kept"
    # A stream we told the signer of is in the domain: no longer named, not held.
    got = heard_union(B, before, stated, direct=True, domain=([ME], None, _k((A, P, 1))))
    assert got == _k((ME, P, 3), (C, Q, 4))
    assert heard_union(B, before, stated, direct=True) == stated, "format 2's rule"


def test_told_digest_names_issuer_and_statement() -> None:
    k = _k((A, P, 2)).to_bytes()
    assert told_digest(B, k) == told_digest(B, k)
    assert told_digest(B, k) != told_digest(C, k)
    assert told_digest(B, k) != told_digest(B, _k((A, P, 3)).to_bytes())


def test_a_direct_receipt_is_whole_about_its_signers_own_streams() -> None:
    """A site restored from a backup states less of its own stream than it stated
    before: that is taken at its word, so its peer sends it back what it lost (the
    mailbox restore of docs/operations.md), whatever else the domain holds."""
    before = _k((B, P, 2), (A, P, 2))
    stated = _k((B, P, 1))  # B, restored, holds its own seq 1 only
    got = heard_union(B, before, stated, direct=True, domain=([ME], None, None))
    assert got == _k((B, P, 1), (A, P, 2))


def test_a_direct_receipt_naming_none_of_its_signers_streams_holds_none() -> None:
    """Restored from a backup taken before it sealed, a site holds its own changes
    unsealed and states none of its own stream: its peer must send them back."""
    before = _k((B, P, 2), (A, P, 2))
    got = heard_union(B, before, _k((A, P, 2)), direct=True, domain=([ME], None, None))
    assert got == _k((A, P, 2))
