"""The PostgreSQL centre offers each site only its read scope (issue 12, point 5): the
app as ``offsync.centre:app_from_env`` builds it (``OFFSYNC_AUTHORITIES``,
``OFFSYNC_PARTITIONS``, ``OFFSYNC_REFERENCE``), served over real HTTP on loopback; a
certified site gets its districts, the reference collection and the photos of its
records, a stranger a 403."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Replica
from offsync.centre import app_from_env, replica_from_env
from offsync.errors import PeerRefusedError
from offsync.sync import sync
from offsync.trust import issue_certificate
from tests.helpers.http import LiveServer
from tests.helpers.postgres import DSN, drop_schemas

pytest.importorskip("httpx", reason="the http extra is not installed")

from offsync.transports.http import HTTPTransport

pytestmark = pytest.mark.postgres

PREFIX = "offsync_test_readscope_"


AUTHORITY = Identity(bytes(range(32)), "authority")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    centre = Identity.generate(label="centre")
    key = tmp_path / "centre.key"
    centre.save(key, "pw", opslimit=1, memlimit=8192)
    values = {
        "OFFSYNC_POSTGRES": DSN,
        "OFFSYNC_SCHEMA": f"{PREFIX}{uuid.uuid4().hex[:10]}",
        "OFFSYNC_IDENTITY": str(key),
        "OFFSYNC_PASSPHRASE": "pw",
        "OFFSYNC_AUTHORITIES": AUTHORITY.public_key.hex(),
        "OFFSYNC_PARTITIONS": "residents=4",
        "OFFSYNC_REFERENCE": "vaccine_lots",
    }
    yield values
    drop_schemas(PREFIX)


def test_the_postgres_centre_offers_a_site_its_scope(env: dict[str, str], tmp_path: Path) -> None:
    authority = Replica.open(":memory:", identity=AUTHORITY, trust=[AUTHORITY.public_key])
    roots = [authority.id]
    kec = Replica.open(
        str(tmp_path / "kec.sqlite"), identity=Identity.generate(label="kec"), trust=roots,
        partitions={"residents": 4}, reference=["vaccine_lots"],
    )  # fmt: skip
    stranger = Replica.open(
        str(tmp_path / "stranger.sqlite"), identity=Identity.generate(label="stranger"),
        trust=roots, partitions={"residents": 4},
    )  # fmt: skip
    centre = replica_from_env(env)
    assert centre.reference == ("vaccine_lots",)
    issue_certificate(authority, centre.identity, read={"*": []})
    issue_certificate(authority, kec.identity, prefixes=["3201"], read={"residents": ["3201"]})
    for site in (centre, kec, stranger):
        for bundle in authority.pack():
            site.apply(bundle)
    photo = centre.put_blob(b"a photo of 3201 " * 100, "image/jpeg")
    other = centre.put_blob(b"a photo of 3203 " * 100, "image/jpeg")
    centre.put("residents", "320101", {"name": "in scope", "photo": photo.field()})
    centre.put("residents", "320301", {"name": "out of scope", "photo": other.field()})
    centre.put("vaccine_lots", "L1", {"vaccine": "measles"})
    centre.close()
    app = app_from_env(env)
    try:
        with LiveServer(app) as srv:
            with HTTPTransport(srv.url, kec.identity) as t:
                sync(kec, t, push=False)
            with (
                HTTPTransport(srv.url, stranger.identity, max_retries=0) as t,
                pytest.raises(PeerRefusedError) as refused,
            ):
                list(t.receive(stranger.knowledge()))
        assert refused.value.status == 403 and refused.value.error == "NotCertified"
        assert kec.get("residents", "320101") is not None
        assert kec.get("vaccine_lots", "L1") == {"vaccine": "measles"}
        assert kec.get("residents", "320301") is None
        assert kec.has_blob(photo) and not kec.has_blob(other)
        assert stranger.get("vaccine_lots", "L1") is None
    finally:
        app.state.offsync.replica.close()
        for r in (authority, kec, stranger):
            r.close()
