"""Re-examination, claims, merges, writes and quarantine bounds, with values alone."""

from __future__ import annotations

from typing import Any

import pytest

from offsync import Identity
from offsync.change import Change, ChangeId
from offsync.errors import ImmutableRecordError, NotAuthorisedError, SequenceReuseError, UsageError
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.plan.claims import claim_counts, counted_claim, cut_own, raised_claim, reuse_error
from offsync.plan.examine import candidates, changed_origins, fingerprint, reexamine_segment
from offsync.plan.merge import recompute, split, to_recompute
from offsync.plan.quarantine import is_unknown, plan_evictions
from offsync.plan.write import encode_write, encode_writes, plan_write
from offsync.policies import FirstWriterWins, LastWriterWins, MultiValue, Policy
from offsync.receipt import Receipt
from offsync.segindex import SegmentIndex
from offsync.status import APPLIED, CLOCK_AHEAD, FORK_AT_SAME_SEQS, Kind, Status
from offsync.trust import Revocation, TrustStore
from tests.helpers.plan import (
    AUTH,
    ME,
    OTHER,
    SITE,
    T0,
    certified,
    chain,
    change,
    entry,
    index,
    rules,
    seal,
    stream,
)

UNKNOWN = Status(Kind.TRUST, "unknown signer")


def revoked(site: bytes, after_seq: int) -> TrustStore:
    base = certified(SITE)
    records = [(f"cert/{k.hex()}", c.to_fields()) for k, c in base.certificates.items()] + [
        (f"revoke/{site.hex()}", Revocation(site, after_seq=after_seq).to_fields())
    ]
    return TrustStore.from_records([AUTH.public_key], records)


# -- re-examination -----------------------------------------------------------------------


def test_candidates_follow_the_rules_that_changed_and_the_clock_never_forks() -> None:
    idx = SegmentIndex().updated(
        add=[
            entry(seal(SITE, 1, 1), UNKNOWN),
            entry(seal(OTHER, 1, 1), CLOCK_AHEAD),
            entry(seal(ME, 1, 1), FORK_AT_SAME_SEQS),
            entry(seal(AUTH, 1, 1), APPLIED),
        ]
    )

    def picked(changed: set[bytes], full: bool) -> set[bytes]:
        return {s.origin for s, _, _ in candidates(idx, changed, full)}

    assert picked(set(), False) == {OTHER.public_key}  # the clock hold only
    assert picked({SITE.public_key}, False) == {SITE.public_key, OTHER.public_key}
    assert picked(set(), True) == {SITE.public_key, OTHER.public_key, AUTH.public_key}
    assert changed_origins(certified(SITE), certified()) == {SITE.public_key}
    assert changed_origins(None, certified(SITE)) == set()


def test_a_certificate_admits_held_changes_and_a_revocation_takes_them_back() -> None:
    changes = [change(SITE, seq) for seq in (1, 2, 3)]
    now = reexamine_segment(changes, applied=set(), rules=rules(certified(SITE)))
    assert (now.status, [c.seq for c in now.add], now.drop) == (APPLIED, [1, 2, 3], [])
    held = {c.id for c in changes}
    later = reexamine_segment(changes, held, rules(revoked(SITE.public_key, after_seq=1)))
    assert str(later.status) == "trust: key revoked"
    assert (later.add, [c.seq for c in later.drop]) == ([], [2, 3])


def test_a_clock_hold_says_when_to_look_again() -> None:
    future = [change(SITE, 1, ms=T0 + 10 * 86_400_000)]
    out = reexamine_segment(future, set(), rules(now=T0))
    assert (out.status, out.add, out.due) == (CLOCK_AHEAD, [], T0 + 9 * 86_400_000)


def test_the_fingerprint_changes_with_the_rules() -> None:
    prints = {
        fingerprint(None, {}),
        fingerprint(certified(), {}),
        fingerprint(certified(SITE), {}),
        fingerprint(None, {"residents": lambda k, f: None}),
    }
    assert len(prints) == 4
    assert fingerprint(certified(SITE), {}) == fingerprint(certified(SITE), {})


# -- claims -------------------------------------------------------------------------------


def test_whose_claims_count() -> None:
    trust = revoked(OTHER.public_key, 0)
    assert claim_counts(OTHER.public_key, None)  # open mode: everyone's
    assert claim_counts(AUTH.public_key, trust) and claim_counts(SITE.public_key, trust)
    assert not claim_counts(OTHER.public_key, trust)  # revoked
    assert not claim_counts(bytes(32), trust)  # unknown
    claims = [
        (SITE.public_key, Knowledge.of(stream(ME), 1, 5)),
        (OTHER.public_key, Knowledge.of(stream(ME), 1, 9)),
    ]
    assert counted_claim(claims, stream(ME), trust) == 5
    assert counted_claim(claims, stream(ME), None) == 9


def test_a_receipt_that_cuts_an_own_segment_names_it() -> None:
    idx = index(*chain(ME, 1, 3, 2))  # own 1..1, 2..4, 5..6

    def cut(*ivs: tuple[int, int], by: Identity = SITE, trust: TrustStore | None = None) -> int:
        knowledge = Knowledge({stream(ME): list(ivs)})
        return cut_own(idx, stream(ME), [Receipt.issue(by, 1, knowledge)], trust)

    assert cut((1, 6)) == cut((1, 4)) == cut((1, 1), (5, 6)) == 0  # whole segments
    assert cut((1, 2)) == 2  # ends inside 2..4: another cut there
    assert cut((1, 1), (3, 9)) == 2  # begins inside it
    assert cut((1, 5)) == 5 and cut((1, 2), (4, 5)) == 2  # the lowest
    assert cut((1, 2), by=OTHER, trust=certified(SITE)) == 0  # only counted claims
    assert cut_own(SegmentIndex(), stream(ME), [], None) == 0


def test_receipts_raise_the_claim_and_our_own_always_counts() -> None:
    theirs = Receipt.issue(OTHER, 1, Knowledge.of(stream(ME), 1, 7))
    ours = Receipt.issue(ME, 1, Knowledge.of(stream(ME), 1, 4))
    trust = certified(SITE)
    assert raised_claim(2, [theirs], stream(ME), trust) == 2  # unknown: does not count
    assert raised_claim(2, [theirs, ours], stream(ME), trust) == 4
    assert raised_claim(6, [ours], stream(ME), trust) == 6  # never lowered
    assert reuse_error(4, 4, []) is None
    error = reuse_error(7, 4, [OTHER.public_key])
    assert isinstance(error, SequenceReuseError)
    assert "seq 7" in str(error) and OTHER.public_key.hex()[:12] in str(error)


def test_a_site_writes_only_while_no_claim_is_above_its_sealed_seq() -> None:
    """Restored from a backup taken before it sealed, a site holds seqs 1..6 unsealed
    while a peer claims 1..4: it must get 1..4 back before it writes."""
    assert reuse_error(4, 6, [], sealed=4) is None
    assert reuse_error(4, 6, [], sealed=6) is None
    error = reuse_error(4, 6, [OTHER.public_key], sealed=0)
    assert isinstance(error, SequenceReuseError)
    assert "seq 4" in str(error) and "not sealed" in str(error)
    above = reuse_error(7, 6, [OTHER.public_key], sealed=2)
    assert above is not None and "at seq 6" in str(above)  # lost seqs: as before


# -- merges -------------------------------------------------------------------------------


def policy_of(policies: dict[str, Policy]) -> object:
    return lambda name: policies.get(name, LastWriterWins())


def test_a_backlog_of_new_records_takes_the_bulk_path_whole() -> None:
    changes = [change(SITE, seq) for seq in range(1, 5)]
    plan = split(changes, lambda name: LastWriterWins())
    assert (list(plan.firsts), list(plan.rest), list(plan.to_merge)) == (changes, [], [])
    assert to_recompute(plan, existed=[]) == []
    # The store said one record existed after all: it is merged, in the chunk's order.
    assert to_recompute(plan, existed=[("residents", "k3")]) == [("residents", "k3")]


class Custom(MultiValue):
    """A policy that does not take a record's one change as its state."""

    single_change_is_identity = False


def test_edits_and_custom_policies_records_are_recomputed() -> None:
    first = change(SITE, 1, "a")
    edit = change(SITE, 2, "a", parents=(first.id,))
    other = change(SITE, 3, "b")
    multi = change(SITE, 4, "m", collection="addresses")
    policies: dict[str, Policy] = {"residents": LastWriterWins(), "addresses": Custom()}
    plan = split([first, edit, other, multi], policies.__getitem__)
    assert list(plan.firsts) == [other]
    assert list(plan.rest) == [first, edit, multi]
    assert list(plan.to_merge) == [("residents", "a"), ("addresses", "m")]
    assert to_recompute(plan, existed=[("residents", "b")]) == [
        ("residents", "a"),
        ("residents", "b"),
        ("addresses", "m"),
    ]
    states = recompute(
        [("residents", "a"), ("residents", "gone")],
        {("residents", "a"): [first, edit]},
        policy_of({"addresses": MultiValue()}),  # type: ignore[arg-type]
    )
    assert states[0][2] is not None and states[0][2].heads == (edit.id,)
    assert states[1] == ("residents", "gone", None)  # no change held: cleared


# -- writes -------------------------------------------------------------------------------


def write(
    encoded: bytes | None,
    heads: tuple[ChangeId, ...] = (),
    *,
    immutable: bool = False,
    trust: TrustStore | None = None,
) -> Change:
    return plan_write(
        ME.public_key,
        8,
        99,
        "residents",
        "3519-1",
        encoded,
        heads=heads,
        visible=True,
        immutable=immutable,
        resolving=False,
        trust=trust,
        validators={},
    )


def test_a_write_names_the_heads_and_is_refused_where_peers_would_refuse_it() -> None:
    encoded = encode_write("residents", "3519-1", {"name": "Siti"}, Limits())
    heads = (ChangeId(SITE.public_key, 4),)
    c = write(encoded, heads)
    assert (c.seq, c.hlc, c.parents, c.fields) == (8, 99, heads, encoded)
    with pytest.raises(ImmutableRecordError):
        write(encoded, heads, immutable=FirstWriterWins().immutable)
    with pytest.raises(NotAuthorisedError, match="trust: unknown signer"):
        write(encoded, trust=certified(SITE))
    for bad in ("", "x" * 65):
        with pytest.raises(UsageError):
            encode_write(bad, "k", {}, Limits())
    with pytest.raises(UsageError, match="more than"):
        encode_write("residents", "k", {"photo": bytes(2_000_000)}, Limits())
    assert encode_write("residents", "k", None, Limits()) is None


# -- quarantine bounds ----------------------------------------------------------------------


def test_unknown_signers_are_judged_by_the_trust_store_and_never_this_site() -> None:
    trust = certified(SITE)
    assert is_unknown(OTHER.public_key, trust, ME.public_key)
    assert not is_unknown(SITE.public_key, trust, ME.public_key)
    assert not is_unknown(AUTH.public_key, trust, ME.public_key)
    assert not is_unknown(ME.public_key, trust, ME.public_key)
    assert not is_unknown(OTHER.public_key, None, ME.public_key)


def test_evictions_drop_the_oldest_unknown_data_beyond_the_bounds() -> None:
    trust = certified(SITE)
    idx = index(seal(SITE, 1, 1)).updated(
        add=[entry(seal(OTHER, i, 1, prev=bytes([i > 1]) * 32), UNKNOWN) for i in (1, 2, 3)]
    )
    size = idx[stream(OTHER)][0].size
    limits = Limits(max_unknown_signer_segments=2, max_unknown_signer_bytes=10 * size)
    plan = plan_evictions(idx, (), trust, ME.public_key, limits, new=[OTHER.public_key])
    assert plan.drop == [(stream(OTHER), 1)] and plan.order == (OTHER.public_key,)
    # A signer whose data is all dropped leaves the order; certified ones are never in it.
    none = Limits(max_unknown_signer_segments=0)
    plan = plan_evictions(idx, (OTHER.public_key,), trust, ME.public_key, none)
    assert len(plan.drop) == 3 and plan.order == ()
    # Certified later: nothing of it is a candidate any more.
    plan = plan_evictions(idx, (OTHER.public_key,), certified(SITE, OTHER), ME.public_key, none)
    assert (plan.drop, plan.order) == ([], ())


@pytest.mark.parametrize(
    ("collection", "key", "fields"),
    [
        ("residents", "\ud800", {"name": "x"}),
        ("\udc00", "3519", {"name": "x"}),
        ("residents", "3519", {"name": "\ud800"}),
        ("residents", "3519", {"\ud800": 1}),
    ],
)
def test_lone_surrogates_are_refused_as_usage_errors(
    collection: str, key: str, fields: dict[str, Any]
) -> None:
    """Not text any peer could read; they used to escape as UnicodeEncodeError."""
    with pytest.raises(UsageError):
        encode_write(collection, key, fields, DEFAULT_LIMITS)
    with pytest.raises(UsageError):
        encode_writes(collection, [("ok", {"a": 1}), (key, fields)], DEFAULT_LIMITS)
