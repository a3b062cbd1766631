"""A relay forwarding a courier disk to the centre over real HTTP (uvicorn on loopback):
a bundle the centre refuses is set aside with its reason and never holds up the rest."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Replica, sync
from offsync.errors import RetryableTransportError, UnverifiedAnswerError
from offsync.server import create_app
from offsync.sync import forward
from offsync.transports import DiskTransport
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

OLD = 1_000_000_000  # an mtime in 2001: the file a reader meets first


def replica(path: Path, label: str) -> Replica:
    return Replica.open(str(path / f"{label}.sqlite"), identity=Identity.generate(label))


def no_sleep(delay: float) -> None:
    """Backoff delays are not waited out in tests."""


def to_centre(url: str, relay: Replica, centre: Replica, **options: object) -> HTTPTransport:
    options.setdefault("max_retries", 1)
    return HTTPTransport(url, relay.identity, server_key=centre.id, sleep=no_sleep, **options)  # type: ignore[arg-type]


def undecryptable(writer: Replica, recipient: bytes) -> bytes:
    """A bundle validly signed by ``writer``, sealed to ``recipient``, whose ciphertext
    was altered and re-signed: any relay can read its header and signature, only the
    recipient finds out (DecryptionError) that it cannot be opened."""
    writer.put("residents", "3519000000000666", {"name": "never arrives"})
    (sealed,) = writer.pack(recipient=recipient)
    hlen = int.from_bytes(sealed[8:12], "big")
    damaged = bytearray(sealed[:-64])
    damaged[12 + hlen + 4 + 40] ^= 1
    return bytes(damaged) + writer.identity.sign(bytes(damaged))


@pytest.fixture
def courier_disk(tmp_path: Path) -> Iterator[tuple[Path, Replica, Replica, Replica, Path]]:
    """A disk for the centre: a hostile bundle first, then a sub-district's backlog."""
    sub, relay, centre, mallory = (
        replica(tmp_path, x) for x in ("sub", "district", "centre", "mallory")
    )
    usb = tmp_path / "usb"
    usb.mkdir()
    with DiskTransport(usb, mallory, centre) as t:
        assert t.send([undecryptable(mallory, centre.id)]) == 1
    (hostile,) = t.outbox(centre.id).glob("*.ofb")
    os.utime(hostile, (OLD, OLD))
    for batch in range(3):  # three sealed segments: three bundles of 4 KiB at most
        with sub.batch():  # the last one larger than the others (one bundle is the largest)
            for i in range(batch * 20, batch * 20 + 20 + 10 * (batch == 2)):
                sub.put("residents", f"35190101{i:08d}", {"name": f"resident {i}", "pad": "x" * 60})
        sub.pack(sub.knowledge())
    sent = sync(sub, DiskTransport(usb, sub, centre, max_bundle_bytes=4096))
    assert sent.sent_bundles >= 3
    yield usb, sub, relay, centre, hostile
    for rep in (sub, relay, centre, mallory):
        rep.close()


def test_a_refused_bundle_is_set_aside_and_the_rest_forwarded(
    courier_disk: tuple[Path, Replica, Replica, Replica, Path],
) -> None:
    usb, sub, relay, centre, hostile = courier_disk
    source = DiskTransport(usb, centre.id)
    bundles = sorted(source.inbox.glob("*.ofb"), key=lambda p: p.stat().st_mtime)
    assert bundles[0] == hostile  # the relay meets it before anything else
    with LiveServer(create_app(centre)) as srv, to_centre(srv.url, relay, centre) as onward:
        report = forward(source, onward)
        # Everything behind the hostile bundle arrived at the centre.
        assert len(report.forwarded) == len(bundles) - 1
        assert sub.knowledge() <= centre.knowledge()
        assert centre.get("residents", "3519010100000059") == {
            "name": "resident 59",
            "pad": "x" * 60,
        }
        assert centre.get("residents", "3519000000000666") is None
        # The hostile one is reported with the centre's reason and set aside on the disk.
        [refused] = report.refused
        assert refused.source.startswith(hostile.name[:32])
        assert "DecryptionError" in refused.reason and "HTTP 422" in refused.reason
        assert not report.ok
        assert list(source.inbox.glob("*.ofb")) == []
        note = source.refused_dir / (hostile.name + ".txt")
        assert "DecryptionError" in note.read_text()
        assert (source.refused_dir / hostile.name).exists()
        # A second pass does not offer it again: nothing to forward, nothing refused.
        again = forward(DiskTransport(usb, centre.id), onward)
        assert again.forwarded == [] and again.refused == []
        assert onward.uploads and len(onward.uploads) == len(bundles) - 1


def test_a_refusal_of_the_path_stops_the_pass_and_sets_nothing_aside(
    courier_disk: tuple[Path, Replica, Replica, Replica, Path],
) -> None:
    """A wrong address (404, answered by something that is not an offsync server)
    would refuse every bundle: that is the path, not the bundles, so the pass stops
    and everything stays on the disk."""
    usb, sub, relay, centre, _ = courier_disk
    source = DiskTransport(usb, centre.id)
    before = sorted(p.name for p in source.inbox.glob("*.ofb"))
    with LiveServer(create_app(centre)) as srv:
        with (
            to_centre(srv.url + "/no/such/path", relay, centre) as wrong,
            pytest.raises(UnverifiedAnswerError) as info,
        ):
            forward(source, wrong)
        assert info.value.status == 404
        assert sorted(p.name for p in source.inbox.glob("*.ofb")) == before
        assert not source.refused_dir.exists()
        with to_centre(srv.url, relay, centre) as onward:
            assert len(forward(DiskTransport(usb, centre.id), onward).forwarded) == len(before) - 1
    assert sub.knowledge() <= centre.knowledge()


def test_a_next_hop_that_is_down_stops_the_pass_and_loses_nothing(
    courier_disk: tuple[Path, Replica, Replica, Replica, Path],
) -> None:
    usb, sub, relay, centre, _ = courier_disk
    source = DiskTransport(usb, centre.id)
    before = sorted(p.name for p in source.inbox.glob("*.ofb"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once it is closed
    with (
        to_centre(f"http://127.0.0.1:{port}", relay, centre) as down,
        pytest.raises(RetryableTransportError),
    ):
        forward(source, down)
    assert sorted(p.name for p in source.inbox.glob("*.ofb")) == before
    assert not source.refused_dir.exists()
    with LiveServer(create_app(centre), port=port) as srv, to_centre(srv.url, relay, centre) as t:
        report = forward(DiskTransport(usb, centre.id), t)
    assert len(report.forwarded) == len(before) - 1 and len(report.refused) == 1
    assert sub.knowledge() <= centre.knowledge()


def test_a_bundle_too_large_for_the_next_hop_is_set_aside(
    courier_disk: tuple[Path, Replica, Replica, Replica, Path],
) -> None:
    """A relay cannot re-cut a sealed bundle: one larger than the centre takes (413) is
    set aside with that reason, and the ones behind it still go."""
    usb, _, relay, centre, hostile = courier_disk
    hostile.unlink()  # only the sub-district's bundles here
    source = DiskTransport(usb, centre.id)
    sizes = {p.name: p.stat().st_size for p in source.inbox.glob("*.ofb")}
    largest = max(sizes, key=lambda n: sizes[n])
    limit = sizes[largest] - 1
    assert sorted(sizes.values())[-2] <= limit  # exactly one bundle is over it
    with (
        LiveServer(create_app(centre, max_upload_bytes=limit)) as srv,
        to_centre(srv.url, relay, centre) as onward,
    ):
        report = forward(source, onward)
    assert len(report.forwarded) == len(sizes) - 1
    [refused] = report.refused
    assert refused.source.startswith(largest[:32]) and "HTTP 413" in refused.reason
    assert (source.refused_dir / largest).exists() and list(source.inbox.glob("*.ofb")) == []
