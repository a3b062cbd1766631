"""A certified site asking beyond its read scope gets nothing beyond it (issue 12,
point 5): crafted pull requests (forged digests, detail of groups outside its scope,
``relays_for`` naming the centre and other sites), blob queries for hashes outside its
scope, and a want list naming a blob of another district left in a shared folder.
A key that may read nothing is answered 403 whatever it asks. Real HTTP on loopback,
real SQLite files, a real folder."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from offsync import Identity, Knowledge, Replica
from offsync.blobfile import WantList
from offsync.bundle import read_header
from offsync.encoding import packb, unpack_strict
from offsync.http.pull import PullRequest, decode_groups
from offsync.http.signing import sign_request
from offsync.limits import Limits
from offsync.scope import Partition, Scope
from offsync.server import create_app
from offsync.sync import exchange_folder
from offsync.sync.readers import receiver_scope
from offsync.transports.blobbox import BlobBox
from offsync.trust import issue_certificate
from tests.helpers.http import LiveServer

RULE = {"residents": 4}
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)


class Deployment:
    """A centre certified for everything holding residents of 3201 and 3203 (each with
    a photo); ``kec`` certified to read residents of 3201 only; ``stranger`` unknown."""

    def __init__(self, tmp_path: Path) -> None:
        self.authority = self._open(tmp_path, "authority", None)
        roots = [self.authority.id]
        self.centre = self._open(tmp_path, "centre", roots)
        self.kec = self._open(tmp_path, "kec", roots)
        self.stranger = Identity.generate(label="stranger")
        issue_certificate(self.authority, self.centre.identity, read={"*": []})
        issue_certificate(
            self.authority, self.kec.identity, collections=["residents"], prefixes=["3201"],
            read={"residents": ["3201"]},
        )  # fmt: skip
        for site in (self.centre, self.kec):
            for bundle in self.authority.pack():
                site.apply(bundle)
        self.mine = self.centre.put_blob(b"3201 photo " * 200, "image/jpeg")
        self.theirs = self.centre.put_blob(b"3203 photo " * 200, "image/jpeg")
        self.centre.put("residents", "320101", {"photo": self.mine.field()})
        self.centre.put("residents", "320301", {"photo": self.theirs.field()})
        self.scope = receiver_scope(self.centre, self.kec.id)

    @staticmethod
    def _open(tmp_path: Path, name: str, roots: list[bytes] | None) -> Replica:
        identity = Identity.generate(label=name)
        return Replica.open(
            str(tmp_path / f"{name}.sqlite"),
            identity=identity,
            trust=roots if roots is not None else [identity.public_key],
            partitions=RULE,
            limits=SMALL,
        )

    def close(self) -> None:
        for r in (self.authority, self.centre, self.kec):
            r.close()


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    yield d
    d.close()


def _signed(
    http: httpx.Client, who: Identity, server: bytes, endpoint: str, body: bytes
) -> dict[str, str]:
    challenge = bytes.fromhex(http.get("/challenge").json()["challenge"])
    return sign_request(who, server, endpoint, body, challenge)


def _bundles(data: bytes) -> list[bytes]:
    """The bundles of a pull answer's frames."""
    out: list[bytes] = []
    at = 0
    while True:
        (length,) = struct.unpack_from(">I", data, at)
        at += 4
        if length in (0, 0xFFFFFFFF):
            return out
        out.append(data[at : at + length])
        at += length


def _pull(
    http: httpx.Client, who: Identity, centre: Replica, request: PullRequest
) -> httpx.Response:
    body = request.encode()
    return http.post("/pull", content=body, headers=_signed(http, who, centre.id, "pull", body))


def _outside(knowledge: Knowledge, scope: Scope, reader: bytes) -> set[Partition]:
    """Partitions ``knowledge`` states that are neither in ``scope`` nor ``reader``'s own."""
    return {s.partition for s in knowledge.streams() if s not in scope and s.origin != reader}


HOSTILE_PULLS: dict[str, Callable[[Deployment], PullRequest]] = {
    "whole knowledge, nothing held": lambda d: PullRequest(Knowledge(), 1 << 20),
    "relays for the centre and the authority": lambda d: PullRequest(
        Knowledge(), 1 << 20, relays_for=tuple(sorted((d.centre.id, d.authority.id)))
    ),
    "forged digests with detail of 3203": lambda d: PullRequest(
        Knowledge(),
        1 << 20,
        digests=(4, (("residents", "3203", b"\0" * 16),)),
        detail=(("residents", "3203"),),
    ),
    "forged digests naming nothing": lambda d: PullRequest(
        Knowledge(), 1 << 20, digests=(4, (("residents", "3201", b"\0" * 16),))
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PULLS))
def test_a_crafted_pull_gets_nothing_beyond_the_read_scope(dep: Deployment, name: str) -> None:
    with LiveServer(create_app(dep.centre)) as srv, httpx.Client(base_url=srv.url) as http:
        answer = _pull(http, dep.kec.identity, dep.centre, HOSTILE_PULLS[name](dep))
    assert answer.status_code in (200, 409), answer.text
    if answer.status_code == 409:  # the groups to detail: only groups of its scope
        groups = decode_groups(answer.content)
        assert ("residents", "3201") in groups
        assert all(dep.scope.holds(c, g) for c, g in groups), groups
        return
    bundles = _bundles(answer.content)
    assert bundles, "a first contact gets a bundle with the centre's receipt"
    carried: set[Partition] = set()
    for bundle in bundles:
        header = read_header(bundle, dep.centre.limits)[0]
        carried |= {s.partition for s in header.ranges.streams()}
        for receipt in header.receipts:
            assert _outside(receipt.knowledge, dep.scope, dep.kec.id) == set(), name
    assert Partition("residents", "3201") in carried
    assert Partition("residents", "3203") not in carried


def test_a_key_that_may_read_nothing_gets_403_whatever_it_asks(dep: Deployment) -> None:
    with LiveServer(create_app(dep.centre)) as srv, httpx.Client(base_url=srv.url) as http:
        for make in HOSTILE_PULLS.values():
            answer = _pull(http, dep.stranger, dep.centre, make(dep))
            assert answer.status_code == 403 and answer.json()["error"] == "NotCertified"
        hashes = packb([dep.mine.hash, dep.theirs.hash])
        held = http.post(
            "/blobs",
            content=hashes,
            headers=_signed(http, dep.stranger, dep.centre.id, "blobs-held", hashes),
        )
        assert held.status_code == 403


def test_blob_queries_beyond_the_scope_learn_nothing(dep: Deployment) -> None:
    with LiveServer(create_app(dep.centre)) as srv, httpx.Client(base_url=srv.url) as http:
        hashes = packb([dep.theirs.hash, dep.mine.hash])
        held = http.post(
            "/blobs",
            content=hashes,
            headers=_signed(http, dep.kec.identity, dep.centre.id, "blobs-held", hashes),
        )
    assert held.status_code == 200
    assert [bytes(h) for h, _ in unpack_strict(held.content, "held")] == [dep.mine.hash]


def test_a_want_list_naming_another_districts_blob_is_not_answered(
    dep: Deployment, tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    box = BlobBox(folder, dep.kec.id, dep.centre.id, limits=SMALL)
    box.write_want(
        WantList(dep.kec.id, int(time.time() * 1000), {dep.theirs.hash: 0, dep.mine.hash: 0})
    )
    box.flush()
    exchange_folder(dep.centre, folder, peers=[dep.kec.id])
    chunks = {p.name[:32] for p in folder.rglob("*.ofc")}
    assert dep.mine.hash.hex()[:32] in chunks
    assert dep.theirs.hash.hex()[:32] not in chunks
