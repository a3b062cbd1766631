"""Trust store: certificates, scope, validity, rotation, revocation, validators.

Every refusal here is a quarantine with a specific reason (listed by
``Replica.quarantined_changes``), never an applied change and never a silent drop.
"""

from __future__ import annotations

from typing import Any

import pytest

from offsync import Identity, Knowledge, Replica
from offsync.errors import NotAuthorisedError
from offsync.scope import Partition, Stream
from offsync.trust import (
    TRUST_COLLECTION,
    TrustStore,
    issue_certificate,
    revoke,
)
from tests.helpers.trust import (
    AUTH,
    DAY,
    SARADAN,
    STRANGER,
    T0,
    Wall,
    certifying_authority,
    ident,
    reasons,
    replica,
    send,
)

RESIDENTS = Partition("residents")  # every collection is one partition by default


@pytest.fixture
def authority() -> Replica:
    return certifying_authority()


def test_certified_site_writes_within_scope(authority: Replica) -> None:
    site = replica(SARADAN)
    send(authority, site)
    site.put("residents", "3519010101900001", {"name": "Siti"})
    centre = replica(ident(9, "centre"))
    send(authority, centre)
    send(site, centre)
    assert centre.get("residents", "3519010101900001") == {"name": "Siti"}
    assert centre.quarantined() == []


def test_unknown_signer_is_quarantined_then_unlocked_by_a_late_certificate(
    authority: Replica,
) -> None:
    writer = replica(SARADAN, trust=False)  # an open-mode writer: not checked locally
    writer.put("residents", "3519010101900001", {"name": "Siti"})
    late = replica(ident(9))
    send(writer, late)
    assert late.get("residents", "3519010101900001") is None
    assert reasons(late) == ["trust: unknown signer"]
    assert late.quarantined()[0].reason == "trust: unknown signer"
    unlocked = send(authority, late)
    assert unlocked >= 1
    assert late.get("residents", "3519010101900001") == {"name": "Siti"}
    assert late.quarantined() == []
    early = replica(ident(10))
    send(authority, early)
    send(writer, early)
    assert early.state_digest() == late.state_digest()


def test_scope_is_per_change(authority: Replica) -> None:
    writer = replica(SARADAN, trust=False)
    with writer.batch():
        writer.put("residents", "3519000000000001", {"name": "in"})
        writer.put("residents", "3520000000000001", {"name": "other region"})
        writer.put("doses", "3519000000000001/1", {"vaccine": "x"})
    centre = replica(ident(9))
    send(authority, centre)
    send(writer, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "in"}
    assert centre.get("residents", "3520000000000001") is None
    assert centre.get("doses", "3519000000000001/1") is None
    assert sorted(reasons(centre)) == [
        "scope: collection 'doses' not allowed for this key",
        "scope: key outside the allowed prefixes",
    ]
    # Each segment (one per partition) is listed once, with its first refusal as its reason.
    assert sorted(q.reason for q in centre.quarantined()) == [
        "scope: collection 'doses' not allowed for this key",
        "scope: key outside the allowed prefixes",
    ]


def test_local_writes_outside_the_certificate_are_refused(authority: Replica) -> None:
    site = replica(SARADAN)
    send(authority, site)
    with pytest.raises(NotAuthorisedError) as info:
        site.put("residents", "3520999999999999", {"name": "Budi"})
    assert "3520999999999999" not in str(info.value)
    assert "Budi" not in str(info.value)
    assert site.seq == 0
    uncertified = replica(STRANGER)
    with pytest.raises(NotAuthorisedError, match="unknown signer"):
        uncertified.put("residents", "1", {"a": 1})
    with pytest.raises(NotAuthorisedError, match="not an authority"):
        site.put(TRUST_COLLECTION, "cert/" + STRANGER.public_key.hex(), {"type": "cert"})


def test_only_an_authority_writes_trust_records(authority: Replica) -> None:
    forger = replica(STRANGER, trust=False)
    issue_certificate(forger, STRANGER, collections=["*"])
    forger.put("residents", "3519000000000009", {"name": "forged"})
    centre = replica(ident(9))
    send(authority, centre)
    send(forger, centre)
    assert sorted(reasons(centre)) == ["trust: not an authority", "trust: unknown signer"]
    assert STRANGER.public_key not in (centre.trust_store or TrustStore()).certificates
    assert centre.get("residents", "3519000000000009") is None


def test_expired_and_not_yet_valid_certificates() -> None:
    auth = replica(AUTH)
    issue_certificate(auth, SARADAN, valid_from=T0, valid_until=T0 + DAY)
    wall = Wall(T0 - DAY)
    writer = replica(SARADAN, trust=False, wall=wall)
    writer.put("residents", "early", {"v": 1})
    wall.ms = T0 + 1
    writer.put("residents", "inside", {"v": 2})
    wall.ms = T0 + 2 * DAY
    writer.put("residents", "late", {"v": 3})
    centre = replica(ident(9))
    send(auth, centre)
    send(writer, centre)
    assert [(q.key, q.reason) for q in centre.quarantined_changes()] == [
        ("early", "validity: certificate not yet valid"),
        ("late", "validity: certificate expired"),
    ]
    assert centre.get("residents", "inside") == {"v": 2}
    # Renewal unlocks the late change (re-issuing replaces the certificate).
    issue_certificate(auth, SARADAN, valid_from=T0, valid_until=T0 + 10 * DAY)
    send(auth, centre)
    assert centre.get("residents", "late") == {"v": 3}


def test_revocation_keeps_earlier_changes_and_takes_back_later_ones(authority: Replica) -> None:
    wall = Wall()
    writer = replica(SARADAN, trust=False, wall=wall)
    writer.put("residents", "3519000000000001", {"name": "before"})
    wall.ms = T0 + 1000
    writer.put("residents", "3519000000000002", {"name": "after"})
    writer.put("residents", "3519000000000001", {"name": "overwritten after"})
    # Data first, then the revocation: the later changes are taken back.
    centre = replica(ident(9))
    send(authority, centre)
    send(writer, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "overwritten after"}
    revoke(authority, SARADAN, effective_ms=T0 + 500, reason="laptop stolen")
    send(authority, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "before"}
    assert centre.get("residents", "3519000000000002") is None
    assert reasons(centre) == ["trust: key revoked"] * 2
    # Revocation first, then the data: the same state.
    other = replica(ident(10))
    send(authority, other)
    send(writer, other)
    assert other.state_digest() == centre.state_digest()
    assert other.quarantined_changes() == centre.quarantined_changes()


def test_revocation_by_seq_cannot_be_backdated(authority: Replica) -> None:
    """A thief with the key can stamp any time, but not reuse the seqs the centre holds."""
    wall = Wall()
    writer = replica(SARADAN, trust=False, wall=wall)
    writer.put("residents", "3519000000000001", {"name": "honest"})
    centre = replica(ident(9))
    send(authority, centre)
    send(writer, centre)
    residents = Stream(SARADAN.public_key, Partition("residents"))
    revoke(authority, SARADAN, after_seq=centre.knowledge().max_seq(residents))
    send(authority, centre)
    wall.ms = T0 - 10 * DAY  # the thief backdates
    writer.put("residents", "3519000000000002", {"name": "backdated"})
    send(writer, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "honest"}
    assert centre.get("residents", "3519000000000002") is None
    assert reasons(centre) == ["trust: key revoked"]


def test_rotation_keeps_old_changes_and_refuses_later_ones(authority: Replica) -> None:
    new_key = ident(5, "saradan-2")
    base = T0 + 30 * DAY
    wall = Wall(base)
    old = replica(SARADAN, trust=False, wall=wall)
    old.put("residents", "3519000000000001", {"name": "by old key"})
    issue_certificate(
        authority,
        new_key,
        collections=["residents"],
        prefixes=["3519"],
        valid_from=base + 1000,
        replaces=SARADAN,
    )
    wall.ms = base + 2000
    old.put("residents", "3519000000000002", {"name": "old key after rotation"})
    new = replica(new_key, wall=Wall(base + 3000))
    send(authority, new)
    new.put("residents", "3519000000000003", {"name": "by new key"})
    centre = replica(ident(9))
    for src in (authority, old, new):
        send(src, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "by old key"}
    assert centre.get("residents", "3519000000000003") == {"name": "by new key"}
    assert centre.get("residents", "3519000000000002") is None
    assert reasons(centre) == ["trust: key replaced by a newer key"]


def test_validators_refuse_without_leaking_values() -> None:
    def nik(key: str, fields: dict[str, Any] | None) -> bool | str | None:
        if len(key) != 16 or not key.isdigit():
            return "key is not a 16-digit NIK"
        if fields is not None and "name" not in fields:
            raise KeyError(f"no name for {key}")  # the message would leak the key
        return None

    writer = replica(SARADAN, trust=False)
    writer.put("residents", "3519000000000001", {"name": "ok"})
    writer.put("residents", "NOT-A-NIK", {"name": "x"})
    writer.put("residents", "3519000000000002", {"village": "Kare"})
    centre = replica(ident(9), trust=False, validators={"residents": nik})
    send(writer, centre)
    got = [(q.key, q.reason) for q in centre.quarantined_changes()]
    assert got == [
        ("NOT-A-NIK", "validator: residents: key is not a 16-digit NIK"),
        ("3519000000000002", "validator: residents raised KeyError"),
    ]
    assert centre.get("residents", "3519000000000001") == {"name": "ok"}
    with pytest.raises(NotAuthorisedError) as info:
        centre.put("residents", "3519000000000003", {"village": "Secret"})
    assert "Secret" not in str(info.value) and "3519000000000003" not in str(info.value)


def test_open_mode_accepts_every_validly_signed_origin() -> None:
    writer = replica(STRANGER, trust=False)
    writer.put("anything", "k", {"v": 1})
    centre = replica(ident(9), trust=False)
    send(writer, centre)
    assert centre.get("anything", "k") == {"v": 1}
    assert centre.trust_store is None


def test_relays_forward_what_they_hold_in_quarantine(authority: Replica) -> None:
    writer = replica(SARADAN, trust=False)
    writer.put("residents", "3519000000000001", {"name": "Siti"})
    relay = replica(ident(8))  # has no certificates: holds the data in quarantine
    send(writer, relay)
    assert reasons(relay) == ["trust: unknown signer"]
    assert relay.knowledge().contains(Stream(SARADAN.public_key, Partition("residents")), 1)
    centre = replica(ident(9))
    send(authority, centre)
    send(relay, centre)
    assert centre.get("residents", "3519000000000001") == {"name": "Siti"}


def test_malformed_trust_records_are_ignored_and_listed(authority: Replica) -> None:
    authority.put(TRUST_COLLECTION, "cert/" + STRANGER.public_key.hex(), {"type": "cert"})
    authority.put(TRUST_COLLECTION, "note/1", {"text": "hello"})
    centre = replica(ident(9))
    send(authority, centre)
    store = centre.trust_store
    assert store is not None
    assert STRANGER.public_key not in store.certificates
    assert len(store.problems) == 2
    assert SARADAN.public_key in store.certificates


def test_knowledge_counts_quarantined_changes(authority: Replica) -> None:
    writer = replica(STRANGER, trust=False)
    writer.put("residents", "1", {"a": 1})
    centre = replica(ident(9))
    send(writer, centre)
    assert centre.knowledge() == Knowledge.of(Stream(STRANGER.public_key, RESIDENTS), 1, 1)
    assert writer.pack(centre.knowledge()) == []


def test_the_trust_collection_is_always_last_writer_wins() -> None:
    from offsync import Replica, policies
    from offsync.errors import UsageError

    with pytest.raises(UsageError, match="always last-writer-wins"):
        Replica.open(
            ":memory:",
            identity=Identity(b"\x09" * 32),
            policies={"_trust": policies.MultiValue()},
        )
    rep = Replica.open(
        ":memory:", identity=Identity(b"\x09" * 32), default_policy=policies.MultiValue()
    )
    assert isinstance(rep.policy("_trust"), policies.LastWriterWins)
