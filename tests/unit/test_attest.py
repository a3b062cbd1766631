"""Offline attestation tokens: small, verifiable with the trust store, provable later."""

from __future__ import annotations

import pytest

from offsync import Identity, Replica
from offsync.attest import (
    MAX_TOKEN_BYTES,
    attest,
    delivered,
    from_text,
    read_attestation,
    to_text,
    verify_attestation,
)
from offsync.errors import (
    BundleFormatError,
    ExpiredCertificateError,
    LimitExceededError,
    RevokedKeyError,
    ScopeError,
    SignatureError,
    UnknownSignerError,
    UsageError,
)
from offsync.trust import TrustStore, issue_certificate, revoke

T0 = 1_700_000_000_000
DAY = 86_400_000
AUTH = Identity(bytes([1]) * 32, "authority")
POST = Identity(bytes([2]) * 32, "posyandu-kare")
CENTRE = Identity(bytes([9]) * 32, "centre")
NIK = "3519010101900001"
DOSE = {"vaccine": "MR", "dose": 1, "date": "2026-11-21", "batch": "B1234567"}


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


@pytest.fixture
def world() -> tuple[Replica, Replica, Replica]:
    auth = Replica.open(":memory:", identity=AUTH, wall=Wall(T0))
    issue_certificate(
        auth, POST, collections=["doses"], prefixes=["3519"], valid_until=T0 + 365 * DAY
    )
    post = Replica.open(":memory:", identity=POST, trust=[AUTH.public_key], wall=Wall(T0 + 1))
    send(auth, post)
    centre = Replica.open(":memory:", identity=CENTRE, trust=[AUTH.public_key], wall=Wall(T0))
    send(auth, centre)
    return auth, post, centre


def test_token_is_small_and_verifies_offline(world: tuple[Replica, Replica, Replica]) -> None:
    _, post, _ = world
    change = post.put("doses", NIK + "/1", DOSE)
    token = attest(post, "doses", NIK + "/1")
    assert len(token) < 300
    assert len(to_text(token)) < 300
    # The verifier has only the trust store (here: from any replica that synced _trust).
    trust = post.trust_store
    assert trust is not None
    att = verify_attestation(from_text(to_text(token)), trust, fields=DOSE)
    assert att.change_id == change
    assert (att.collection, att.key, att.recorded_ms) == ("doses", NIK + "/1", T0 + 1)
    with pytest.raises(SignatureError):
        verify_attestation(token, trust, fields={**DOSE, "dose": 2})
    assert verify_attestation(token, None).matches(DOSE)


def test_untrusted_revoked_expired_and_out_of_scope_tokens(
    world: tuple[Replica, Replica, Replica],
) -> None:
    auth, post, _ = world
    post.put("doses", NIK + "/1", DOSE)
    token = attest(post, "doses", NIK + "/1")
    with pytest.raises(UnknownSignerError):
        verify_attestation(token, TrustStore(frozenset([AUTH.public_key])))
    revoke(auth, POST, effective_ms=T0)
    revoked = TrustStore.from_records([AUTH.public_key], _trust_records(auth))
    with pytest.raises(RevokedKeyError):
        verify_attestation(token, revoked)
    expired = TrustStore.from_records(
        [AUTH.public_key],
        [
            (k, {**f, "valid_until": T0}) if k.startswith("cert/") else (k, f)
            for k, f in _trust_records(auth)
            if not k.startswith("revoke/")
        ],
    )
    with pytest.raises(ExpiredCertificateError):
        verify_attestation(token, expired)
    narrow = TrustStore.from_records(
        [AUTH.public_key],
        [
            (k, {**f, "prefixes": ["3520"]})
            for k, f in _trust_records(auth)
            if k.startswith("cert/")
        ],
    )
    with pytest.raises(ScopeError):
        verify_attestation(token, narrow)


def _trust_records(auth: Replica) -> list[tuple[str, dict[str, object]]]:
    return list(auth.items("_trust"))


def test_the_centres_receipt_proves_delivery(world: tuple[Replica, Replica, Replica]) -> None:
    _, post, centre = world
    district = Replica.open(":memory:", identity=Identity(bytes([5]) * 32))
    post.put("doses", NIK + "/1", DOSE)
    token = attest(post, "doses", NIK + "/1")
    assert not delivered(token, centre.receipt(), centre=CENTRE.public_key)
    send(post, district)
    send(district, centre)
    # The centre's receipt travels back through the district to the post.
    for bundle in centre.pack(district.knowledge(), always=True):
        district.apply(bundle)
    for bundle in district.pack(post.knowledge(), always=True):
        post.apply(bundle)
    receipt = post.receipts()[CENTRE.public_key]
    assert delivered(token, receipt, centre=CENTRE.public_key)
    assert delivered(token, receipt.encode(), centre=CENTRE.public_key)
    with pytest.raises(UnknownSignerError):
        delivered(token, receipt, centre=district.id)
    forged = type(receipt)(
        receipt.replica, receipt.created + 1, receipt.knowledge, receipt.signature
    )
    with pytest.raises(SignatureError):
        delivered(token, forged, centre=CENTRE.public_key)


def test_attest_only_own_changes(world: tuple[Replica, Replica, Replica]) -> None:
    _, post, centre = world
    with pytest.raises(UsageError):
        attest(post, "doses", NIK + "/9")
    post.put("doses", NIK + "/1", DOSE)
    send(post, centre)
    with pytest.raises(UsageError):
        attest(centre, "doses", NIK + "/1")


def test_damaged_tokens_are_refused(world: tuple[Replica, Replica, Replica]) -> None:
    _, post, _ = world
    post.put("doses", NIK + "/1", DOSE)
    token = attest(post, "doses", NIK + "/1")
    for i in range(len(token) * 8):
        damaged = bytearray(token)
        damaged[i >> 3] ^= 1 << (i & 7)
        with pytest.raises((SignatureError, BundleFormatError)):
            read_attestation(bytes(damaged))
    for n in range(len(token)):
        with pytest.raises(BundleFormatError):
            read_attestation(token[:n])
    with pytest.raises(LimitExceededError):
        read_attestation(bytes(MAX_TOKEN_BYTES + 1))
    with pytest.raises(BundleFormatError):
        from_text("OFS1:!!!")
