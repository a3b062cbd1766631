"""The HTTP server and client under what the field and outsiders do to them: a flood of
junk from many keys, a site clock a week off, a server with a small upload limit or a
proxy with a smaller one, a full disk at the centre, a pull the server refuses, and
methods and headers the OpenAPI document must describe exactly. Real uvicorn on
loopback (and a real ``offsync serve`` process where clocks differ), no mocks."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.responses import HTMLResponse, JSONResponse
from starlette.types import Receive, Scope, Send

import offsync
from offsync import Identity, Knowledge, Replica
from offsync.errors import PeerRefusedError, PeerStorageFullError, StorageFullError
from offsync.http.bodies import encode_pull_request
from offsync.http.signing import sign_request
from offsync.segment import hash32
from offsync.server import CONTENT_RANGE_PATTERN, create_app, openapi
from offsync.stores.sqlite import SQLiteStore
from offsync.transports.base import Refused
from offsync.transports.http import HTTPTransport
from tests.helpers.cli import Shell, serving
from tests.helpers.http import LiveServer


def no_sleep(delay: float) -> None:
    pass


def site_with(records: int, size: int = 0, label: str = "site") -> Replica:
    site = Replica.open(":memory:", identity=Identity.generate(label=label))
    with site.batch():
        for i in range(records):
            site.put("residents", f"3519{i:012d}", {"n": i, "blob": os.urandom(size)})
    return site


def challenge(http: httpx.Client) -> bytes:
    return bytes.fromhex(http.get("/challenge").json()["challenge"])


# -- points 9 and 11: replay protection without the site's clock --------------------------


def test_a_flood_of_junk_from_many_keys_leaves_legitimate_sites_served(tmp_path: Path) -> None:
    """Junk-signed pulls, pulls signed by fresh keys (valid, malformed or replayed) and
    junk uploads: nothing is recorded for what fails its signature, nothing fills up,
    and real sites are served after it without one 503."""
    centre = Replica.open(str(tmp_path / "centre.sqlite"), identity=Identity.generate())
    centre.put("notices", "n1", {"text": "clinic closed friday"})
    app = create_app(centre, max_in_flight=2)
    state = app.state.offsync
    body = encode_pull_request(Knowledge(), 1 << 20, False)
    seen: dict[str, list[int]] = {}
    served = 0
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        for i in range(200):
            key, kind = (
                Identity.generate(),
                ("junk", "impostor", "malformed", "valid", "upload")[i % 5],
            )
            headers = sign_request(key, centre.id, "pull", body, challenge(http))
            sent = body
            if kind == "junk":
                headers["offsync-signature"] = os.urandom(64).hex()
            elif kind == "impostor":
                headers["offsync-site"] = Identity.generate().public_key.hex()
            elif kind == "malformed":
                sent = b"\x81\xa1x\x01"
                headers = sign_request(key, centre.id, "pull", sent, challenge(http))
            if kind == "upload":
                junk = os.urandom(2000)
                r = http.put(f"/bundles/{hash32(junk).hex()}", content=junk)
            else:
                r = http.post("/pull", content=sent, headers=headers)
            seen.setdefault(kind, []).append(r.status_code)
            if kind == "valid":
                served += 1
                replay = http.post("/pull", content=sent, headers=headers)
                seen.setdefault("replayed", []).append(replay.status_code)
        store = centre.store
        assert isinstance(store, SQLiteStore)
        with centre.lock:
            recorded = store.db.execute("SELECT count(*) FROM http_nonces").fetchone()[0]
        assert {k: set(v) for k, v in seen.items()} == {
            "junk": {401},
            "impostor": {401},
            "malformed": {422},
            "valid": {200},
            "replayed": {401},
            "upload": {422},
        }
        assert recorded == served == 40  # only what was served, once each
        for n in range(3):
            site = site_with(5, label=f"legit{n}")
            with HTTPTransport(srv.url, site.identity, server_key=centre.id, max_retries=0) as t:
                report = offsync.sync(site, t)
            # The centre's notice and the sites served before this one.
            assert report.ok and report.applied == 1 + 5 * n and report.sent_changes == 5
    assert state.refused_busy == 0


def test_abandoned_partial_uploads_cannot_hold_every_slot(tmp_path: Path) -> None:
    """Anyone can start a chunked upload and walk away; a flood of them once took every
    partial-upload slot, and real chunked uploads got 503 for a week."""
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    uploads = tmp_path / "uploads"
    app = create_app(centre, upload_dir=uploads, max_partial_uploads=5)
    site = site_with(10, size=30_000)
    (bundle,) = site.pack()
    with LiveServer(app) as srv, httpx.Client(base_url=srv.url) as http:
        for _ in range(20):
            junk = os.urandom(100)
            r = http.put(
                f"/bundles/{os.urandom(32).hex()}",
                content=junk,
                headers={"Content-Range": "bytes 0-99/1000000"},
            )
            assert r.status_code == 202, r.text
        assert len(list(uploads.glob("*.part"))) == 5
        with HTTPTransport(srv.url, site.identity, chunk_bytes=64 * 1024, max_retries=0) as t:
            assert t.upload(bundle)["applied"] == 10
    assert app.state.offsync.refused_busy == 0
    assert centre.state_digest() == site.state_digest()


@pytest.mark.parametrize("days", [7, -7], ids=["a-week-ahead", "a-week-behind"])
def test_a_site_whose_clock_is_a_week_off_delivers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, days: int
) -> None:
    """The centre runs in its own process with the true time; this process's clock (the
    site's wall clock, its HLC and anything that signs) is a week off."""
    sh = Shell(tmp_path)
    centre_key = bytes.fromhex(sh.init("pusat"))
    sh.run("--site", "pusat", "put", "notices", "n1", "text=clinic closed friday")
    with serving(sh, "pusat") as (url, _):
        shift = days * 24 * 3600
        true_time, true_ns = time.time, time.time_ns
        monkeypatch.setattr(time, "time", lambda: true_time() + shift)
        monkeypatch.setattr(time, "time_ns", lambda: true_ns() + shift * 10**9)
        site = site_with(3)
        with HTTPTransport(url, site.identity, server_key=centre_key, sleep=no_sleep) as t:
            report = offsync.sync(site, t)
    assert report.ok, report.refused
    # The centre's notice: held until a clock a week behind reaches its time.
    assert report.applied + report.quarantined == 1
    assert report.sent_changes == 3
    # Delivered: the centre's receipt holds all three (in quarantine if stamped ahead).
    assert site.receipts()[centre_key].knowledge.restrict_origins([site.id]).count() == 3


class RefusePulls:
    """An integrator's middleware that lets sites push but not pull (yet)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/pull":
            reason = "this site's certificate does not allow reading here"
            response = JSONResponse({"error": "NotAuthorisedError", "reason": reason}, 403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def test_a_refused_pull_does_not_stop_the_push() -> None:
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    site = site_with(4)
    with (
        LiveServer(RefusePulls(create_app(centre))) as srv,
        HTTPTransport(srv.url, site.identity, server_key=centre.id) as t,
    ):
        report = offsync.sync(site, t)
    assert report.sent_changes == 4 and centre.knowledge().restrict_origins([site.id]).count() == 4
    (refused,) = report.refused  # reported once, though the round would pull twice
    assert refused == Refused(f"pull from {srv.url}", refused.reason)
    assert "403" in refused.reason and "does not allow reading" in refused.reason
    assert not report.ok


# -- point 12: the server's upload limit, and a proxy's -----------------------------------


def test_delivery_adapts_to_a_smaller_server_upload_limit() -> None:
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    site = site_with(60, size=20_000)  # 1.2 MB that does not compress, in 256 KiB segments
    with (
        LiveServer(create_app(centre, max_upload_bytes=300_000)) as srv,
        HTTPTransport(srv.url, site.identity, sleep=no_sleep) as t,
    ):
        report = offsync.sync(site, t)
        assert t.server_max_upload == 300_000 and t.max_bundle_bytes == 300_000
    assert report.sent_changes == 60 and report.sent_bundles >= 5
    assert report.sent_bytes > 1_200_000
    assert centre.state_digest() == site.state_digest()


def test_a_413_that_names_the_limit_teaches_it() -> None:
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    site = site_with(30, size=20_000)  # 600 KB in three segments
    (bundle,) = site.pack()  # made before anyone knew the limit (a relay forwards it)
    with (
        LiveServer(create_app(centre, max_upload_bytes=300_000)) as srv,
        HTTPTransport(srv.url, site.identity, server_key=centre.id) as t,
    ):
        with pytest.raises(PeerRefusedError) as info:
            t.upload(bundle)
        assert info.value.status == 413
        assert t.max_bundle_bytes == 300_000  # the next round packs to it
        assert offsync.sync(site, t).sent_changes == 30
    assert centre.state_digest() == site.state_digest()


class BodyLimit:
    """A reverse proxy that refuses request bodies over ``limit`` with its own page."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit, self.refused = app, limit, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if scope["type"] == "http" and int(length) > self.limit:
            self.refused += 1
            page = "<html><center><h1>413 Request Entity Too Large</h1></center></html>"
            await HTMLResponse(page, 413)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def test_a_proxy_body_limit_makes_chunks_smaller() -> None:
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    site = site_with(20, size=20_000)
    (bundle,) = site.pack()
    assert len(bundle) > 400_000
    proxy = BodyLimit(create_app(centre), 100_000)
    with LiveServer(proxy) as srv, HTTPTransport(srv.url, site.identity, sleep=no_sleep) as t:
        answer = t.upload(bundle)
        assert t.chunk_bytes <= 100_000
    assert answer["applied"] == 20 and proxy.refused >= 1
    assert centre.state_digest() == site.state_digest()


# -- point 5: a full disk at the centre -----------------------------------------------------


class FullDisk(SQLiteStore):
    """A real SQLite store on a disk that fills up: writes raise ``StorageFullError`` as
    the store does on ENOSPC (reads still work)."""

    full = False

    def add_segments(self, rows: Any) -> None:
        if self.full:
            raise StorageFullError("database or disk is full")
        super().add_segments(rows)

    def record_nonce(self, nonce: bytes, expires: int, now: int) -> bool:
        if self.full:
            raise StorageFullError("database or disk is full")
        return super().record_nonce(nonce, expires, now)


@pytest.fixture
def full_centre(tmp_path: Path) -> Iterator[tuple[Replica, FullDisk]]:
    store = FullDisk(str(tmp_path / "centre.sqlite"))
    centre = Replica(store, Identity.generate(label="centre"))
    centre.put("notices", "n1", {"text": "x"})
    store.full = True
    yield centre, store
    centre.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_full_disk_is_answered_507_and_the_client_does_not_hammer_it(
    tmp_path: Path, full_centre: tuple[Replica, FullDisk], chunked: bool
) -> None:
    centre, store = full_centre
    site = site_with(6, size=30_000)
    (bundle,) = site.pack()
    uploads = tmp_path / "uploads"
    waited: list[float] = []
    options: dict[str, Any] = {"chunk_bytes": 64 * 1024} if chunked else {}
    with LiveServer(create_app(centre, upload_dir=uploads)) as srv:
        raw = httpx.put(f"{srv.url}/bundles/{hash32(bundle).hex()}", content=bundle)
        assert raw.status_code == 507 and raw.json()["error"] == "StorageFullError"
        assert "operator" in raw.json()["reason"] and "retry-after" not in raw.headers
        with HTTPTransport(srv.url, site.identity, sleep=waited.append, **options) as t:
            with pytest.raises(PeerStorageFullError, match="storage is full"):
                t.upload(bundle)
            with pytest.raises(PeerStorageFullError):
                list(t.receive(Knowledge()))  # a pull records its challenge: a write
            assert waited == [] and t.uploads == []  # no retry loop against a full disk
            if chunked:  # what arrived is kept: once space is freed, no byte goes again
                (partial,) = uploads.glob("*.part")
                assert partial.stat().st_size == len(bundle)
            store.full = False
            sent: list[int] = []
            t.progress = lambda bundle_id, done, total: sent.append(done)
            assert t.upload(bundle)["applied"] == 6
            if chunked:
                assert sent == [len(bundle)]
    assert centre.knowledge().restrict_origins([site.id]).count() == 6


# -- point 14: what the OpenAPI document says is what the server does ----------------------


@pytest.fixture(scope="module")
def plain_server() -> Iterator[LiveServer]:
    centre = Replica.open(":memory:", identity=Identity.generate(label="centre"))
    with LiveServer(create_app(centre)) as srv:
        yield srv
    centre.close()


@pytest.mark.parametrize("path", sorted(openapi()["paths"]))
def test_405_answers_list_every_method_of_the_route(plain_server: LiveServer, path: str) -> None:
    documented = {m.upper() for m in openapi()["paths"][path]}
    allowed = documented | ({"HEAD"} if "GET" in documented else set())
    url = plain_server.url + path.replace("{id}", "ab" * 32)
    for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - documented):
        r = httpx.request(method, url)
        assert r.status_code == 405, (method, path)
        assert set(r.headers["allow"].split(", ")) == allowed, (method, path)


# What can travel in a header value: visible ASCII, spaces and tabs inside.
_HEADER_TEXT = st.text(st.sampled_from("bytes */-0123456789 \t,;=xyzB"), max_size=24) | st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(value="bytes */0")  # once answered 500 (an empty upload to apply)
@given(
    value=st.from_regex(CONTENT_RANGE_PATTERN, fullmatch=True).filter(lambda v: len(v) < 60)
    | _HEADER_TEXT
)
@pytest.mark.slow
def test_content_range_pattern_is_exactly_what_the_server_accepts(
    plain_server: LiveServer, value: str
) -> None:
    spec = openapi()["paths"]["/bundles/{id}"]["put"]["parameters"]
    (header,) = [p for p in spec if p["name"] == "Content-Range"]
    assert header["schema"]["pattern"] == CONTENT_RANGE_PATTERN
    value = value.strip(" \t")  # HTTP drops the whitespace around a header value
    bundle_id = hashlib.blake2b(value.encode(), digest_size=32).hexdigest()
    r = httpx.put(
        f"{plain_server.url}/bundles/{bundle_id}",
        content=b"x",
        headers={"Content-Range": value},
    )
    refused = r.status_code == 400 and r.json()["reason"].startswith("Content-Range must be")
    assert refused == (re.search(CONTENT_RANGE_PATTERN, value) is None), (value, r.text)


def test_a_bundle_id_is_exactly_64_hex_digits(plain_server: LiveServer) -> None:
    ok = "ab" * 32
    for bad in (ok + "%0A", ok + "0", ok.upper(), ok[:-1]):
        assert httpx.get(f"{plain_server.url}/bundles/{bad}").status_code == 400, bad
        assert httpx.put(f"{plain_server.url}/bundles/{bad}", content=b"x").status_code == 400
    assert httpx.get(f"{plain_server.url}/bundles/{ok}").status_code == 200
