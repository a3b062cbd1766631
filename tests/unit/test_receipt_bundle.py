"""Format-3 receipts (partial, domain v3) and bundles (version 00 03, relays_for)."""

from __future__ import annotations

import pytest

from offsync.bundle import (
    FORMAT_VERSION,
    build_bundle,
    frame_bundle,
    open_bundle,
    peek_header,
    read_header,
)
from offsync.change import PUT, Change, canonical_fields
from offsync.encoding import packb
from offsync.errors import (
    BundleFormatError,
    DecryptionError,
    LimitExceededError,
    SignatureError,
    UsageError,
)
from offsync.identity import Identity
from offsync.knowledge import Knowledge
from offsync.limits import Limits
from offsync.receipt import RECEIPT_DOMAIN, Receipt, statement_for
from offsync.scope import Partition, Stream
from offsync.segment import NO_PREVIOUS, Segment

SITE = Identity(bytes(range(32)), "site")
RELAY = Identity(bytes(range(32, 64)), "relay")
CENTRE = Identity(b"\x42" * 32, "centre")
BEHIND = Identity(b"\x43" * 32, "behind")
DISTRICT = Partition("residents", "351901")
NEIGHBOUR = Partition("residents", "351902")


def segment(
    origin: Identity, partition: Partition, first: int, n: int, prev: bytes = NO_PREVIOUS
) -> Segment:
    changes = [
        Change(
            origin.public_key,
            first + i,
            1000 + i,
            partition.collection,
            partition.prefix + f"{first + i:010d}",
            PUT,
            canonical_fields({"i": first + i}),
            (),
            partition.prefix,
        )
        for i in range(n)
    ]
    return Segment.seal(origin, changes, prev, 3)


def test_receipts_round_trip_in_domain_v3() -> None:
    k = Knowledge.of(Stream(SITE.public_key, DISTRICT), 1, 9)
    r = Receipt.issue(CENTRE, 77, k)
    assert RECEIPT_DOMAIN == b"offsync/receipt/v3\x00"
    assert Receipt.decode(r.encode()) == r
    assert r.covers(Stream(SITE.public_key, DISTRICT), 2, 9)
    assert not r.covers(Stream(SITE.public_key, NEIGHBOUR), 1, 1)
    with pytest.raises(UsageError):
        Receipt.issue(CENTRE, 1, {})  # type: ignore[arg-type]
    with pytest.raises(SignatureError):
        Receipt.decode(r.encode()[:-1] + b"\x00")


def test_a_format_2_receipt_is_refused() -> None:
    # Format 2's receipt: [replica, created, [[origin, [a1, b1, ...]], ...], signature].
    old = packb([CENTRE.public_key, 77, [[SITE.public_key, [1, 9]]], bytes(64)])
    with pytest.raises(BundleFormatError):
        Receipt.decode(old)


def test_statement_for_a_relay_names_the_sites_behind_it() -> None:
    k = Knowledge(
        {
            Stream(BEHIND.public_key, DISTRICT): [(1, 4)],
            Stream(RELAY.public_key, DISTRICT): [(1, 2)],
            Stream(SITE.public_key, NEIGHBOUR): [(1, 8)],
        }
    )
    stated = statement_for(k, reader=RELAY.public_key, relays_for=[BEHIND.public_key])
    assert set(stated.origins()) == {BEHIND.public_key, RELAY.public_key}


def _bundle(**options: object) -> bytes:
    first = segment(SITE, DISTRICT, 1, 3)
    second = segment(SITE, DISTRICT, 4, 2, first.hash)
    other = segment(SITE, NEIGHBOUR, 1, 1)
    ranges = Knowledge(
        {Stream(SITE.public_key, DISTRICT): [(1, 5)], Stream(SITE.public_key, NEIGHBOUR): [(1, 1)]}
    )
    own = Receipt.issue(RELAY, 9, ranges)
    subject = Receipt.issue(CENTRE, 8, Knowledge.of(Stream(BEHIND.public_key, DISTRICT), 1, 2))
    return build_bundle(
        RELAY,
        [other.encode(), first.encode(), second.encode()],
        ranges=ranges,
        receipts=[own, subject],
        created=9,
        **options,  # type: ignore[arg-type]
    )


def test_bundle_round_trip_with_relays_for() -> None:
    data = _bundle(relays_for=[BEHIND.public_key, SITE.public_key])
    assert data[6:8] == FORMAT_VERSION.to_bytes(2, "big") == b"\x00\x03"
    opened = open_bundle(data)
    assert opened.header.relays_for == tuple(sorted([BEHIND.public_key, SITE.public_key]))
    assert [s.first_seq for s in opened.segments] == [1, 1, 4]
    for s in opened.segments:
        s.verify()
        s.open_changes()
    assert peek_header(data) == opened.header == read_header(data)[0]
    assert opened.header.knowledge == opened.header.receipts[0].knowledge


def test_sealed_bundles_open_for_their_recipient_only() -> None:
    data = _bundle(recipient=CENTRE.public_key)
    opened = open_bundle(data, CENTRE)
    assert [(s.stream, s.first_seq, s.last_seq) for s in opened.segments] == [
        (s.stream, s.first_seq, s.last_seq) for s in open_bundle(_bundle()).segments
    ]
    for s in opened.segments:
        s.verify()
    with pytest.raises(DecryptionError):
        open_bundle(data, SITE)
    with pytest.raises(DecryptionError):
        open_bundle(data)
    read_header(data)  # a relay reads the header of what it cannot open


def test_building_refuses_what_readers_would_refuse() -> None:
    with pytest.raises(UsageError):
        _bundle(relays_for=[RELAY.public_key])
    with pytest.raises(UsageError):
        _bundle(relays_for=[b"short"])
    with pytest.raises(UsageError):
        build_bundle(RELAY, [], ranges=Knowledge(), receipts=[], created=1)
    with pytest.raises(UsageError):
        build_bundle(
            RELAY, [], ranges=Knowledge(), receipts=[Receipt.issue(SITE, 1, Knowledge())], created=1
        )


def test_a_format_2_bundle_is_refused_by_its_version() -> None:
    new = _bundle()
    old = new[:6] + (2).to_bytes(2, "big") + new[8:]  # format 2's version field
    with pytest.raises(BundleFormatError, match="version 2"):
        open_bundle(old)
    with pytest.raises(BundleFormatError, match="version 2"):
        peek_header(old)


def test_header_limits() -> None:
    many = sorted(bytes([i]) * 32 for i in range(1, 6))
    data = _bundle(relays_for=many)
    with pytest.raises(LimitExceededError, match="relays_for"):
        open_bundle(data, limits=Limits(max_relays_for=4))
    with pytest.raises(LimitExceededError, match="receipts"):
        open_bundle(_bundle(), limits=Limits(max_receipts=1))
    with pytest.raises(LimitExceededError, match="segments"):
        open_bundle(_bundle(), limits=Limits(max_segments=2))


def test_a_header_names_the_keys_of_format_3_exactly() -> None:
    header, _ = read_header(_bundle())
    wire = header.to_wire()
    assert (
        list(wire)
        == sorted(wire)
        == ["created", "ranges", "receipts", "recipient", "relays_for", "segments", "sender"]
    )
    wire["extra"] = 1
    with pytest.raises(BundleFormatError):
        open_bundle(frame_bundle(RELAY, packb(dict(sorted(wire.items()))), packb([])))
