"""offsync.plan.receipts: what a receiver needs, the reader's union, what is passed on."""

from __future__ import annotations

from offsync import Identity, Knowledge
from offsync.plan.receipts import (
    OTHERS_BYTES,
    HeardReceipts,
    forward_budget,
    heard_union,
    kept_knowledge,
    needs,
    passed_on,
    restricted,
)
from offsync.receipt import Receipt
from offsync.scope import Partition, Stream

A, B, C, D = (bytes([i]) * 32 for i in (1, 2, 3, 4))
P = Partition("residents")


def K(by_origin: dict[bytes, list[tuple[int, int]]]) -> Knowledge:
    """Knowledge of each origin's one stream (of partition ``P``)."""
    return Knowledge({Stream(o, P): ivs for o, ivs in by_origin.items()})


def K1(origin: bytes, first: int, last: int) -> Knowledge:
    return K({origin: [(first, last)]})


def test_needs_are_both_keys_and_every_origin_stated() -> None:
    got = needs(A, B, K1(C, 1, 2), None, K1(D, 5, 5))
    assert got == {A, B, C, D}
    assert needs(A, B) == {A, B}


def test_restricted_keeps_only_the_named_origins_whole() -> None:
    held = K({A: [(1, 3), (7, 9)], B: [(1, 1)], C: [(2, 4)]})
    assert restricted(held, {A, D}) == K({A: [(1, 3), (7, 9)]})
    assert restricted(held, frozenset({A, B, C, D})) == held
    assert list(restricted(held, [C, A]).origins()) == [A, C], "sorted"


def test_the_union_grows_and_a_restore_is_taken_at_its_word() -> None:
    before = K({A: [(1, 5)], B: [(1, 2)]})
    assert heard_union(A, before, K({A: [(1, 6)]})) == K({A: [(1, 6)], B: [(1, 2)]}), (
        "a narrower newer receipt adds, it takes nothing away"
    )
    shrunk = K({A: [(1, 3)]})
    assert heard_union(A, before, shrunk) == shrunk, "less of a named origin: restored"
    silent = K({B: [(1, 2)]})
    assert heard_union(A, before, silent) == silent, "its own origin no longer named"
    assert heard_union(C, before, silent) == before, "a site without own changes"


def test_the_signers_own_word_to_us_is_taken_as_it_is() -> None:
    """A receipt its signer sent us itself names every origin it holds of those it
    knows we hold: one it no longer names (B, lost in a restore) leaves the union."""
    before = K({A: [(1, 5)], B: [(1, 2)]})
    word = K({A: [(1, 5)]})
    assert heard_union(A, before, word) == before, "passed on: it only adds"
    assert heard_union(A, before, word, direct=True) == word


def test_kept_knowledge_reads_what_to_bytes_wrote() -> None:
    k = K({A: [(1, 3), (7, 9)], C: [(2, 2)]})
    assert kept_knowledge(k.to_bytes()) == k


def _receipt(who: Identity, created: int, k: Knowledge) -> Receipt:
    return Receipt.issue(who, created, k)


def test_receipts_passed_on_concern_the_receiver_and_come_in_order() -> None:
    centre, relay, other, site = (Identity.generate(label=x) for x in "crox")
    s = site.public_key
    heard = HeardReceipts()
    said = {
        centre: K({s: [(1, 9)], relay.public_key: [(1, 2)], A: [(1, 1)]}),
        relay: K({s: [(1, 4)], relay.public_key: [(1, 2)]}),
        other: K({other.public_key: [(1, 5)]}),  # says nothing about anyone else
        site: K({s: [(1, 12)]}),  # the site's own, heard back
    }
    for n, (who, k) in enumerate(said.items()):
        r = _receipt(who, 10 + n, k)
        heard.put_kept(who.public_key, r.created, r.encode())
    wanted = needs(s, B, K({s: [(1, 12)], A: [(1, 1)], other.public_key: [(1, 5)]}))
    rows = heard.candidates(s, B, wanted, receiver_top=9)
    # About the site's own changes first, highest seq first; its own receipt last,
    # since it states seqs the sender does not hold; the self-only receipt never.
    assert [r[0] for r in rows] == [centre.public_key, relay.public_key, s]
    assert [r[3] for r in rows] == [True, True, True]
    assert heard.candidates(s, B, wanted, receiver_top=12)[-1][0] != s
    told = {centre.public_key: 10}
    assert [r[0] for r in heard.candidates(s, B, wanted, told, 12)] == [relay.public_key]
    # An unknown receiver: everything heard, newest first.
    assert len(heard.candidates(None, B, None)) == 4


def test_the_budget_bounds_what_is_passed_on() -> None:
    big = b"x" * (OTHERS_BYTES // 2 + 1)
    rows = [(A, 1, big, False), (B, 1, big, False), (C, 1, b"y" * 10, True), (D, 1, big, True)]
    got = passed_on(rows, OTHERS_BYTES * 2)
    assert [r[0] for r in got] == [A, C, D], "one of the two about others fits beside"
    assert forward_budget(4 << 20, 16 << 20, 4 << 20, 0) == 0
    assert forward_budget(4 << 20, 1 << 20, 1000, 100) == (1 << 20) // 4
