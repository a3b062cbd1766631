"""From a location to a transport: ``offsync.transports.open_transport`` and
``parse_location`` (docs/transports.md, "Opening a transport from a location")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.errors import TransportError, UsageError
from offsync.server import create_app
from offsync.transports import (
    DiskTransport,
    FolderTransport,
    Location,
    open_transport,
    parse_location,
)
from offsync.transports.http import HTTPTransport
from offsync.transports.locations import Kind
from tests.helpers.http import LiveServer


def replica(label: str) -> Replica:
    return Replica.open(":memory:", identity=Identity.generate(label=label))


@pytest.mark.parametrize(
    "text", ["http://centre.example:8080", "https://centre.example/offsync/", "HTTPS://centre"]
)
def test_urls_are_http_locations(text: str) -> None:
    assert parse_location(text) == parse_location(text, "http") == Location("http", text)


def test_paths_are_folders_unless_the_caller_says_disk(tmp_path: Path) -> None:
    assert parse_location(tmp_path) == Location("folder", str(tmp_path))
    assert parse_location(str(tmp_path)) == Location("folder", str(tmp_path))
    assert parse_location(tmp_path, "disk") == Location("disk", str(tmp_path))
    assert parse_location(tmp_path, "disk").path == tmp_path
    # What the directory holds decides nothing: a courier disk's layout is still a folder
    # unless the caller says disk (a fresh disk holds nothing; a share is a mount too).
    (tmp_path / "OFFSYNC").mkdir()
    assert parse_location(tmp_path).kind == "folder"
    where = parse_location(tmp_path, "disk")
    assert parse_location(where) is where and parse_location(where, "disk") is where


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("ftp://centre.example/x", None, r"neither an http\(s\) URL nor a folder: .*ftp://"),
        ("file:///srv/share", None, "no transport for file://"),
        ("ssh://centre", "folder", "no transport for ssh://"),
        ("http://", None, "names no host"),
        ("https:///path", None, "names no host"),
        ("http://centre", "disk", "is a URL, not the path of a disk"),
        ("http://centre", "folder", "is a URL, not the path of a folder"),
        ("", None, "not empty"),
        ("http://centre", "usb", "kind must be one of http, folder, disk"),
    ],
)
def test_locations_that_name_no_transport_are_usage_errors(
    text: str, kind: str | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        parse_location(text, kind)  # type: ignore[arg-type]


def test_a_folder_must_exist_and_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "shrae"  # a typo of "share"
    with pytest.raises(UsageError, match="neither an http\\(s\\) URL nor a folder"):
        open_transport(missing, Identity.generate())
    with pytest.raises(UsageError, match="is not an http\\(s\\) URL"):
        parse_location(tmp_path, "http")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="nor a folder"):
        parse_location(tmp_path / "file")
    assert not missing.exists()


def test_a_disk_not_mounted_is_a_transport_error(tmp_path: Path) -> None:
    """As ``DiskTransport`` says it: plugging the disk in and running again helps."""
    with pytest.raises(TransportError, match="no disk mounted at"):
        open_transport(tmp_path / "usb", Identity.generate(), kind="disk")


def test_a_kind_that_contradicts_a_parsed_location_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a folder location, not a disk"):
        parse_location(Location("folder", str(tmp_path)), "disk")


def test_folder_and_disk_transports_with_their_options(tmp_path: Path) -> None:
    me, peer = Identity.generate(), Identity.generate()
    folder = open_transport(tmp_path, me, peer, kind="folder", max_bundle_bytes=1000)
    assert type(folder) is FolderTransport
    assert (folder.root, folder.me, folder.peer) == (tmp_path, me.public_key, peer.public_key)
    assert folder.recipient is None and folder.max_bundle_bytes == 1000
    sealed = open_transport(str(tmp_path), me, peer, encrypt=True)
    assert isinstance(sealed, FolderTransport) and sealed.recipient == peer.public_key

    disk = open_transport(tmp_path, me, peer, kind="disk", assume_free_bytes=1 << 30)
    assert type(disk) is DiskTransport
    assert disk.mount == tmp_path and disk.root == tmp_path / "OFFSYNC"
    assert disk.recipient == peer.public_key  # a disk seals by default
    assert disk.assume_free_bytes == 1 << 30
    inbound = open_transport(tmp_path, me.public_key, kind="disk")  # a key is enough
    assert inbound.peer is None


def test_options_a_transport_does_not_take_are_named(tmp_path: Path) -> None:
    me = Identity.generate()
    with pytest.raises(UsageError, match="assume_free_bytes: not an option of a folder") as info:
        open_transport(tmp_path, me, assume_free_bytes=0)
    assert "encrypt" in str(info.value)  # ... and what it does take
    with pytest.raises(UsageError, match="timeout: not an option of a disk"):
        open_transport(tmp_path, me, kind="disk", timeout=5)
    with pytest.raises(UsageError, match="reserve_bytes: not an option of an HTTP"):
        open_transport("http://centre", me, reserve_bytes=0)
    with pytest.raises(UsageError, match="a site key is 32 bytes"):
        open_transport(tmp_path, b"short")


def test_http_transports_sign_with_the_identity_and_pin_the_peer() -> None:
    site, centre = replica("site"), Identity.generate()
    with open_transport("http://centre:8080/", site, centre, timeout=5.0) as t:
        assert isinstance(t, HTTPTransport)
        assert t.url == "http://centre:8080" and t.identity is site.identity
        assert t.server_key == t.peer == centre.public_key
    with open_transport("https://centre", site.identity, server_key=centre.public_key) as t:
        assert isinstance(t, HTTPTransport) and t.server_key == centre.public_key
    with pytest.raises(UsageError, match="give the site's Identity or Replica"):
        open_transport("http://centre", site.id)
    with pytest.raises(UsageError, match="give the server's key once"):
        open_transport("http://centre", site, centre, server_key=centre.public_key)


def test_an_http_location_without_the_http_extra_says_which_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None  # as if the http extra were not installed\n"
        "from offsync import Identity\n"
        "from offsync.transports import open_transport\n"
        "try:\n"
        "    open_transport('http://centre', Identity.generate())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("UsageError ") and "offsync[http]" in out.stdout


def test_rounds_over_opened_transports(tmp_path: Path) -> None:
    """What ``open_transport`` opens carries a round: a server, a folder, a disk."""
    centre, site, district = replica("centre"), replica("site"), replica("district")
    site.put("residents", "3519010101900001", {"name": "Siti"})
    with (
        LiveServer(create_app(centre)) as srv,
        open_transport(srv.url, site, centre, max_retries=0) as t,
    ):
        assert sync(site, t).sent_changes == 1
    assert centre.get("residents", "3519010101900001") == {"name": "Siti"}
    kinds: tuple[Kind, ...] = ("folder", "disk")
    for kind in kinds:
        where = tmp_path / kind
        where.mkdir()
        with open_transport(where, site, district, kind=kind) as out:
            sync(site, out)
        with open_transport(where, district, kind=kind) as inbox:
            assert sync(district, inbox, push=False).applied == (1 if kind == "folder" else 0)
    assert district.get("residents", "3519010101900001") == {"name": "Siti"}
