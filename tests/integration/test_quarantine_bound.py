"""What keys without a certificate can make a trust-mode replica keep is bounded.

Anyone can make keys, and a validly signed segment from an unknown key is held in
quarantine in case the key is certified later: 20 self-made keys left 16 MB of segments
at a centre, and nothing ever removed them. Now such data is bounded per signer and in
total (``Limits.max_unknown_*``), the oldest going first, and certified sites' data is
never touched (``offsync.quarantine``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Limits, Replica, sync
from offsync.clock import wall_millis
from offsync.plan.quarantine import evictions
from offsync.scope import Partition, Stream
from offsync.segindex import whole
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from offsync.trust import issue_certificate, revoke
from tests.helpers.http import LiveServer

#: The one partition these tests write in: their residents.
RESIDENTS_PARTITION = Partition("residents")

KiB = 1024
DAY = 24 * 3600 * 1000
LIMITS = Limits(
    max_unknown_signer_bytes=64 * KiB,
    max_unknown_signer_segments=6,
    max_unknown_bytes=256 * KiB,
    max_unknown_segments=40,
)
AUTHORITY = Identity(b"\xa0" * 32, label="authority")
KEC = Identity(b"\xa1" * 32, label="kec")


def _junk(n: int, segments: int = 5, size: int = 20 * KiB) -> tuple[Replica, list[bytes]]:
    """A self-made key and the bundles of its ``segments`` incompressible segments."""
    rep = Replica.open(":memory:", identity=Identity(n.to_bytes(4, "big") * 8, label=f"junk{n}"))
    rng = random.Random(n)
    bundles = []
    for i in range(segments):
        before = rep.knowledge()
        rep.put("residents", f"{n}-{i}", {"photo": rng.randbytes(size)})
        bundles += rep.pack(before)  # seals one segment per round
    return rep, bundles


def _unknown_held(rep: Replica, origins: set[bytes]) -> dict[bytes, list[int]]:
    """Per unknown origin, the sizes of the segments the store holds."""
    out: dict[bytes, list[int]] = {}
    for stream, *_, size in rep.store.segment_index():
        if stream.origin in origins:
            out.setdefault(stream.origin, []).append(size)
    return out


def _within_bounds(held: dict[bytes, list[int]], limits: Limits = LIMITS) -> None:
    assert sum(map(sum, held.values())) <= limits.max_unknown_bytes
    assert sum(map(len, held.values())) <= limits.max_unknown_segments
    for sizes in held.values():
        assert sum(sizes) <= limits.max_unknown_signer_bytes
        assert len(sizes) <= limits.max_unknown_signer_segments


@pytest.fixture
def authority() -> Iterator[Replica]:
    rep = Replica.open(":memory:", identity=AUTHORITY, trust=[AUTHORITY.public_key])
    issue_certificate(rep, KEC)
    yield rep
    rep.close()


def _centre(path: Path, limits: Limits = LIMITS) -> Replica:
    return Replica.open(
        str(path), identity=Identity(b"\xa2" * 32), trust=[AUTHORITY.public_key], limits=limits
    )


def _send(src: Replica, dst: Replica) -> None:
    for bundle in src.pack(dst.knowledge()):
        dst.apply(bundle)


def test_a_flood_of_self_made_keys_stays_within_the_bounds(
    tmp_path: Path, authority: Replica
) -> None:
    path = tmp_path / "centre.sqlite"
    centre = _centre(path)
    _send(authority, centre)
    # A certified site whose clock runs three days ahead: its data waits in quarantine.
    kec = Replica.open(":memory:", identity=KEC, wall=lambda: wall_millis() + 3 * DAY)
    _send(authority, kec)
    kec.put("residents", "3519000000000001", {"name": "Siti"})
    _send(kec, centre)
    held_for_clock = [q for q in centre.quarantined() if q.origin == KEC.public_key]
    assert [q.reason for q in held_for_clock] == ["clock: timestamp too far in the future"]

    junk = [_junk(n) for n in range(20)]  # 20 keys x 5 segments x 20 KiB: ~2 MB
    origins = {rep.id for rep, _ in junk}
    for _, bundles in junk:
        for bundle in bundles:
            assert centre.apply(bundle).quarantined == 1
        _within_bounds(_unknown_held(centre, origins))
    held = _unknown_held(centre, origins)
    assert sum(map(sum, held.values())) > LIMITS.max_unknown_bytes // 2  # it does keep some
    # Oldest first: the signers heard from last are the ones kept.
    assert set(held) == {rep.id for rep, _ in junk[-len(held) :]}
    # The index and knowledge say what the store holds, so evicted data may come again.
    assert {q.origin for q in centre.quarantined()} == set(held) | {KEC.public_key}
    assert centre.knowledge().max_seq(Stream(junk[0][0].id, RESIDENTS_PARTITION)) == 0
    # The certified site's quarantined data is untouched.
    assert [q for q in centre.quarantined() if q.origin == KEC.public_key] == held_for_clock
    # The same flood again: judged again like anything new, and still within bounds.
    for _, bundles in junk:
        for bundle in bundles:
            centre.apply(bundle)
        _within_bounds(_unknown_held(centre, origins))
    held = _unknown_held(centre, origins)
    knowledge = centre.knowledge()
    centre.close()
    assert path.stat().st_size < 1024 * KiB  # of ~4 MB sent
    with _centre(path) as again:  # what is held, and in which order, survives a reopen
        assert again.knowledge() == knowledge
        assert _unknown_held(again, origins) == held
        assert [q for q in again.quarantined() if q.origin == KEC.public_key] == held_for_clock
        newest = junk[-1][0]
        _send(newest, again)  # offered again: kept within its own bound
        _within_bounds(_unknown_held(again, origins))


def test_a_revoked_key_is_known_and_its_data_kept_as_evidence(
    tmp_path: Path, authority: Replica
) -> None:
    centre = _centre(tmp_path / "centre.sqlite", Limits(max_unknown_bytes=0))
    thief = Identity(b"\xa3" * 32, label="stolen")
    issue_certificate(authority, thief)
    revoke(authority, thief, after_seq=0, reason="laptop stolen")
    _send(authority, centre)
    stolen = Replica.open(":memory:", identity=thief)
    stolen.put("residents", "3519000000000009", {"name": "forged"})
    _send(stolen, centre)
    assert [q.reason for q in centre.quarantined()] == ["trust: key revoked"]
    for bundle in _junk(7, segments=1)[1]:  # with a bound of 0 bytes, unknown data goes
        assert centre.apply(bundle).quarantined == 1
    assert [q.reason for q in centre.quarantined()] == ["trust: key revoked"]
    assert centre.knowledge().max_seq(Stream(thief.public_key, RESIDENTS_PARTITION)) == 1
    centre.close()


def test_a_signer_certified_after_eviction_has_its_data_fetched_again(
    tmp_path: Path, authority: Replica
) -> None:
    centre = _centre(tmp_path / "centre.sqlite", Limits(max_unknown_signer_segments=1))
    _send(authority, centre)
    late, _ = _junk(42, segments=3)
    _send(late, centre)
    assert len(centre.quarantined()) == 1  # only its newest segment is kept
    issue_certificate(authority, late.identity)
    _send(authority, centre)
    _send(late, centre)  # what the centre lacks travels again, and is applied now
    assert centre.quarantined() == []
    assert len(list(centre.items("residents"))) == 3
    centre.close()


def test_a_flood_uploaded_over_http_stays_within_the_bounds(
    tmp_path: Path, authority: Replica
) -> None:
    centre = _centre(tmp_path / "centre.sqlite")
    _send(authority, centre)
    junk = [_junk(n, segments=3) for n in range(100, 112)]
    with LiveServer(create_app(centre, upload_dir=tmp_path / "uploads")) as srv:
        for rep, _ in junk:
            with HTTPTransport(srv.url, rep.identity, max_retries=0) as http:
                assert sync(rep, http, pull=False).sent_changes == 3
    held = _unknown_held(centre, {rep.id for rep, _ in junk})
    assert held and sum(map(len, held.values())) < 36
    _within_bounds(held)
    centre.close()


def test_evictions_take_the_oldest_first() -> None:
    a, b, c = b"a" * 32, b"b" * 32, b"c" * 32
    limits = Limits(
        max_unknown_signer_bytes=10,
        max_unknown_signer_segments=3,
        max_unknown_bytes=12,
        max_unknown_segments=100,
    )
    # a: four segments (one over the count) -> its lowest seq goes; b: 12 bytes (over
    # the per-signer bytes) -> its lowest seqs until within; c: fine on its own.
    sa, sb, sc = whole(a), whole(b), whole(c)
    signers = [
        (a, [(sa, 1, 1), (sa, 2, 1), (sa, 3, 1), (sa, 4, 1)]),
        (b, [(sb, 1, 4), (sb, 5, 4), (sb, 9, 4)]),
        (c, [(sc, 1, 5)]),
    ]
    assert evictions(signers, limits) == [(sa, 1), (sb, 1), (sa, 2), (sa, 3), (sa, 4), (sb, 5)]
    assert evictions(signers, Limits()) == []
    assert evictions([], limits) == []
    assert evictions([(c, [(sc, 1, 11)])], limits) == [(sc, 1)]  # one segment over a bound


def test_a_certificate_in_the_same_bundle_as_its_sites_data_counts_first(
    tmp_path: Path, authority: Replica
) -> None:
    # Nothing of strangers is kept here; a new site's data arrives together with its
    # certificate (the site forwards the _trust records it holds): it is not a stranger.
    centre = _centre(tmp_path / "centre.sqlite", Limits(max_unknown_bytes=0))
    new_site, _ = _junk(77, segments=2)
    issue_certificate(authority, new_site.identity)
    _send(authority, new_site)
    [bundle] = new_site.pack()  # the authority's segment and the site's, together
    report = centre.apply(bundle)
    assert report.unlocked == 2  # its two changes, applied once its certificate was
    assert centre.quarantined() == []
    assert len(list(centre.items("residents"))) == 2
    centre.close()
