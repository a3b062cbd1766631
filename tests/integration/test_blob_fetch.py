"""Blob fetch policies (issue 14, part 3): eager (the default), lazy (only what was asked
for, demanded blobs first) and none (names, not fingerprints), kept in the store, over
real SQLite files and real HTTP (uvicorn on a free port); a site that fetches nothing
still forwards the blobs it holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.errors import MissingBlobError, UsageError
from offsync.limits import Limits
from offsync.server import create_app
from offsync.stores.sqlite import SQLiteStore
from offsync.sync import sync
from offsync.sync.blobs import ReplicaBlobPeer, sync_blobs
from offsync.transports.http import HTTPTransport
from tests.helpers.cli import InProcess, Shell
from tests.helpers.http import LiveServer

A = Identity(bytes([1]) * 32, "site-a")
B = Identity(bytes([2]) * 32, "site-b")
C = Identity(bytes([3]) * 32, "centre")
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)


def photo(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


def replica(tmp_path: Path, name: str, identity: Identity, **kw: str) -> Replica:
    return Replica(
        SQLiteStore(str(tmp_path / f"{name}.sqlite")),
        identity,
        limits=SMALL,
        **kw,  # type: ignore[arg-type]
    )


def no_sleep(_: float) -> None:
    return None


def link(url: str, who: Identity) -> HTTPTransport:
    return HTTPTransport(url, who, limits=SMALL, max_retries=1, sleep=no_sleep)


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[tuple[Replica, str]]:
    rep = replica(tmp_path, "centre", C)
    with LiveServer(create_app(rep, readable=None)) as srv:
        yield rep, srv.url
    rep.close()


def recordings(rep: Replica) -> tuple[BlobRef, BlobRef, BlobRef]:
    """Three ID recordings, each with a photo of its own size."""
    refs = []
    for i, size in enumerate((3000, 9000, 500)):
        ref = rep.put_blob(photo(size, i), "image/jpeg")
        rep.put("people", f"p{i}", {"name": f"R{i}", "photo": ref.field()})
        refs.append(ref)
    return refs[0], refs[1], refs[2]


def test_the_policy_is_kept_in_the_store_and_eager_by_default(tmp_path: Path) -> None:
    path = str(tmp_path / "site.sqlite")
    with Replica.open(path, identity=A) as rep:
        assert rep.blob_fetch == "eager"
    with Replica.open(path, identity=A, blobs="lazy") as rep:
        assert rep.blob_fetch == "lazy"
    with Replica.open(path, identity=A) as rep:  # the store says lazy now
        assert rep.blob_fetch == "lazy"
        rep.set_blob_fetch("none")
    with Replica.open(path, identity=A, read_only=True) as rep:
        assert rep.blob_fetch == "none"
    with Replica.open(path, identity=A, read_only=True, blobs="eager") as rep:
        assert rep.blob_fetch == "eager"  # for this open only: nothing is written
    with Replica.open(path, identity=A) as rep:
        assert rep.blob_fetch == "none"
        with pytest.raises(UsageError, match="eager, lazy, none"):
            rep.set_blob_fetch("sometimes")
    with pytest.raises(UsageError, match="blobs is one of"):
        Replica.open(path, identity=A, blobs="all")


def test_a_lazy_site_fetches_only_what_was_asked_for(
    tmp_path: Path, centre: tuple[Replica, str]
) -> None:
    _, url = centre
    a = replica(tmp_path, "a", A)
    small, large, tiny = recordings(a)
    with link(url, A) as t:
        assert sync(a, t).ok
    b = replica(tmp_path, "b", B, blobs="lazy")
    with link(url, B) as t:
        first = sync(b, t)
    assert first.ok and first.blobs is not None and first.blobs.received == 0
    assert b.get("people", "p1") is not None and b.missing_blobs().count == 3
    with pytest.raises(MissingBlobError, match=r"not here yet.*lazy.*next sync"):
        b.open_blob(b.get("people", "p1")["photo"])  # type: ignore[index]
    assert b.demanded_blobs() == [large]
    b.close()
    b = replica(tmp_path, "b", B)  # the demand and the policy survive a restart
    assert b.blob_fetch == "lazy" and b.demanded_blobs() == [large]
    with link(url, B) as t:
        second = sync(b, t)
    assert second.blobs is not None and second.blobs.received == 1
    assert second.blobs.received_bytes == large.size
    assert b.open_blob(large).read() == photo(9000, 1)
    assert b.demanded_blobs() == []  # fetched: forgotten
    assert b.missing_blobs().blobs == {small, tiny}
    assert b.missing_blobs("people", "p1").count == 0
    assert b.missing_blobs("people", "p0").by_record == {("people", "p0"): (small,)}
    a.close()
    b.close()


def test_a_site_that_fetches_nothing_still_forwards_what_it_holds(
    tmp_path: Path, centre: tuple[Replica, str]
) -> None:
    server, url = centre
    a = replica(tmp_path, "a", A)
    recordings(a)
    with link(url, A) as t:
        sync(a, t)
    post = replica(tmp_path, "post", B, blobs="none")
    own = post.put_blob(photo(2500, 9), "image/jpeg")  # a card scanned at the post
    post.put("cards", "c1", {"name": "Sari", "scan": own.field()})
    with link(url, B) as t:
        report = sync(post, t)
    assert report.ok and report.blobs is not None
    assert report.blobs.sent == 1 and report.blobs.received == 0
    assert server.open_blob(own).read() == photo(2500, 9)  # forwarded to the centre
    assert post.get("people", "p0") is not None  # the names arrived
    assert post.missing_blobs().count == 3  # the photos did not, by choice
    with pytest.raises(MissingBlobError, match="does not fetch blobs"):
        post.open_blob(post.get("people", "p0")["photo"])  # type: ignore[index]
    assert post.demanded_blobs() == []
    assert post.blobs_to_fetch() == ([], [])
    a.close()
    post.close()


class Recording(ReplicaBlobPeer):
    """A peer in this process that notes which blob each fetched chunk belongs to."""

    def __init__(self, replica: Replica) -> None:
        super().__init__(replica)
        self.order: list[bytes] = []

    def get_chunk(self, ref: BlobRef, offset: int, length: int) -> bytes:
        self.order.append(ref.hash)
        return super().get_chunk(ref, offset, length)


def test_an_eager_site_fetches_demanded_blobs_first(tmp_path: Path) -> None:
    a, b = replica(tmp_path, "a", A), replica(tmp_path, "b", B)
    small, large, tiny = recordings(a)
    for bundle in a.pack(b.knowledge()):
        b.apply(bundle)
    with pytest.raises(MissingBlobError, match="arrives when a site that holds it syncs"):
        b.open_blob(large)
    assert b.demanded_blobs() == []  # an eager site fetches everything anyway
    b.set_blob_fetch("lazy")
    with pytest.raises(MissingBlobError):
        b.open_blob(large)
    b.set_blob_fetch("eager")  # asked for while lazy, then eager again: first in line
    peer = Recording(a)
    report = sync_blobs(b, peer, push=False)
    assert report.received == 3 and report.ok
    assert list(dict.fromkeys(peer.order)) == [large.hash, tiny.hash, small.hash]
    assert b.missing_blobs().count == 0 and b.demanded_blobs() == []
    a.close()
    b.close()


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    return InProcess(tmp_path)


def test_the_command_line_sets_and_shows_the_policy(sh: Shell) -> None:
    sh.init("a")
    assert sh.json("init", "post", "--blobs", "none", "--open")["blobs"] == "none"
    (sh.cwd / "face.jpg").write_bytes(photo(4000))
    sh.run("--site", "a", "put", "people", "k1", "name=Dewi", "--attach", "photo=face.jpg")
    sh.json("--site", "a", "pack", "outbox")
    sh.json("--site", "post", "apply", "outbox")
    doc = sh.json("--site", "post", "blobs")
    assert doc["fetch"] == "none" and doc["missing"] == 1 and doc["held"] == 0
    status = sh.json("--site", "post", "status")["missing_blobs"]
    assert status["fetch"] == "none" and status["blobs"] == 1
    assert "not fetched here" in sh.run("--site", "post", "status").stdout
    assert "blob(s) missing" not in sh.run("--site", "post", "status").stdout
    assert sh.json("--site", "post", "blobs", "--fetch", "lazy")["fetch"] == "lazy"
    refused = sh.run("--site", "post", "get", "people", "k1", "--save", "photo=x.jpg", code=1)
    assert "asked for now" in refused.stderr
    doc = sh.json("--site", "post", "blobs")
    assert doc["fetch"] == "lazy" and len(doc["asked_for"]) == 1
    assert "1 asked for" in sh.run("--site", "post", "status").stdout
    sh.run("--site", "post", "blobs", "--fetch", "sometimes", code=2)
