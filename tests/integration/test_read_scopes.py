"""Every path offers a site only its certified read scope (issue 12, point 5): HTTP pulls,
a relay answering in process, shared folders and courier disks hand a certified site
exactly its read scope plus ``_trust`` and the reference collections; strangers,
expired and revoked keys get a 403 over HTTP and nothing through a mailbox; blobs follow
the records in scope. Real SQLite files, real HTTP on loopback, real folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from offsync import Identity, Replica
from offsync.blobs import BlobRef
from offsync.encoding import packb
from offsync.errors import BlobError, PeerRefusedError
from offsync.http.signing import blob_get_message, sign_request
from offsync.limits import Limits
from offsync.scope import Partition, Scope
from offsync.server import create_app
from offsync.sync import exchange, exchange_folder, sync
from offsync.sync.readers import may_receive, receiver_scope
from offsync.transports import LoopbackTransport
from offsync.transports.http import HTTPTransport
from offsync.trust import issue_certificate, revoke
from tests.helpers.http import LiveServer

RULE = {"residents": 4, "doses": 4}
REFERENCE = ("lots",)
SMALL = Limits(blob_chunk_bytes=4096, max_blob_bytes=1 << 20)


def _no_sleep(_: float) -> None:
    return None


class World:
    """An authority; a centre certified to read and write everything, holding residents
    of districts 3201, 3202 and 3203, doses of 3201 and 3202, a vaccine lot (reference
    data) and a photo per resident of 3201 and 3203; and keys to pull with:

    * ``kec``: writes residents and doses of 3201, reads residents of 3201 and 3202 and
      doses of 3201 (a read scope other than its write scope);
    * ``narrow``: writes residents and doses of 3201, reads only residents of 3201;
    * ``stranger`` (no certificate), ``expired`` and ``revoked``.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path
        self.authority = self.open("authority", authority=True)
        roots = [self.authority.id]
        self.centre = self.open("centre", roots)
        self.kec = self.open("kec", roots)
        self.narrow = self.open("narrow", roots)
        self.stranger = self.open("stranger", roots)
        self.expired = self.open("expired", roots)
        self.revoked = self.open("revoked", roots)
        a = self.authority
        issue_certificate(a, self.centre.identity, label="centre", read={"*": []})
        issue_certificate(
            a,
            self.kec.identity,
            label="kec",
            collections=["residents", "doses"],
            prefixes=["3201"],
            read={"residents": ["3201", "3202"], "doses": ["3201"]},
        )
        issue_certificate(
            a,
            self.narrow.identity,
            label="narrow",
            collections=["residents", "doses"],
            prefixes=["3201"],
            read={"residents": ["3201"]},
        )
        issue_certificate(a, self.expired.identity, label="expired", valid_until=1)
        issue_certificate(a, self.revoked.identity, label="revoked")
        revoke(a, self.revoked.identity, effective_ms=0, reason="laptop stolen")
        for site in self.sites():
            for bundle in a.pack():
                site.apply(bundle)
        c = self.centre
        with c.batch():
            for district in ("3201", "3202", "3203"):
                c.put("residents", f"{district}01", {"name": f"resident of {district}"})
            c.put("doses", "320101", {"lot": "L1"})
            c.put("doses", "320201", {"lot": "L1"})
            c.put("lots", "L1", {"vaccine": "measles"})
        self.photo_in = c.put_blob(b"in scope " * 300, "image/jpeg")
        self.photo_out = c.put_blob(b"out of scope " * 300, "image/jpeg")
        c.put("residents", "320102", {"name": "with photo", "photo": self.photo_in.field()})
        c.put("residents", "320302", {"name": "with photo", "photo": self.photo_out.field()})

    def open(self, name: str, roots: list[bytes] | None = None, **kw: bool) -> Replica:
        identity = Identity.generate(label=name)
        return Replica.open(
            str(self.path / f"{name}.sqlite"),
            identity=identity,
            trust=[identity.public_key] if kw.get("authority") else roots,
            partitions=RULE,
            reference=REFERENCE,
            limits=SMALL,
        )

    def sites(self) -> list[Replica]:
        return [self.centre, self.kec, self.narrow, self.stranger, self.expired, self.revoked]

    def close(self) -> None:
        for r in [self.authority, *self.sites()]:
            r.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def partitions_of(site: Replica, origin: bytes) -> set[tuple[str, str]]:
    """The partitions of ``origin``'s streams ``site`` holds."""
    return {(p.collection, p.prefix) for p in site.knowledge().partitions(origin)}


#: What kec may read of the centre's data (its read scope, and the reference lots).
KEC_READS = {("residents", "3201"), ("residents", "3202"), ("doses", "3201"), ("lots", "")}


def assert_reads_only_its_scope(world: World) -> None:
    kec, centre = world.kec, world.centre
    assert partitions_of(kec, centre.id) == KEC_READS
    assert kec.get("residents", "320101") is not None
    assert kec.get("residents", "320201") is not None
    assert kec.get("doses", "320101") is not None
    assert kec.get("lots", "L1") is not None  # reference data reaches every certified site
    assert kec.get("residents", "320301") is None
    assert kec.get("residents", "320302") is None
    assert kec.get("doses", "320201") is None
    # _trust reaches it as well (it holds the authority's certificates).
    assert partitions_of(kec, world.authority.id) == {("_trust", "")}


def assert_holds_nothing_of(site: Replica, world: World) -> None:
    assert partitions_of(site, world.centre.id) == set()
    assert site.get("residents", "320101") is None
    assert site.get("lots", "L1") is None


# -- the rule applied by every path ---------------------------------------------------------


def test_the_scope_handed_to_each_peer(world: World) -> None:
    centre = world.centre
    kec = receiver_scope(centre, world.kec.id)
    assert Partition("residents", "3202") in kec and Partition("residents", "3203") not in kec
    assert Partition("lots", "") in kec and Partition("_trust", "") in kec
    assert Partition("doses", "3201") in kec and Partition("doses", "3202") not in kec
    narrow = receiver_scope(centre, world.narrow.id)
    assert Partition("doses", "3201") not in narrow, "reads only its read scope, not its writes"
    for key in (world.stranger.id, world.expired.id, world.revoked.id, None):
        assert receiver_scope(centre, key) == Scope.nothing()
        assert not may_receive(centre, key)
    assert receiver_scope(centre, world.authority.id).is_everything


def test_http_pull_offers_exactly_the_read_scope(world: World) -> None:
    with LiveServer(create_app(world.centre)) as srv:
        with HTTPTransport(
            srv.url, world.kec.identity, server_key=world.centre.id, sleep=_no_sleep
        ) as t:
            sync(world.kec, t, push=False)
        assert_reads_only_its_scope(world)
        with HTTPTransport(
            srv.url, world.narrow.identity, server_key=world.centre.id, sleep=_no_sleep
        ) as t:
            sync(world.narrow, t, push=False)
    assert partitions_of(world.narrow, world.centre.id) == {("residents", "3201"), ("lots", "")}
    assert world.narrow.get("doses", "320101") is None


def test_the_pull_answers_receipt_states_only_the_scope(world: World) -> None:
    """The centre's own receipt in its answer is restricted too (spec §8.2): it says
    nothing of the streams the site may not read."""
    with (
        LiveServer(create_app(world.centre)) as srv,
        HTTPTransport(srv.url, world.kec.identity, server_key=world.centre.id) as t,
    ):
        sync(world.kec, t, push=False)
    told = world.kec.receipts()[world.centre.id].knowledge
    stated = {(p.collection, p.prefix) for p in told.partitions(world.centre.id)}
    assert stated <= KEC_READS | {("_trust", "")}
    assert ("residents", "3203") not in stated and ("doses", "3202") not in stated


@pytest.mark.parametrize("who", ["stranger", "expired", "revoked"])
def test_a_key_that_may_read_nothing_is_refused_403(world: World, who: str) -> None:
    site: Replica = getattr(world, who)
    with (
        LiveServer(create_app(world.centre)) as srv,
        HTTPTransport(
            srv.url, site.identity, server_key=world.centre.id, sleep=_no_sleep, max_retries=0
        ) as t,
    ):
        with pytest.raises(PeerRefusedError) as refused:
            list(t.receive(site.knowledge()))
        assert refused.value.status == 403 and refused.value.error == "NotCertified"
        report = sync(site, t, push=False)
    assert any("NotCertified" in r.reason or "403" in r.reason for r in report.refused), report
    assert_holds_nothing_of(site, world)


def test_everything_is_an_operators_explicit_choice(world: World) -> None:
    with (
        LiveServer(create_app(world.centre, readable="everything")) as srv,
        HTTPTransport(srv.url, world.stranger.identity, server_key=world.centre.id) as t,
    ):
        sync(world.stranger, t, push=False)
    assert ("residents", "3203") in partitions_of(world.stranger, world.centre.id)


def test_the_servers_reference_option_adds_collections_to_every_read(world: World) -> None:
    with (
        LiveServer(create_app(world.centre, reference=["doses"])) as srv,
        HTTPTransport(srv.url, world.narrow.identity, server_key=world.centre.id) as t,
    ):
        sync(world.narrow, t, push=False)
    got = partitions_of(world.narrow, world.centre.id)
    assert ("doses", "3202") in got and ("lots", "") not in got  # the option replaces the default


# -- blobs follow the records in scope ------------------------------------------------------


def _signed(
    http: httpx.Client, who: Identity, server: bytes, endpoint: str, body: bytes
) -> dict[str, str]:
    challenge = bytes.fromhex(http.get("/challenge").json()["challenge"])
    return sign_request(who, server, endpoint, body, challenge)


def test_http_blobs_are_offered_only_for_records_in_scope(world: World) -> None:
    centre, kec = world.centre, world.kec
    with LiveServer(create_app(centre)) as srv, httpx.Client(base_url=srv.url) as http:
        hashes = packb([world.photo_in.hash, world.photo_out.hash])
        held = http.post(
            "/blobs",
            content=hashes,
            headers=_signed(http, kec.identity, centre.id, "blobs-held", hashes),
        )
        assert held.status_code == 200
        from offsync.encoding import unpack_strict

        assert [bytes(h) for h, _ in unpack_strict(held.content, "held")] == [world.photo_in.hash]

        def get(ref: BlobRef, who: Identity) -> int:
            rng = "bytes=0-9"
            headers = _signed(http, who, centre.id, "blob", blob_get_message(ref.hex, rng))
            return http.get(f"/blobs/{ref.hex}", headers={**headers, "Range": rng}).status_code

        assert get(world.photo_in, kec.identity) == 206
        assert get(world.photo_out, kec.identity) == 404
        assert get(world.photo_in, world.stranger.identity) == 403
        assert get(world.photo_in, world.revoked.identity) == 403
        # Through the lane of a sync round: the photo in scope arrives, the other does not.
        with HTTPTransport(srv.url, kec.identity, server_key=centre.id, limits=SMALL) as t:
            sync(kec, t, push=False)
    assert kec.has_blob(world.photo_in) and not kec.has_blob(world.photo_out)


# -- relays, folders and courier disks --------------------------------------------------------


def test_a_relay_answering_in_process_offers_only_the_scope(world: World) -> None:
    sync(world.kec, LoopbackTransport(world.centre, me=world.kec.id), push=False)
    assert_reads_only_its_scope(world)
    assert world.kec.has_blob(world.photo_in)
    peer = LoopbackTransport(world.centre, me=world.kec.id).blob_peer()
    assert list(peer.held([world.photo_in.hash, world.photo_out.hash])) == [world.photo_in.hash]
    with pytest.raises(BlobError):
        peer.get_chunk(world.photo_out, 0, 10)
    sync(world.stranger, LoopbackTransport(world.centre, me=world.stranger.id), push=False)
    assert_holds_nothing_of(world.stranger, world)


def test_a_relay_serving_over_http_offers_only_the_scope(world: World) -> None:
    """A district relay (certified to read everything) holds the centre's data and
    serves its own sites: it applies the same rule to them."""
    relay = world.open("relay", [world.authority.id])
    issue_certificate(world.authority, relay.identity, label="relay", read={"*": []})
    for bundle in world.authority.pack():
        world.centre.apply(bundle)
        relay.apply(bundle)
    sync(relay, LoopbackTransport(world.centre, me=relay.id), push=False)
    assert ("residents", "3203") in partitions_of(relay, world.centre.id)
    with (
        LiveServer(create_app(relay)) as srv,
        HTTPTransport(srv.url, world.kec.identity, server_key=relay.id) as t,
    ):
        sync(world.kec, t, push=False)
    assert_reads_only_its_scope(world)
    relay.close()


def chunks_of(where: Path, ref: BlobRef) -> list[Path]:
    """The chunk files of ``ref`` anywhere under ``where``."""
    return list(where.rglob(f"{ref.hash.hex()[:32]}-*.ofc"))


def test_a_shared_folder_carries_only_the_scope(world: World, tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    report = exchange_folder(
        world.centre, folder, peers=[world.kec.id, world.stranger.id, world.revoked.id]
    )
    assert set(report.withheld) == {world.stranger.id, world.revoked.id}
    # A blob is left only for the records in the peer's scope.
    assert chunks_of(folder, world.photo_in) and not chunks_of(folder, world.photo_out)
    exchange_folder(world.kec, folder)
    assert_reads_only_its_scope(world)
    assert world.kec.has_blob(world.photo_in) and not world.kec.has_blob(world.photo_out)
    for site in (world.stranger, world.revoked):
        exchange_folder(site, folder)
        assert_holds_nothing_of(site, world)
    # Nothing was left in the folder for a key that may read nothing.
    names = {p.name for p in folder.iterdir()}
    for key in (world.stranger.id, world.revoked.id):
        assert not any(key.hex()[:16] in n for n in names), names


def test_a_courier_disk_carries_only_the_scope(world: World, tmp_path: Path) -> None:
    disk = tmp_path / "usb"
    disk.mkdir()
    report = exchange(world.centre, disk, peers=[world.kec.id, world.narrow.id, world.expired.id])
    assert report.withheld == [world.expired.id]
    assert chunks_of(disk, world.photo_in) and not chunks_of(disk, world.photo_out)
    exchange(world.kec, disk)
    assert_reads_only_its_scope(world)
    assert world.kec.has_blob(world.photo_in) and not world.kec.has_blob(world.photo_out)
    exchange(world.narrow, disk)
    assert partitions_of(world.narrow, world.centre.id) == {("residents", "3201"), ("lots", "")}
    exchange(world.expired, disk)
    assert_holds_nothing_of(world.expired, world)


def test_a_grown_certificate_is_served_at_the_next_pull(world: World) -> None:
    """Re-certified with a wider read scope, the site gets the new partitions' history
    at its next pull from the same server (nothing to do on its side)."""
    with LiveServer(create_app(world.centre)) as srv:
        with HTTPTransport(srv.url, world.narrow.identity, server_key=world.centre.id) as t:
            sync(world.narrow, t, push=False)
        assert world.narrow.get("doses", "320101") is None
        issue_certificate(
            world.authority,
            world.narrow.identity,
            label="narrow",
            collections=["residents", "doses"],
            prefixes=["3201"],
            read={"residents": ["3201"], "doses": ["3201"]},
        )
        for bundle in world.authority.pack():
            world.centre.apply(bundle)
        with HTTPTransport(srv.url, world.narrow.identity, server_key=world.centre.id) as t:
            sync(world.narrow, t, push=False)
    assert world.narrow.get("doses", "320101") is not None
    assert world.narrow.get("doses", "320201") is None


def test_the_server_restricts_its_knowledge_once_per_scope_between_applies(world: World) -> None:
    """Sites of one district pulling between two applies share one restriction of the
    centre's knowledge; a new apply (new knowledge) makes a new one."""
    state = create_app(world.centre).state.offsync
    scope = receiver_scope(world.centre, world.kec.id)
    held = world.centre.knowledge()
    first = state.scoped_knowledge(held, scope)
    assert first == held.restrict(scope) and first != held
    assert state.scoped_knowledge(held, scope) is first
    assert state.scoped_knowledge(held, Scope.everything()) is held
    world.centre.put("residents", "320103", {"name": "new"})
    newer = world.centre.knowledge()
    assert newer is not held
    assert state.scoped_knowledge(newer, scope) == newer.restrict(scope) != first
