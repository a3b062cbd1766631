"""Who may read: in trust mode a server and a courier stop hand data only to keys the
trust store certifies now (``TrustStore.may_read``), without being told to; open mode
serves every key, and says so when a site is created."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import pytest

import offsync
from offsync import Identity, Replica
from offsync.errors import UsageError
from offsync.http.readers import readers
from offsync.server import create_app
from offsync.sync import exchange, exchange_folder
from offsync.transports import open_transport
from offsync.transports.folder import outbox_name
from offsync.transports.http import HTTPTransport
from offsync.trust import issue_certificate, revoke
from tests.helpers.cli import Shell
from tests.helpers.http import LiveServer


class World:
    """An authority that certified KEC and the centre and revoked GONE; a centre in
    trust mode that holds three residents it wrote; a stranger with a key of its own
    making (an open-mode replica: nobody certified it)."""

    def __init__(self) -> None:
        self.authority = Replica.open(":memory:", identity=Identity.generate(label="authority"))
        roots = [self.authority.id]
        self.kec, self.gone, self.centre = (
            Replica.open(":memory:", identity=Identity.generate(label=n), trust=roots)
            for n in ("kec", "gone", "centre")
        )
        self.stranger = Replica.open(":memory:", identity=Identity.generate(label="stranger"))
        for site in (self.kec, self.gone, self.centre):
            issue_certificate(self.authority, site.identity, label=site.identity.label)
        revoke(self.authority, self.gone.identity, effective_ms=0)
        for site in (self.kec, self.gone, self.centre):
            for bundle in self.authority.pack():
                site.apply(bundle)
        for n in range(3):
            self.centre.put("residents", f"35190{n}", {"name": f"resident {n}"})

    def close(self) -> None:
        for r in (self.authority, self.kec, self.gone, self.stranger, self.centre):
            r.close()


@pytest.fixture
def world() -> World:
    return World()


def pulled(srv: LiveServer, site: Replica, world: World) -> int:
    """How many of the centre's own changes ``site`` holds after pulling from ``srv``."""
    with HTTPTransport(srv.url, site.identity, server_key=world.centre.id) as t:
        offsync.sync(site, t, push=False)
    return site.knowledge().restrict_origins([world.centre.id]).count()


def test_a_trust_mode_server_serves_only_certified_sites_by_default(world: World) -> None:
    with LiveServer(create_app(world.centre)) as srv:
        assert pulled(srv, world.kec, world) == 3
        assert pulled(srv, world.stranger, world) == 0
        assert pulled(srv, world.gone, world) == 0
    assert world.stranger.get("residents", "351900") is None
    world.close()


def test_everything_is_served_only_when_the_operator_says_so(world: World) -> None:
    with LiveServer(create_app(world.centre, readable="everything")) as srv:
        assert pulled(srv, world.stranger, world) == 3
    assert world.stranger.get("residents", "351900") is not None
    world.close()


def test_an_open_mode_server_serves_every_key(world: World) -> None:
    open_centre = Replica.open(":memory:", identity=Identity.generate(label="open"))
    open_centre.put("residents", "351900", {"name": "resident"})
    assert readers(open_centre, "auto") is None
    with (
        LiveServer(create_app(open_centre)) as srv,
        HTTPTransport(srv.url, world.stranger.identity, server_key=open_centre.id) as t,
    ):
        offsync.sync(world.stranger, t, push=False)
    assert world.stranger.get("residents", "351900") is not None
    with pytest.raises(UsageError, match="needs trust mode"):
        readers(open_centre, "certified")
    with pytest.raises(UsageError, match="readable is one of"):
        create_app(world.centre, readable="anyone")  # type: ignore[arg-type]
    open_centre.close()
    world.close()


def test_may_read_follows_certificates_revocations_and_time(world: World) -> None:
    trust = world.centre.trust_store
    assert trust is not None
    now_ms = int(time.time() * 1000)
    assert trust.may_read(world.authority.id, now_ms)
    assert trust.may_read(world.kec.id, now_ms)
    assert not trust.may_read(world.gone.id, now_ms)
    assert not trust.may_read(world.stranger.id, now_ms)
    cert = trust.certificates[world.kec.id]
    assert not trust.may_read(world.kec.id, cert.valid_from - 1)
    world.close()


def test_a_courier_stop_answers_no_stranger(tmp_path: Path, world: World) -> None:
    """A bundle signed by a key of the bearer's own making is imported (and held in
    quarantine), but earns that key no copy of the registry; a certified site is
    answered as before."""
    usb = tmp_path / "usb"
    usb.mkdir()
    world.stranger.put("residents", "999999", {"name": "bait"})
    world.kec.put("residents", "351999", {"name": "new"})
    for site in (world.stranger, world.kec):
        exchange(site, usb, [world.centre])
    stop = exchange(world.centre, usb)
    assert [r.peer for r in stop.replies] == [world.kec.id]
    assert stop.withheld == [world.stranger.id]
    assert stop.ok and "no reply to" in str(stop)
    assert exchange(world.stranger, usb).imported.received == []
    assert world.stranger.get("residents", "351900") is None
    assert exchange(world.kec, usb).imported.received
    assert world.kec.get("residents", "351900") is not None
    world.close()


def test_a_folder_stop_answers_no_stranger(tmp_path: Path, world: World) -> None:
    share = tmp_path / "share"
    share.mkdir()
    exchange_folder(world.stranger, share, [world.centre])
    stop = exchange_folder(world.centre, share, [world.stranger.id])  # even when named
    assert stop.replies == [] and stop.withheld == [world.stranger.id]
    assert not list((share / outbox_name(world.stranger.id)).glob("*.ofb"))
    world.close()


def test_init_requires_an_authority_or_an_explicit_open(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    refused = sh.run("init", "site", "--label", "site", code=2)
    assert "authority" in refused.stderr and "--trust AUTHORITY_KEY" in refused.stderr
    assert not (tmp_path / "site").exists()
    both = sh.run("init", "site", "--open", "--authority", code=2)
    assert "--open" in both.stderr and not (tmp_path / "site").exists()
    made = sh.run("init", "open-site", "--label", "open", "--open")
    assert "open mode:" in made.stderr and "--trust AUTHORITY_KEY" in made.stderr
    trusted = sh.run("init", "authority", "--authority", "--json")
    assert "open mode" not in trusted.stderr
    assert json.loads(trusted.stdout)["mode"] == "trust"


@pytest.mark.parametrize("kind", ["disk", "folder"])
def test_a_trust_mode_round_sends_nothing_to_a_key_that_may_not_read(
    tmp_path: Path, world: World, kind: Literal["disk", "folder"]
) -> None:
    """A round names its reader: a stranger, a revoked key or nobody gets nothing on the
    disk or in the folder; a certified site gets what it lacks."""
    mount = tmp_path / "mount"
    mount.mkdir()
    for peer in (world.stranger.id, world.gone.id, None):
        with open_transport(mount, world.centre, peer, kind=kind) as t:
            report = offsync.sync(world.centre, t, pull=False)
        assert report.withheld and report.sent_bundles == 0 and report.peer == peer
    assert not [p for p in mount.rglob("*") if p.is_file()]
    with open_transport(mount, world.centre, world.kec.id, kind=kind) as t:
        report = offsync.sync(world.centre, t, pull=False)
    assert not report.withheld and report.sent_changes >= 3
    world.close()


def test_a_trust_mode_site_uploads_nothing_to_a_server_that_may_not_read(world: World) -> None:
    """A server whose key no authority certified (a rogue or a misconfigured one) may
    answer a pull, but receives none of the site's records."""
    world.kec.put("residents", "351901", {"name": "Siti"})
    with (
        LiveServer(create_app(world.stranger)) as srv,
        HTTPTransport(srv.url, world.kec.identity, server_key=world.stranger.id) as t,
    ):
        report = offsync.sync(world.kec, t)
    assert report.withheld and report.sent_changes == 0
    assert world.stranger.knowledge().restrict_origins([world.kec.id]).count() == 0
    assert world.stranger.get("residents", "351901") is None
    world.close()


def test_disk_export_to_a_stranger_writes_nothing_and_fails(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    auth = sh.init("authority", "--authority")
    kec = sh.init("kec", "--trust", auth)
    stranger = sh.init("stranger")
    sh.run("--site", "authority", "trust", "issue", kec, "--label", "kec")
    sh.run("--site", "authority", "pack", "certs")
    sh.run("--site", "kec", "apply", "certs")
    sh.run("--site", "kec", "put", "residents", "3519010101900001", "name=Siti")
    (tmp_path / "usb").mkdir()
    done = sh.run("--site", "kec", "disk", "export", "usb", "--to", stranger, code=3)
    assert "nothing sent" in done.stdout and "not certified to read" in done.stdout
    assert not [p for p in (tmp_path / "usb").rglob("*.ofb")]
    doc = sh.json("--site", "kec", "disk", "export", "usb", "--to", auth)
    assert doc["withheld"] == [] and doc["rounds"][0]["sent_changes"] >= 1
