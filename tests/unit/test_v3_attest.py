"""Attestation tokens of version 2 (format 3 §14)."""

from __future__ import annotations

import importlib

import pytest

from offsync.change import DELETE, PUT, Change, canonical_fields
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
from offsync.identity import Identity
from offsync.knowledge import Knowledge
from offsync.receipt import Receipt
from offsync.scope import Partition, Stream
from offsync.trust import Certificate, Revocation, TrustStore

attest = importlib.import_module("offsync.attest")  # offsync.attest the name is the function

SITE = Identity(bytes(range(32)), "post")
CENTRE = Identity(b"\x42" * 32, "centre")
P = Partition("doses", "351901")
MS = 1_700_000_000_000


def change(seq: int = 4, op: int = PUT, fields: dict[str, object] | None = None) -> Change:
    return Change(
        SITE.public_key,
        seq,
        MS << 16,
        "doses",
        "3519010101900001/1",
        op,
        None if op == DELETE else canonical_fields(fields or {"vaccine": "CoronaVac"}),
        (),
        P.prefix,
    )


def test_issue_read_and_text() -> None:
    token = attest.issue_attestation(SITE, change())
    att = attest.read_attestation(token)
    assert (att.seq, att.prefix, att.partition, att.stream) == (
        4,
        "351901",
        P,
        Stream(SITE.public_key, P),
    )
    assert att.recorded_ms == MS and len(token) < 300
    assert att.matches({"vaccine": "CoronaVac"}) and not att.matches({"vaccine": "Pfizer"})
    text = attest.to_text(token)
    assert text.startswith("OFS2:") and attest.from_text(text) == token
    deleted = attest.read_attestation(attest.issue_attestation(SITE, change(op=DELETE)))
    assert deleted.fields_digest.hex() == "77eb611200eeb905fb512f4a66ae0930" and deleted.matches(
        None
    )


def test_only_own_unerased_changes_are_attested() -> None:
    with pytest.raises(UsageError):
        attest.issue_attestation(CENTRE, change())
    with pytest.raises(UsageError):
        attest.issue_attestation(SITE, change()._replace(fields=None))  # an erased put
    with pytest.raises(UsageError, match="1024"):
        attest.issue_attestation(SITE, change()._replace(key="351901" + "x" * 1000))


def test_delivered_looks_the_change_up_by_stream() -> None:
    token = attest.issue_attestation(SITE, change())
    stream = Stream(SITE.public_key, P)
    holds = Receipt.issue(CENTRE, 5, Knowledge.of(stream, 1, 4))
    assert attest.delivered(token, holds, centre=CENTRE.public_key)
    assert attest.delivered(token, holds.encode(), centre=CENTRE.public_key)
    # Another stream of the same origin with the same seq is not this change.
    other = Receipt.issue(
        CENTRE, 5, Knowledge.of(Stream(SITE.public_key, Partition("doses", "351902")), 1, 9)
    )
    assert not attest.delivered(token, other, centre=CENTRE.public_key)
    assert not attest.delivered(
        token, Receipt.issue(CENTRE, 5, Knowledge.of(stream, 1, 3)), centre=CENTRE.public_key
    )
    with pytest.raises(UnknownSignerError):
        attest.delivered(token, holds, centre=SITE.public_key)


def test_verify_with_a_trust_store() -> None:
    token = attest.issue_attestation(SITE, change())
    authority = Identity(b"\x01" * 32)
    cert = Certificate(SITE.public_key, collections=("doses",), prefixes=("3519",), valid_from=0)
    trust = TrustStore.from_records(
        [authority.public_key], [(f"cert/{SITE.public_key.hex()}", cert.to_fields())]
    )
    assert attest.verify_attestation(token, trust, fields={"vaccine": "CoronaVac"}).seq == 4
    with pytest.raises(SignatureError):
        attest.verify_attestation(token, trust, fields={"vaccine": "Pfizer"})
    cases = [
        (TrustStore.from_records([authority.public_key], []), UnknownSignerError),
        (
            TrustStore.from_records(
                [authority.public_key],
                [
                    (f"cert/{SITE.public_key.hex()}", cert.to_fields()),
                    (
                        f"revoke/{SITE.public_key.hex()}",
                        Revocation(SITE.public_key, effective_ms=0).to_fields(),
                    ),
                ],
            ),
            RevokedKeyError,
        ),
        (
            TrustStore.from_records(
                [authority.public_key],
                [
                    (
                        f"cert/{SITE.public_key.hex()}",
                        Certificate(SITE.public_key, valid_from=MS + 1).to_fields(),
                    )
                ],
            ),
            ExpiredCertificateError,
        ),
        (
            TrustStore.from_records(
                [authority.public_key],
                [
                    (
                        f"cert/{SITE.public_key.hex()}",
                        Certificate(SITE.public_key, prefixes=("36",)).to_fields(),
                    )
                ],
            ),
            ScopeError,
        ),
    ]
    for store, error in cases:
        with pytest.raises(error):
            attest.verify_attestation(token, store)
    assert attest.verify_attestation(token, None).origin == SITE.public_key


def test_texts_are_refused_unless_canonical() -> None:
    text = attest.to_text(attest.issue_attestation(SITE, change()))
    for bad in (text + "=", "OFS1:" + text[5:], text[:-1] + "!", 5):
        with pytest.raises(BundleFormatError):
            attest.from_text(bad)
    with pytest.raises(LimitExceededError):
        attest.from_text("OFS2:" + "A" * 2100)
