"""HLC values on the wire are below 2^63 (docs/spec-v3.md §3).

Stores keep HLCs (a change's ``hlc``, a receipt's ``created``) in signed 64-bit
integer columns, so a larger value, which any key can sign, must be refused by the
decoders as ``BundleFormatError`` before it reaches a store, and leave the store as it
was. 2^63 - 1 is still a valid HLC.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from offsync import Identity, Knowledge, Receipt, Replica
from offsync.attest import issue_attestation, read_attestation
from offsync.bundle import build_bundle, read_header
from offsync.change import PUT, Change
from offsync.clock import MAX_HLC, HybridClock
from offsync.columns import decode_block, encode_block
from offsync.encoding import packb
from offsync.errors import BundleFormatError
from offsync.scope import Partition, Stream
from offsync.segment import NO_PREVIOUS, Segment
from offsync.trust import (
    Certificate,
    Revocation,
    TrustStore,
    certificate_fields,
    revocation_fields,
)

T0 = 1_700_000_000_000
TOO_BIG = 1 << 63
SENDER = Identity(bytes([21]) * 32, "sender")
OTHER = Identity(bytes([22]) * 32, "other")
CENTRE = Identity(bytes([23]) * 32, "centre")
RESIDENTS = Partition("residents")
SECRET = bytes(32)


def of(identity: Identity, first: int, last: int) -> Knowledge:
    """Knowledge of seqs ``first..last`` of ``identity``'s residents stream."""
    return Knowledge({Stream(identity.public_key, RESIDENTS): [(first, last)]})


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> None:
    """An encoder without the sealing checks: a hostile origin signs what it likes (the
    format-3 encoder refuses out-of-range HLCs itself, so the decoders are tested with
    bytes only a hostile encoder makes)."""
    monkeypatch.setattr("offsync.columns._check_for_sealing", lambda *args: None)


def decode_changes(block: bytes, origin: bytes, first_seq: int) -> list[Change]:
    return decode_block(block, origin, RESIDENTS, first_seq).changes


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def centre(path: Path) -> Replica:
    """A real SQLite replica that already holds a record, so 'unchanged' means something."""
    rep = Replica.open(str(path / "centre.sqlite"), identity=CENTRE, wall=Wall(T0))
    rep.put("residents", "3519000000000001", {"name": "already here"})
    return rep


def change(hlc: int, seq: int = 1) -> Change:
    return Change(
        SENDER.public_key, seq, hlc, "residents", "3519000000000002", PUT, packb({"name": "x"})
    )


def columns(*hlcs: int) -> bytes:
    """The encoded changes (columns, uncompressed) of one change per HLC: on the wire an
    HLC is a delta from the one before, so each value is checked after summing."""
    return encode_block([change(hlc, i + 1) for i, hlc in enumerate(hlcs)], RESIDENTS, SECRET)[0]


def segment(changes: list[Change], signer: Identity = SENDER) -> bytes:
    """The changes as seqs 1.. of ``signer``, validly sealed whatever their HLCs."""
    own = [c._replace(origin=signer.public_key, seq=i + 1) for i, c in enumerate(changes)]
    return Segment.seal(signer, own, NO_PREVIOUS, 3).encode()


def bundle(
    segments: Sequence[bytes] = (),
    *,
    receipts: Sequence[Receipt] = (),
    own_created: int = T0 << 16,
    created: int = T0 << 16,
) -> bytes:
    """A bundle validly signed by SENDER, whatever its values."""
    ranges: dict[Stream, list[tuple[int, int]]] = {}
    for raw in segments:
        seg = Segment.decode(raw)
        ranges.setdefault(seg.stream, []).append((seg.first_seq, seg.last_seq))
    own = Receipt.issue(SENDER, own_created, Knowledge(ranges))
    return build_bundle(
        SENDER,
        list(segments),
        ranges=Knowledge(ranges),
        receipts=[own, *receipts],
        created=created,
    )


def refused(rep: Replica, data: bytes) -> None:
    before, known, peers = rep.state_digest(), rep.knowledge(), rep.receipts()
    with pytest.raises(BundleFormatError):
        rep.apply(data)
    assert rep.state_digest() == before
    assert rep.knowledge() == known
    assert rep.receipts() == peers


def test_passed_on_receipt_created_2_63_is_refused(tmp_path: Path) -> None:
    rep = centre(tmp_path)
    evil = Receipt.issue(OTHER, TOO_BIG, of(OTHER, 1, 3))
    refused(rep, bundle(receipts=[evil]))
    rep.close()


def test_own_receipt_created_2_63_is_refused(tmp_path: Path) -> None:
    rep = centre(tmp_path)
    refused(rep, bundle([segment([change(T0 << 16)])], own_created=TOO_BIG))
    rep.close()


def test_header_created_2_63_is_refused(tmp_path: Path) -> None:
    rep = centre(tmp_path)
    refused(rep, bundle([segment([change(T0 << 16)])], created=TOO_BIG))
    rep.close()


def test_change_hlc_2_63_in_a_signed_segment_is_refused(tmp_path: Path, hostile: None) -> None:
    rep = centre(tmp_path)
    good = change(T0 << 16)
    refused(rep, bundle([segment([good, change(TOO_BIG)])]))
    refused(rep, bundle([segment([change(TOO_BIG)])]))  # the first HLC is not a delta
    refused(rep, bundle([segment([good, change(-1)])]))  # a delta below 0
    rep.close()


def test_largest_hlc_is_accepted_by_the_decoders() -> None:
    assert MAX_HLC == TOO_BIG - 1
    (c,) = decode_changes(columns(MAX_HLC), SENDER.public_key, 1)
    assert c.hlc == MAX_HLC
    # The largest HLC reached through deltas, and from it back down to 0.
    assert [x.hlc for x in decode_changes(columns(5, MAX_HLC, 0), SENDER.public_key, 1)] == [
        5,
        MAX_HLC,
        0,
    ]
    r = Receipt.issue(OTHER, MAX_HLC, Knowledge())
    assert Receipt.decode(r.encode()).created == MAX_HLC
    header, _ = read_header(bundle(receipts=[r], own_created=MAX_HLC, created=MAX_HLC))
    assert header.created == MAX_HLC
    assert [x.created for x in header.receipts] == [MAX_HLC, MAX_HLC]
    token = issue_attestation(
        SENDER, Change(SENDER.public_key, 1, MAX_HLC, "residents", "k", 1, None)
    )
    assert read_attestation(token).hlc == MAX_HLC


def test_largest_hlc_is_stored_not_crashed(tmp_path: Path) -> None:
    """2^63 - 1 reaches the store: the receipt is kept, the change held for its clock."""
    rep = centre(tmp_path)
    before = rep.state_digest()
    passed_on = Receipt.issue(OTHER, MAX_HLC, of(OTHER, 1, 2))
    report = rep.apply(bundle([segment([change(MAX_HLC)])], receipts=[passed_on]))
    assert report.quarantined == 1
    assert rep.state_digest() == before
    assert rep.receipts()[OTHER.public_key].created == MAX_HLC
    assert rep.knowledge().restrict_origins([SENDER.public_key]).count() == 1
    rep.close()


def test_decoders_refuse_2_63_directly(hostile: None) -> None:
    with pytest.raises(BundleFormatError, match="hlc"):
        decode_changes(columns(TOO_BIG), SENDER.public_key, 1)
    # Deltas that are each small but sum past the range, or below 0.
    with pytest.raises(BundleFormatError, match="hlc"):
        decode_changes(columns(MAX_HLC, TOO_BIG), SENDER.public_key, 1)
    with pytest.raises(BundleFormatError, match="hlc"):
        decode_changes(columns(MAX_HLC, MAX_HLC + 1, MAX_HLC), SENDER.public_key, 1)
    with pytest.raises(BundleFormatError, match="hlc"):
        decode_changes(columns(3, -1, 5), SENDER.public_key, 1)
    with pytest.raises(BundleFormatError):
        Receipt.decode(Receipt.issue(OTHER, TOO_BIG, Knowledge()).encode())
    token = issue_attestation(
        SENDER, Change(SENDER.public_key, 1, TOO_BIG, "residents", "k", 1, None)
    )
    with pytest.raises(BundleFormatError):
        read_attestation(token)


def test_clock_never_issues_past_the_range() -> None:
    clock = HybridClock(last=MAX_HLC - 1, wall=Wall(0))
    assert clock.now() == MAX_HLC
    with pytest.raises(OverflowError):
        clock.now()


@pytest.mark.parametrize(
    "field",
    ["valid_from", "valid_until"],
)
@pytest.mark.parametrize("value", [-1, TOO_BIG])
def test_certificate_times_out_of_range_are_malformed(field: str, value: int) -> None:
    fields = Certificate(OTHER.public_key).to_fields()
    fields[field] = value
    store = TrustStore.from_records(
        [CENTRE.public_key], [("cert/" + OTHER.public_key.hex(), fields)]
    )
    assert OTHER.public_key not in store.certificates
    assert store.problems


@pytest.mark.parametrize("field", ["effective_ms", "after_seq"])
@pytest.mark.parametrize("value", [-1, TOO_BIG])
def test_revocation_values_out_of_range_are_malformed(field: str, value: int) -> None:
    fields = Revocation(OTHER.public_key, effective_ms=T0).to_fields()
    fields[field] = value
    store = TrustStore.from_records(
        [CENTRE.public_key], [("revoke/" + OTHER.public_key.hex(), fields)]
    )
    assert OTHER.public_key not in store.revocations
    assert store.problems


def test_largest_trust_values_are_accepted() -> None:
    cert = Certificate(OTHER.public_key, valid_from=TOO_BIG - 1, valid_until=TOO_BIG - 1)
    rev = Revocation(OTHER.public_key, effective_ms=TOO_BIG - 1, after_seq=TOO_BIG - 1)
    store = TrustStore.from_records(
        [CENTRE.public_key],
        [
            ("cert/" + OTHER.public_key.hex(), cert.to_fields()),
            ("revoke/" + OTHER.public_key.hex(), rev.to_fields()),
        ],
    )
    assert store.certificates[OTHER.public_key] == cert
    assert store.revocations[OTHER.public_key] == rev
    assert not store.problems


def test_issuing_out_of_range_trust_records_fails_at_once() -> None:
    with pytest.raises(ValueError):
        certificate_fields(OTHER, valid_until=TOO_BIG)
    with pytest.raises(ValueError):
        revocation_fields(OTHER, after_seq=-1)
