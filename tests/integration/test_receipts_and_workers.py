"""A public replica lock, receipts from upload answers reaching the
store, receipt claims that cannot block a site in trust mode, and chunked uploads that
several server processes (workers) serve from one upload_dir."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import offsync
from offsync import Identity, Replica, sync
from offsync.bundle import build_bundle
from offsync.delivery import Delivery, Status
from offsync.errors import SequenceReuseError, SignatureError
from offsync.knowledge import Knowledge
from offsync.receipt import Receipt
from offsync.scope import Partition, Stream
from offsync.segment import hash32
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from offsync.trust import issue_certificate, revoke
from tests.helpers.http import LiveServer

SRC = Path(offsync.__file__).parent


def residents(origin: bytes, first: int, last: int) -> Knowledge:
    """Knowledge of seqs ``first..last`` of ``origin``'s residents stream (the one
    stream these tests write)."""
    return Knowledge({Stream(origin, Partition("residents")): [(first, last)]})


def open_replica(path: Path, label: str, **options: Any) -> Replica:
    return Replica.open(str(path / f"{label}.db"), identity=Identity.generate(label), **options)


def send(source: Replica, target: Replica) -> None:
    for bundle in source.pack(target.knowledge(), always=True):
        target.apply(bundle)


# -- 1. the replica's lock is public -------------------------------------------------


def test_no_module_reaches_into_the_replicas_private_lock() -> None:
    private = re.compile(r"\._lock\b")
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.relative_to(SRC).parts[0] != "replica" and private.search(p.read_text())
    ]
    assert offenders == []


def test_holding_replica_lock_makes_the_server_answer_busy(tmp_path: Path) -> None:
    centre = open_replica(tmp_path, "centre")
    app = create_app(centre, upload_dir=tmp_path / "up", busy_timeout=0.2)
    with LiveServer(app) as srv:
        with centre.lock:  # a local writer holds the replica
            answer = httpx.get(srv.url + "/knowledge", timeout=30)
        assert answer.status_code == 503
        assert app.state.offsync.refused_busy == 1
        assert httpx.get(srv.url + "/knowledge", timeout=30).status_code == 200
    centre.close()


# -- 2. receipts from upload answers reach the store ---------------------------------


@pytest.fixture
def centre_server(tmp_path: Path) -> Iterator[tuple[Replica, LiveServer]]:
    centre = open_replica(tmp_path, "centre")
    with LiveServer(create_app(centre, upload_dir=tmp_path / "uploads")) as srv:
        yield centre, srv
    centre.close()


def test_push_only_round_shows_held_by_the_centre(
    tmp_path: Path, centre_server: tuple[Replica, LiveServer]
) -> None:
    centre, srv = centre_server
    site = open_replica(tmp_path, "site")
    change = site.put("residents", "3519000000000001", {"name": "Ana"})
    delivery = Delivery(site, [centre.id])
    assert delivery.status(change) == Status.LOCAL
    with HTTPTransport(srv.url, site.identity, server_key=centre.id) as http:
        report = sync(site, http, pull=False)
    assert report.sent_changes == 1 and report.receipts == 1
    assert centre.get("residents", "3519000000000001") == {"name": "Ana"}
    assert delivery.status(change) == Status.CENTRE
    assert delivery.reached_centre()
    # The receipt is in the store, not only in memory: a reopened replica knows it too.
    site.close()
    again = Replica.open(str(tmp_path / "site.db"), identity=site.identity)
    assert Delivery(again, [centre.id]).status(change) == Status.CENTRE
    again.close()


def test_record_receipt_keeps_only_newer_verified_receipts(tmp_path: Path) -> None:
    site = open_replica(tmp_path, "site")
    peer = Identity.generate("peer")
    site.put("residents", "k", {"n": 1})
    site.pack(site.knowledge())  # seals seq 1: a peer can only hold what is sealed
    held = residents(site.id, 1, 1)
    newer = Receipt.issue(peer, 200, held)
    assert site.record_receipt(newer) is True
    assert site.record_receipt(newer) is False  # nothing new
    assert site.record_receipt(Receipt.issue(peer, 100, Knowledge())) is False  # older
    assert site.receipts()[peer.public_key] == newer
    assert site.record_receipt(site.receipt()) is False  # our own word is not a peer's
    forged = Receipt(peer.public_key, 300, residents(site.id, 1, 50), bytes(64))
    with pytest.raises(SignatureError):
        site.record_receipt(forged)
    assert site.receipts()[peer.public_key] == newer
    site.put("residents", "k2", {"n": 2})  # the forged claim did not block writing
    site.close()


def test_sync_records_the_upload_answer_even_when_the_round_fails(
    tmp_path: Path, centre_server: tuple[Replica, LiveServer]
) -> None:
    centre, srv = centre_server
    site = open_replica(tmp_path, "site")
    change = site.put("residents", "k", {"n": 1})

    class FailsAfterSending(HTTPTransport):
        def send(self, bundles: object) -> int:
            super().send(bundles)  # type: ignore[arg-type]
            raise offsync.errors.RetryableTransportError("link dropped after the upload")

    with (
        FailsAfterSending(srv.url, site.identity) as http,
        pytest.raises(offsync.errors.RetryableTransportError),
    ):
        sync(site, http, pull=False)
    assert Delivery(site, [centre.id]).status(change) == Status.CENTRE
    site.close()


# -- 3. receipt claims on this site's seqs ---------------------------------------------


def claim_bundle(signer: Identity, site: bytes, up_to: int) -> bytes:
    """A bundle with no data whose sender's receipt claims ``site``'s seqs 1..up_to."""
    receipt = Receipt.issue(signer, 1, residents(site, 1, up_to))
    return build_bundle(signer, [], ranges=Knowledge(), receipts=[receipt], created=1)


@pytest.fixture
def trusted(tmp_path: Path) -> Iterator[tuple[Replica, Replica, Identity]]:
    """An authority's replica, a certified site opened in trust mode, a certified district."""
    authority = open_replica(tmp_path, "authority")
    site = open_replica(tmp_path, "site", trust=[authority.id])
    district = Identity.generate("district")
    issue_certificate(authority, site.identity, label="site")
    issue_certificate(authority, district, label="district")
    send(authority, site)
    site.put("residents", "k1", {"n": 1})
    yield authority, site, district
    site.close()
    authority.close()


def test_trust_mode_ignores_claims_of_uncertified_keys(
    trusted: tuple[Replica, Replica, Identity],
) -> None:
    _, site, _ = trusted
    rogue = Identity.generate("rogue")
    site.apply(claim_bundle(rogue, site.id, 1000))
    assert site.record_receipt(Receipt.issue(rogue, 2, residents(site.id, 1, 2000)))
    site.put("residents", "k2", {"n": 2})  # not blocked
    assert site.seq == 2
    (claim,) = site.seq_claims()
    assert claim.peer == rogue.public_key and claim.seq == 2000 and not claim.counted
    # Sealing is not blocked either: the new changes travel.
    other = Replica.open(":memory:", identity=Identity.generate("other"))
    for bundle in site.pack():
        other.apply(bundle)
    assert other.get("residents", "k2") == {"n": 2}
    other.close()


def test_trust_mode_counts_certified_claims_until_the_key_is_revoked(
    trusted: tuple[Replica, Replica, Identity],
) -> None:
    authority, site, district = trusted
    site.apply(claim_bundle(district, site.id, 50))
    (claim,) = site.seq_claims()
    assert claim.counted and claim.seq == 50
    with pytest.raises(SequenceReuseError) as info:
        site.put("residents", "k2", {"n": 2})
    assert district.public_key.hex()[:12] in str(info.value)  # names who claims
    # The way out for a false claim: the authority revokes the claimant's key.
    revoke(authority, district, after_seq=0, reason="claims seqs it cannot hold")
    send(authority, site)
    (claim,) = site.seq_claims()
    assert not claim.counted
    site.put("residents", "k2", {"n": 2})
    assert site.seq == 2


def test_open_mode_keeps_counting_every_claim(tmp_path: Path) -> None:
    site = open_replica(tmp_path, "site")
    site.put("residents", "k1", {"n": 1})
    rogue = Identity.generate("rogue")
    site.apply(claim_bundle(rogue, site.id, 5))
    assert site.seq_claims()[0].counted
    with pytest.raises(SequenceReuseError, match=rogue.public_key.hex()[:12]):
        site.put("residents", "k2", {"n": 2})
    # The claim survives a reopen (it is the stored receipt that counts).
    site.close()
    again = Replica.open(str(tmp_path / "site.db"), identity=site.identity)
    with pytest.raises(SequenceReuseError):
        again.put("residents", "k2", {"n": 2})
    again.close()


# -- 4. chunked uploads across processes sharing one upload_dir --------------------------

CHUNK = 64 * 1024


def big_bundle(tmp_path: Path) -> tuple[Replica, bytes]:
    site = open_replica(tmp_path, "site")
    with site.batch():
        for i in range(40):  # incompressible: the bundle stays several chunks long
            site.put("photos", f"p{i:03d}", {"data": os.urandom(6000).hex()})
    (bundle,) = site.pack(max_bytes=16 * 1024 * 1024)
    assert len(bundle) > 3 * CHUNK
    return site, bundle


def put_chunk(url: str, bundle: bytes, first: int, end: int, **kw: object) -> httpx.Response:
    return httpx.put(
        f"{url}/bundles/{hash32(bundle).hex()}",
        content=kw.pop("content", bundle[first:end]),  # type: ignore[arg-type]
        headers={"Content-Range": f"bytes {first}-{end - 1}/{len(bundle)}"},
        timeout=60,
    )


def test_upload_started_on_one_worker_resumes_on_another(tmp_path: Path) -> None:
    centre = open_replica(tmp_path, "centre")
    site, bundle = big_bundle(tmp_path)
    uploads = tmp_path / "uploads"
    with (
        LiveServer(create_app(centre, upload_dir=uploads)) as one,
        LiveServer(create_app(centre, upload_dir=uploads)) as two,
    ):
        first = put_chunk(one.url, bundle, 0, CHUNK)
        assert first.status_code == 202 and first.json()["received"] == CHUNK
        progress: list[int] = []
        with HTTPTransport(
            two.url,
            site.identity,
            chunk_bytes=CHUNK,
            progress=lambda _id, sent, _total: progress.append(sent),
        ) as http:
            answer = http.upload(bundle)
    assert answer["status"] == "applied"
    assert progress[0] == 2 * CHUNK  # the second worker went on from the first one's bytes
    assert centre.get("photos", "p039") == site.get("photos", "p039")
    assert list(uploads.iterdir()) == []  # partial and lock files are gone
    site.close()
    centre.close()


def test_two_workers_never_append_the_same_chunk_twice(tmp_path: Path) -> None:
    centre = open_replica(tmp_path, "centre")
    site, bundle = big_bundle(tmp_path)
    uploads = tmp_path / "uploads"
    go_on = threading.Event()
    answers: dict[str, httpx.Response] = {}

    def slow_body() -> Iterator[bytes]:
        yield bundle[:1000]
        assert go_on.wait(60)
        yield bundle[1000:CHUNK]

    with (
        LiveServer(create_app(centre, upload_dir=uploads)) as one,
        LiveServer(create_app(centre, upload_dir=uploads, busy_timeout=0.3)) as two,
    ):
        slow = threading.Thread(
            target=lambda: answers.update(
                one=put_chunk(one.url, bundle, 0, CHUNK, content=slow_body())
            )
        )
        slow.start()
        try:
            partial = uploads / f"{hash32(bundle).hex()}-{len(bundle)}.part"
            for _ in range(6000):  # the first worker is receiving the chunk
                if partial.exists():
                    break
                time.sleep(0.01)
            assert partial.exists()
            # The same chunk (a client retrying elsewhere) while the first is mid-way:
            again = put_chunk(two.url, bundle, 0, CHUNK)
            assert again.status_code == 503 and "retry-after" in again.headers
        finally:
            go_on.set()
            slow.join(60)
        assert answers["one"].status_code == 202 and answers["one"].json()["received"] == CHUNK
        # Now the second worker sees the first one's bytes and says where to resume.
        late = put_chunk(two.url, bundle, 0, CHUNK)
        assert late.status_code == 409 and late.json()["received"] == CHUNK
        with HTTPTransport(two.url, site.identity, chunk_bytes=CHUNK) as http:
            assert http.upload(bundle)["status"] == "applied"
    assert centre.state_digest() == site.state_digest()
    site.close()
    centre.close()
