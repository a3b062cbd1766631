"""The blob lane over real HTTP (uvicorn on a free port): blobs travel after records,
resume from the offset the server holds, travel once per hash, and a corrupt blob is
refused whole without holding up anything else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.errors import TransportError
from offsync.limits import Limits
from offsync.server import create_app
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import sync
from offsync.sync.blobs import sync_blobs
from offsync.transports.http import HTTPTransport
from offsync.transports.httpblobs import HTTPBlobPeer
from tests.helpers.http import LiveServer

A = Identity(bytes([1]) * 32, "site-a")
B = Identity(bytes([2]) * 32, "site-b")
C = Identity(bytes([3]) * 32, "centre")
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)


def photo(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def replica(tmp_path: Path, name: str, identity: Identity) -> Replica:
    return Replica(SQLiteStore(str(tmp_path / f"{name}.sqlite")), identity, limits=SMALL)


def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[tuple[Replica, str]]:
    rep = replica(tmp_path, "centre", C)
    with LiveServer(create_app(rep, readable=None)) as srv:
        yield rep, srv.url
    rep.close()


def link(url: str, who: Identity) -> HTTPTransport:
    return HTTPTransport(url, who, limits=SMALL, max_retries=1, sleep=no_sleep)


class BrokenPeer(HTTPBlobPeer):
    """Breaks the link once ``budget`` chunk bytes went out (a cable pulled)."""

    def __init__(self, transport: HTTPTransport, budget: int) -> None:
        super().__init__(transport)
        self.budget = budget

    def put_chunk(self, ref: BlobRef, offset: int, data: bytes) -> int:
        if self.sent_bytes + len(data) > self.budget:
            raise TransportError("the link broke")
        return super().put_chunk(ref, offset, data)


def test_an_interrupted_upload_resumes_at_the_held_offset(
    tmp_path: Path, centre: tuple[Replica, str]
) -> None:
    server, url = centre
    a = replica(tmp_path, "a", A)
    face = photo(30_000)
    ref = a.put_blob(face, "image/jpeg")
    a.put("people", "p1", {"name": "Dewi", "photo": ref.field()})
    with link(url, A) as t:
        broken = BrokenPeer(t, budget=10_000)
        t.blob_peer = lambda: broken  # type: ignore[method-assign]
        first = sync(a, t, pull=False)
        assert [r.source for r in first.refused] == ["blobs"]  # the lane broke...
        assert server.get("people", "p1") is not None  # ...the records arrived anyway
        assert broken.sent_bytes == 8192  # two chunks went out before the break
        assert server.held_blobs([ref.hash]) == {ref.hash: 8192}
        assert server.missing_blobs().count == 1  # listed until it arrives
        peer = HTTPBlobPeer(t)
        report = sync_blobs(a, peer, pull=False)
        assert report.sent == 1 and report.ok
        assert peer.sent_bytes == 30_000 - 8192  # only what the server lacked
    assert server.open_blob(ref).read() == face and server.missing_blobs().count == 0
    a.close()


def test_blobs_travel_once_per_hash_and_are_pulled_by_other_sites(
    tmp_path: Path, centre: tuple[Replica, str]
) -> None:
    _, url = centre
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    face, sig = photo(9000, 1), photo(100, 2)
    ref, small = a.put_blob(face, "image/jpeg"), a.put_blob(sig, "image/png")
    a.put("people", "p1", {"photo": ref.field(), "sig": small.field()})
    a.put("people", "p2", {"photo": ref.field()})  # the same photo, another record
    with link(url, A) as t:
        first = sync(a, t)
        assert first.blobs is not None and first.blobs.sent == 2
        assert first.blobs.sent_bytes == 9100  # each blob once
        again = sync(a, t)
        assert again.blobs is not None and again.blobs.sent_bytes == 0
    with link(url, B) as t:
        report = sync(b, t)
    assert report.ok and report.blobs is not None and report.blobs.received == 2
    assert b.open_blob(ref).read() == face and b.missing_blobs().count == 0
    a.close()
    b.close()


def test_a_corrupt_blob_is_refused_whole_and_others_still_arrive(
    tmp_path: Path, centre: tuple[Replica, str]
) -> None:
    server, url = centre
    a = replica(tmp_path, "a", A)
    face, other = photo(6000, 4), photo(5000, 5)
    ref, ok = a.put_blob(face, "image/jpeg"), a.put_blob(other, "image/jpeg")
    a.put("people", "p1", {"photo": ref.field(), "thumb": ok.field()})
    with link(url, A) as t:
        sync(a, t, pull=False, push=True)
    server.blob_store.delete([ref.hash, ok.hash])  # to send them again by hand
    put = f"{url}/blobs/{ref.hex}"
    with httpx.Client() as http:
        r = http.put(put, content=face[:4096], headers={"Content-Range": "bytes 0-4095/6000"})
        assert r.status_code == 202 and r.json()["received"] == 4096
        r = http.put(put, content=face[:10], headers={"Content-Range": "bytes 0-9/6000"})
        assert r.status_code == 409 and r.json()["received"] == 4096
        bad = bytes([face[4096] ^ 1]) + face[4097:]
        r = http.put(put, content=bad, headers={"Content-Range": "bytes 4096-5999/6000"})
        assert r.status_code == 422 and r.json()["error"] == "BlobError"
        assert server.held_blobs([ref.hash]) == {}  # dropped whole
        stranger = "ab" * 32
        r = http.put(
            f"{url}/blobs/{stranger}", content=b"x", headers={"Content-Range": "bytes 0-0/1"}
        )
        assert r.status_code == 404  # no record references it: not taken
        r = http.get(put, headers={"Range": "bytes=0-9"})
        assert r.status_code == 401  # reading a blob is a signed request
    with link(url, A) as t:
        report = sync(a, t, pull=False)
    assert report.blobs is not None and report.blobs.sent == 2 and report.ok
    assert server.open_blob(ref).read() == face and server.open_blob(ok).read() == other
    a.close()
