"""Segment statuses: kinds with a detail, whose text is what stores keep and users see."""

from __future__ import annotations

import pytest

from offsync import Identity
from offsync.change import PUT, Change
from offsync.encoding import canonical_fields
from offsync.errors import (
    ExpiredCertificateError,
    ForkError,
    RemoteDataError,
    RevokedKeyError,
    SchemaVersionError,
    ScopeError,
    StorageError,
    UnknownSignerError,
)
from offsync.status import APPLIED, CLOCK_AHEAD, FORK_AT_SAME_SEQS, Kind, Status, error_class
from offsync.trust import Certificate, Revocation, TrustStore, refusal, verdict

#: Every reason text offsync has ever stored or shown, byte for byte.
TEXTS = [
    "applied",
    "fork: a different segment with the same seqs is held",
    "fork: first segment names a predecessor",
    "fork: overlaps a different segment of the same origin",
    "fork: reuses seqs this site has issued",
    "fork: does not chain to the previous segment",
    "fork: the next segment does not chain to it",
    "clock: timestamp too far in the future",
    "trust: not an authority",
    "trust: unknown signer",
    "trust: key revoked",
    "trust: key replaced by a newer key",
    "validity: certificate not yet valid",
    "validity: certificate expired",
    "scope: collection 'doses' not allowed for this key",
    "scope: key outside the allowed prefixes",
    "validator: residents raised KeyError",
    "validator: residents: a NIK has 16 digits",
    "validator: residents refused",
    "schema: version 5 of 'residents' is newer than this replica's 3",
]


@pytest.mark.parametrize("text", TEXTS)
def test_every_reason_text_parses_to_a_kind_and_back_to_the_same_bytes(text: str) -> None:
    status = Status.parse(text)
    assert str(status) == text
    assert status.kind.value == text.split(":")[0]
    assert Status.parse(str(status)) == status


def test_kinds_say_what_happens_to_the_changes() -> None:
    assert APPLIED.applied and not APPLIED.whole and str(APPLIED) == "applied"
    assert CLOCK_AHEAD.whole and FORK_AT_SAME_SEQS.whole
    for kind in (Kind.TRUST, Kind.VALIDITY, Kind.SCOPE, Kind.VALIDATOR, Kind.SCHEMA):
        status = Status(kind, "x")
        assert not status.whole and not status.applied


@pytest.mark.parametrize("text", ["", "applied: x", "fork: ", "fork", "partition: rule", "Fork: x"])
def test_a_status_this_offsync_does_not_know_is_a_storage_error(text: str) -> None:
    with pytest.raises(StorageError, match="status"):
        Status.parse(text)


def test_a_status_has_a_detail_exactly_when_it_is_not_applied() -> None:
    with pytest.raises(ValueError):
        Status(Kind.APPLIED, "why")
    with pytest.raises(ValueError):
        Status(Kind.TRUST)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("trust: unknown signer", UnknownSignerError),
        ("trust: key revoked", RevokedKeyError),
        ("trust: key replaced by a newer key", RevokedKeyError),
        ("trust: not an authority", ScopeError),
        ("validity: certificate expired", ExpiredCertificateError),
        ("validity: certificate not yet valid", ExpiredCertificateError),
        ("scope: key outside the allowed prefixes", ScopeError),
        ("fork: reuses seqs this site has issued", ForkError),
        ("clock: timestamp too far in the future", RemoteDataError),
        ("validator: residents refused", RemoteDataError),
        ("schema: version 5 of 'residents' is newer than this replica's 3", SchemaVersionError),
    ],
)
def test_one_table_maps_statuses_to_errors(text: str, error: type[RemoteDataError]) -> None:
    assert error_class(Status.parse(text)) is error


def test_applied_maps_to_no_error() -> None:
    assert error_class(APPLIED) is None


def test_trust_verdicts_are_statuses_and_refusal_is_their_text() -> None:
    site = Identity(bytes([7]) * 32)
    authority = Identity(bytes([8]) * 32)
    cert = Certificate(site.public_key, prefixes=("3519",), valid_from=1000, valid_until=5000)
    trust = TrustStore.from_records(
        [authority.public_key],
        [(f"cert/{site.public_key.hex()}", cert.to_fields())],
    )

    def change(key: str, ms: int, collection: str = "residents") -> Change:
        return Change(
            site.public_key, 1, ms << 16, collection, key, PUT, canonical_fields({"n": 1})
        )

    cases = {
        change("3519", 2000): None,
        change("3520", 2000): "scope: key outside the allowed prefixes",
        change("3519", 500): "validity: certificate not yet valid",
        change("3519", 6000): "validity: certificate expired",
        change("3519", 2000, "_trust"): "trust: not an authority",
    }
    for c, text in cases.items():
        status = verdict(c, trust)
        assert (None if status is None else str(status)) == text == refusal(c, trust)
    revoked = TrustStore.from_records(
        [authority.public_key],
        [
            (f"cert/{site.public_key.hex()}", cert.to_fields()),
            (f"revoke/{site.public_key.hex()}", Revocation(site.public_key, 1500).to_fields()),
        ],
    )
    status = verdict(change("3519", 2000), revoked)
    assert status is not None and status.kind is Kind.TRUST and status.detail == "key revoked"
    assert error_class(status) is RevokedKeyError
