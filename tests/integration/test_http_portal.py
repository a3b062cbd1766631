"""Something else answers in the centre's place: a captive portal, a proxy, a cache.

A real uvicorn on loopback serves a small ASGI app that plays it in front of the real
offsync app (HTML login pages, redirects, JSON without a receipt, another key's receipt,
a stale receipt of the real server). Nothing it says may count as a delivery: the
transport raises ``UnverifiedAnswerError`` (never a bare JSON error), nothing is counted
as sent, and a relay removes nothing from the courier disk or the folder it forwards.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.types import Receive, Scope, Send

import offsync
from offsync import Identity, Knowledge, Replica
from offsync.errors import TransportError, UnverifiedAnswerError
from offsync.http.wire import BUNDLES_MEDIA_TYPE
from offsync.server import create_app
from offsync.sync import forward
from offsync.transports import DiskTransport, FolderTransport
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

LOGIN = "<html><body><form action='/login'>Hotel Wi-Fi: accept the terms</form></body></html>"


def no_sleep(delay: float) -> None:
    pass


class Portal:
    """An ASGI app that answers some requests itself and hands the rest to ``real``."""

    def __init__(self, real: Any, mode: str, **props: Any) -> None:
        self.real, self.mode, self.props = real, mode, props
        self.answered = 0  # requests the portal answered itself

    def _answer(self, method: str, path: str) -> Response | None:
        mode = self.mode
        upload = method == "PUT" and path.startswith("/bundles/")
        bundle_id = path.rsplit("/", 1)[-1]
        if mode == "html":
            return HTMLResponse(LOGIN)
        if mode.startswith("redirect-"):
            return RedirectResponse("http://portal.example/login?next=x", int(mode[9:]))
        if mode == "json-without-receipt" and upload:
            return JSONResponse({"status": "applied", "id": bundle_id, "applied": 3})
        if mode == "json-of-something-else" and upload:
            return JSONResponse({"ok": True, "message": "queued"})
        if mode in ("receipt-of-another-key", "stale-receipt") and upload:
            receipt = base64.b64encode(self.props["receipt"]).decode()
            return JSONResponse({"status": "applied", "id": bundle_id, "receipt": receipt})
        if mode == "offsync-http/1" and path == "/challenge":  # before challenges existed
            return PlainTextResponse("Not Found", 404)
        if mode == "pull-html" and path == "/pull":
            return HTMLResponse(LOGIN)
        if mode == "pull-of-another-sender" and path == "/pull":
            frames = b"".join(len(b).to_bytes(4, "big") + b for b in self.props["bundles"])
            return Response(frames + b"\0\0\0\0", media_type=BUNDLES_MEDIA_TYPE)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._answer(scope["method"], scope["path"])
        if response is None:
            await self.real(scope, receive, send)
            return
        self.answered += 1
        while (await receive()).get("more_body"):  # read the request, as a proxy would
            pass
        await response(scope, receive, send)


UPLOAD_MODES = [
    "html",
    "redirect-302",
    "redirect-303",
    "redirect-307",
    "json-without-receipt",
    "json-of-something-else",
    "receipt-of-another-key",
    "stale-receipt",
]


@pytest.fixture
def centre() -> Iterator[Replica]:
    rep = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    yield rep
    rep.close()


def portal_in_front_of(centre: Replica, mode: str) -> Portal:
    props: dict[str, Any] = {}
    if mode == "receipt-of-another-key":
        props["receipt"] = Replica.open(":memory:", identity=Identity.generate()).receipt().encode()
    if mode == "stale-receipt":  # the real server's, signed by its key, from before
        props["receipt"] = centre.receipt().encode()
    return Portal(create_app(centre), mode, **props)


def site_with_changes(label: str = "site", n: int = 3) -> Replica:
    site = Replica.open(":memory:", identity=Identity.generate(label=label))
    for i in range(n):
        site.put("residents", f"35190101019000{i:02d}", {"name": f"resident {i}"})
    return site


@pytest.mark.parametrize("learnt", [False, True], ids=["server-key", "key-learnt"])
@pytest.mark.parametrize("mode", UPLOAD_MODES)
def test_an_upload_answered_by_a_portal_is_not_delivered(
    centre: Replica, mode: str, learnt: bool
) -> None:
    site = site_with_changes()
    (bundle,) = site.pack()
    portal = portal_in_front_of(centre, mode)
    key = None if learnt else centre.id
    with (
        LiveServer(portal) as srv,
        HTTPTransport(srv.url, site.identity, server_key=key, sleep=no_sleep) as t,
    ):
        said = r"not from an offsync server|not cover|not the expected"
        with pytest.raises(UnverifiedAnswerError, match=said):
            t.upload(bundle)
        assert t.uploads == []
        # A whole round says so too, and records no delivery.
        with pytest.raises(UnverifiedAnswerError):
            offsync.sync(site, t, pull=False)
    assert portal.answered >= 1
    assert centre.knowledge().restrict_origins([site.id]).count() == 0
    held = site.receipts().get(centre.id)
    assert held is None or held.knowledge.restrict_origins([site.id]).count() == 0


def test_the_error_is_retryable_and_says_what_it_is(centre: Replica) -> None:
    site = site_with_changes()
    with (
        LiveServer(portal_in_front_of(centre, "redirect-302")) as srv,
        HTTPTransport(srv.url, site.identity, server_key=centre.id) as t,
        pytest.raises(TransportError) as info,
    ):
        t.upload(site.pack()[0])
    assert isinstance(info.value, offsync.errors.RetryableTransportError)
    assert "captive portal" in str(info.value) and "portal.example/login" in str(info.value)
    assert info.value.status == 302  # type: ignore[attr-defined]


def _courier_disk(tmp_path: Path, centre: Replica) -> tuple[Replica, DiskTransport]:
    """A sub-district's bundle sealed to the centre on a courier disk, and the centre's
    view of the disk (what a relay forwards from)."""
    sub = site_with_changes("sub")
    usb = tmp_path / "usb"
    usb.mkdir()
    offsync.sync(sub, DiskTransport(usb, sub, centre))
    return sub, DiskTransport(usb, centre.id)


def _shared_folder(tmp_path: Path, centre: Replica) -> tuple[Replica, FolderTransport]:
    sub = site_with_changes("sub")
    share = tmp_path / "share"
    offsync.sync(sub, FolderTransport(share, sub, centre, encrypt=True))
    return sub, FolderTransport(share, centre.id)


@pytest.mark.parametrize("medium", ["disk", "folder"])
@pytest.mark.parametrize("mode", UPLOAD_MODES)
def test_a_relay_forwarding_to_a_portal_removes_nothing(
    tmp_path: Path, centre: Replica, mode: str, medium: str
) -> None:
    sub, source = (_courier_disk if medium == "disk" else _shared_folder)(tmp_path, centre)
    waiting = sorted(p.name for p in source.inbox.iterdir())
    assert waiting
    with (
        LiveServer(portal_in_front_of(centre, mode)) as srv,
        HTTPTransport(srv.url, sub.identity, sleep=no_sleep) as target,
        pytest.raises(UnverifiedAnswerError),
    ):
        forward(source, target)
    assert sorted(p.name for p in source.inbox.iterdir()) == waiting
    assert centre.knowledge().restrict_origins([sub.id]).count() == 0
    # The same relay, once the link reaches the centre: delivered, and only then removed.
    with LiveServer(create_app(centre)) as srv, HTTPTransport(srv.url, sub.identity) as target:
        assert len(forward(source, target).forwarded) == 1
    assert not [p for p in source.inbox.iterdir() if p.suffix == ".ofb"]
    assert centre.knowledge().restrict_origins([sub.id]).count() == 3


@pytest.mark.parametrize("mode", ["html", "redirect-302", "pull-html", "pull-of-another-sender"])
def test_a_pull_answered_by_a_portal_is_refused(centre: Replica, mode: str) -> None:
    centre.put("residents", "3519010101900001", {"name": "Siti"})
    other = site_with_changes("other")
    portal = Portal(create_app(centre), mode, bundles=other.pack())
    site = Replica.open(":memory:", identity=Identity.generate(label="site"))
    with (
        LiveServer(portal) as srv,
        HTTPTransport(srv.url, site.identity, server_key=centre.id, sleep=no_sleep) as t,
    ):
        with pytest.raises(UnverifiedAnswerError, match="not from an offsync server"):
            for bundle in t.receive(Knowledge()):
                site.apply(bundle)
        with pytest.raises(UnverifiedAnswerError):
            offsync.sync(site, t)
    assert site.knowledge() == Knowledge()


# -- what a real server answers does count, whatever it did with the changes -------------


def test_an_upload_the_server_quarantines_is_delivered() -> None:
    authority = Identity.generate(label="authority")
    centre = Replica.open(
        ":memory:", identity=Identity.generate(label="centre"), trust=[authority.public_key]
    )
    site = site_with_changes()  # not certified: the centre holds its changes in quarantine
    with LiveServer(create_app(centre)) as srv, HTTPTransport(srv.url, site.identity) as t:
        report = offsync.sync(site, t, pull=False)
        assert t.uploads[0]["quarantined"] == 3
    assert report.sent_changes == 3 and len(centre.quarantined()) == 1
    assert site.receipts()[centre.id].knowledge.restrict_origins([site.id]).count() == 3


def test_an_upload_the_server_already_holds_is_delivered(centre: Replica) -> None:
    site = site_with_changes()
    (bundle,) = site.pack()
    centre.apply(bundle)  # came by courier first; this server never saw the upload
    with LiveServer(create_app(centre)) as srv, HTTPTransport(srv.url, site.identity) as t:
        answer = t.upload(bundle)
    assert (answer["applied"], answer["duplicates"]) == (0, 3)


def test_a_receipt_only_bundle_is_delivered(centre: Replica) -> None:
    site = Replica.open(":memory:", identity=Identity.generate(label="empty"))
    (bundle,) = site.pack(always=True)
    assert offsync.read_header(bundle)[0].ranges == Knowledge()
    with LiveServer(create_app(centre)) as srv, HTTPTransport(srv.url, site.identity) as t:
        assert t.upload(bundle)["status"] == "applied"
    assert site.id in centre.receipts()


def test_a_server_without_challenges_is_named(centre: Replica) -> None:
    site = Replica.open(":memory:", identity=Identity.generate(label="site"))
    with (
        LiveServer(Portal(create_app(centre), "offsync-http/1")) as srv,
        HTTPTransport(srv.url, site.identity, server_key=centre.id) as t,
        pytest.raises(UnverifiedAnswerError, match="older than this client"),
    ):
        list(t.receive(Knowledge()))
