"""The HTTP server and client against each other: a real uvicorn on loopback, no mocks."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import offsync
from offsync import Identity, Knowledge, Replica, read_header
from offsync.errors import PeerRefusedError, RetryableTransportError, TransportError
from offsync.http.bodies import encode_pull_request
from offsync.http.signing import Challenges, challenge_key, sign_request
from offsync.segment import hash32
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from tests.helpers.http import LiveServer

CHUNK = 64 * 1024


def no_sleep(delay: float) -> None:
    """Tests do not wait out backoff delays; what was asked is checked instead."""


def replica(
    path: str = ":memory:", label: str = "site", identity: Identity | None = None
) -> Replica:
    return Replica.open(path, identity=identity or Identity.generate(label=label))


def fill(rep: Replica, records: int, size: int = 0, prefix: str = "k") -> None:
    """``records`` records, each with ``size`` incompressible bytes (to make big bundles)."""
    with rep.batch():
        for i in range(records):
            rep.put("residents", f"{prefix}{i}", {"n": i, "blob": os.urandom(size)})


@pytest.fixture
def centre() -> Iterator[Replica]:
    rep = replica(label="centre")
    yield rep
    rep.close()


@pytest.fixture
def served(centre: Replica) -> Iterator[LiveServer]:
    with LiveServer(create_app(centre)) as srv:
        yield srv


def transport(srv: LiveServer, rep: Replica, **options: Any) -> HTTPTransport:
    options.setdefault("sleep", no_sleep)
    options.setdefault("backoff", 0.001)
    return HTTPTransport(srv.url, rep.identity, **options)


# -- sync rounds ---------------------------------------------------------------------------


def test_sync_round_trip_converges_and_carries_receipts(
    centre: Replica, served: LiveServer
) -> None:
    site = replica(label="site")
    fill(site, 40)
    fill(centre, 5, prefix="c")
    with transport(served, site) as t:
        first = offsync.sync(site, t)
        second = offsync.sync(site, t)
    assert first.applied == 5 and first.sent_changes == 40
    assert second.applied == 0 and second.sent_changes == 0
    assert site.state_digest() == centre.state_digest()
    # The centre's answer to the upload carries its fresh receipt: it holds the site's 40.
    # (An idle second round moves no bundle; its newest receipt, from GET /knowledge,
    # states the centre's own changes: the site keeps the union of what they said.)
    assert t.last_receipt is not None and t.last_receipt.replica == centre.id
    said = site.peer_knowledge(centre.id)[centre.id]
    assert said.restrict_origins([site.id]).count() == 40
    # And the centre learned the site's receipt from the uploaded bundle's header.
    assert centre.receipts()[site.id].knowledge.restrict_origins([centre.id]).count() == 5


def test_sync_through_an_app_mounted_in_a_starlette_app(centre: Replica) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("registry")

    outer = Starlette(routes=[Route("/", home), Mount("/api/offsync", app=create_app(centre))])
    site = replica()
    fill(site, 3)
    fill(centre, 2, prefix="c")
    with LiveServer(outer) as srv:
        with HTTPTransport(srv.url + "/api/offsync", site.identity, sleep=no_sleep) as t:
            report = offsync.sync(site, t)
        assert httpx.get(srv.url + "/").text == "registry"
    assert report.applied == 2 and site.state_digest() == centre.state_digest()


def test_pull_cut_at_the_response_limit_continues(centre: Replica) -> None:
    fill(centre, 80, size=40_000)  # about 3.2 MB that does not compress
    site = replica()
    app = create_app(centre, max_pull_response_bytes=1_500_000)
    with LiveServer(app) as srv, transport(srv, site, max_bundle_bytes=100_000) as t:
        bundles = list(t.receive(site.knowledge()))
    assert len(bundles) >= 4 and all(len(b) <= 1024 * 1024 for b in bundles)
    assert t.pulls >= 2  # the first answer was cut at 1.5 MB and pulled again
    for b in bundles:
        site.apply(b)
    assert site.state_digest() == centre.state_digest()


def test_pull_encrypted_to_the_requesting_site(centre: Replica, served: LiveServer) -> None:
    fill(centre, 3)
    site = replica()
    with transport(served, site, pull_encrypted=True) as t:
        bundles = list(t.receive(Knowledge()))
    assert all(read_header(b)[0].recipient == site.id for b in bundles)
    for b in bundles:
        site.apply(b)
    assert site.state_digest() == centre.state_digest()


def test_upload_encrypted_to_the_server(centre: Replica, served: LiveServer) -> None:
    site = replica()
    fill(site, 3)
    with transport(served, site, encrypt=True) as t:
        offsync.sync(site, t, pull=False)
        assert t.recipient == centre.id
    assert site.state_digest() == centre.state_digest()


def test_readable_hook_hides_origins(centre: Replica) -> None:
    other = replica(label="other")
    fill(other, 4, prefix="o")
    for b in other.pack():
        centre.apply(b)
    fill(centre, 2, prefix="c")
    site = replica()
    app = create_app(centre, readable=lambda site_key, origin: origin != other.id)
    with LiveServer(app) as srv, transport(srv, site) as t:
        offsync.sync(site, t, push=False)
    assert site.knowledge().restrict_origins([other.id]).count() == 0
    assert site.knowledge().restrict_origins([centre.id]).count() == 2


def test_wrong_server_key_is_refused(served: LiveServer) -> None:
    site = replica()
    with (
        transport(served, site, server_key=Identity.generate().public_key) as t,
        pytest.raises(TransportError, match="not the expected"),
    ):
        t.knowledge()


# -- uploads -------------------------------------------------------------------------------


def test_same_bundle_three_times_is_applied_once(centre: Replica, served: LiveServer) -> None:
    site = replica()
    fill(site, 10)
    (bundle,) = site.pack()
    with transport(served, site) as t:
        answers = [t.upload(bundle) for _ in range(3)]
    assert answers[0]["status"] == "applied" and answers[0]["applied"] == 10
    assert [a["status"] for a in answers[1:]] == ["duplicate", "duplicate"]
    digest = centre.state_digest()
    # A server that forgot the id (a fresh app on the same replica) applies nothing again.
    with LiveServer(create_app(centre)) as srv2, transport(srv2, site) as t2:
        again = t2.upload(bundle)
    assert again["applied"] == 0 and again["duplicates"] == 10
    assert (
        centre.state_digest() == digest
        and centre.knowledge().restrict_origins([site.id]).count() == 10
    )


def test_concurrent_chunked_uploads_of_one_bundle_apply_it_once(
    centre: Replica, served: LiveServer
) -> None:
    site = replica()
    fill(site, 8, size=30_000)
    (bundle,) = site.pack()
    barrier = threading.Barrier(3)
    answers: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            with transport(served, site, chunk_bytes=CHUNK, max_retries=20) as t:
                barrier.wait(30)
                answers.append(t.upload(bundle))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors
    assert sum(a.get("applied", 0) for a in answers) == 8
    assert centre.knowledge().restrict_origins([site.id]).count() == 8


def test_upload_resumes_after_the_server_restarts(tmp_path: Path) -> None:
    path, uploads = str(tmp_path / "centre.sqlite"), tmp_path / "uploads"
    centre_id = Identity.generate(label="centre")
    site = replica()
    fill(site, 10, size=60_000)
    (bundle,) = site.pack()
    assert len(bundle) > 8 * CHUNK
    first = replica(path, identity=centre_id)
    srv = LiveServer(create_app(first, upload_dir=uploads)).start()
    stopped_at: list[int] = []

    def stop_after_three_chunks(bundle_id: bytes, sent: int, total: int) -> None:
        if sent >= 3 * CHUNK and not stopped_at:
            stopped_at.append(sent)
            srv.stop()  # between two chunks: the next one finds nobody listening

    t = transport(srv, site, chunk_bytes=CHUNK, max_retries=2, progress=stop_after_three_chunks)
    with pytest.raises(RetryableTransportError):
        t.upload(bundle)
    first.close()
    (partial,) = uploads.glob("*.part")
    assert partial.stat().st_size == 3 * CHUNK

    second = replica(path, identity=centre_id)
    resumed: list[int] = []
    t.progress = lambda bundle_id, sent, total: resumed.append(sent)
    with LiveServer(create_app(second, upload_dir=uploads), port=srv.port):
        answer = t.upload(bundle)
    t.close()
    assert resumed[0] == 4 * CHUNK  # the first chunk sent again is the fourth
    assert answer["applied"] == 10
    assert not list(uploads.glob("*.part"))
    assert second.state_digest() == site.state_digest()
    second.close()


def test_a_chunk_broken_mid_body_keeps_what_arrived(centre: Replica, tmp_path: Path) -> None:
    site = replica()
    fill(site, 40, size=80_000)
    (bundle,) = site.pack()
    assert len(bundle) > 2_500_000
    bundle_id = hash32(bundle).hex()
    app = create_app(centre, upload_dir=tmp_path / "uploads")
    state = app.state.offsync
    chunk = 2_000_000
    with LiveServer(app) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(
            (
                f"PUT /bundles/{bundle_id} HTTP/1.1\r\nHost: test\r\n"
                f"Content-Length: {chunk}\r\n"
                f"Content-Range: bytes 0-{chunk - 1}/{len(bundle)}\r\n\r\n"
            ).encode()
            + bundle[:1_500_000]
        )
        status = wait_for(
            lambda: httpx.get(f"{srv.url}/bundles/{bundle_id}").json(),
            lambda s: s["received"] >= 1024 * 1024,
        )
        sock.close()  # the link breaks with 500 KB of the chunk still unsent
        wait_for(lambda: dict(state.upload_locks), lambda locks: not locks)
        status = httpx.get(f"{srv.url}/bundles/{bundle_id}").json()
        received = status["received"]
        assert 1024 * 1024 <= received <= 1_500_000
        sent: list[int] = []
        with transport(srv, site, chunk_bytes=CHUNK, progress=lambda b, s, t: sent.append(s)) as t:
            answer = t.upload(bundle)
    assert sent[0] == received + CHUNK
    assert answer["applied"] == 40
    assert centre.state_digest() == site.state_digest()


def wait_for(get: Callable[[], Any], done: Callable[[Any], bool], limit: float = 30) -> Any:
    """Poll until ``done(get())`` (bounded): for effects of a socket closed under a server."""
    deadline = time.monotonic() + limit
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting; last value {value!r}"
        time.sleep(0.02)


def test_bundle_with_a_bad_signature_is_refused_with_the_reason(
    centre: Replica, served: LiveServer
) -> None:
    site = replica()
    fill(site, 3)
    (bundle,) = site.pack()
    forged = bundle[:-1] + bytes([bundle[-1] ^ 1])
    digest = centre.state_digest()
    with transport(served, site) as t, pytest.raises(PeerRefusedError) as info:
        t.upload(forged)
    assert info.value.status == 422 and info.value.error == "SignatureError"
    assert "SignatureError" in str(info.value)
    assert (
        centre.state_digest() == digest
        and centre.knowledge().restrict_origins([site.id]).count() == 0
    )


def test_bundle_sealed_for_another_site_is_refused(centre: Replica, served: LiveServer) -> None:
    site = replica()
    fill(site, 3)
    (bundle,) = site.pack(recipient=Identity.generate().public_key)
    with transport(served, site) as t, pytest.raises(PeerRefusedError) as info:
        t.upload(bundle)
    assert info.value.error == "DecryptionError"


def test_bytes_that_do_not_hash_to_the_id_are_refused(centre: Replica, served: LiveServer) -> None:
    site = replica()
    fill(site, 3)
    (bundle,) = site.pack()
    wrong = "00" * 32
    r = httpx.put(f"{served.url}/bundles/{wrong}", content=bundle)
    assert r.status_code == 422 and r.json()["error"] == "BundleIdMismatch"
    r = httpx.put(f"{served.url}/bundles/not-hex", content=bundle)
    assert r.status_code == 400
    assert centre.knowledge().restrict_origins([site.id]).count() == 0


@pytest.mark.parametrize("how", ["whole", "chunked", "streamed-without-length"])
def test_oversized_upload_is_refused_with_413_and_nothing_kept(
    centre: Replica, tmp_path: Path, how: str
) -> None:
    site = replica()
    fill(site, 2, size=20_000)
    (bundle,) = site.pack()
    uploads = tmp_path / "uploads"
    digest = centre.state_digest()
    with LiveServer(create_app(centre, max_upload_bytes=10_000, upload_dir=uploads)) as srv:
        if how == "streamed-without-length":

            def body() -> Iterator[bytes]:
                for i in range(0, len(bundle), 4096):
                    yield bundle[i : i + 4096]

            r = httpx.put(f"{srv.url}/bundles/{hash32(bundle).hex()}", content=body())
            assert r.status_code == 413 and r.json()["error"] == "LimitExceededError"
        else:
            chunk = 4096 if how == "chunked" else 1 << 20
            with transport(srv, site, chunk_bytes=chunk) as t, pytest.raises(PeerRefusedError) as e:
                t.upload(bundle)
            assert e.value.status == 413 and "limit of 10000" in e.value.reason
    assert not list(uploads.iterdir())
    assert (
        centre.state_digest() == digest
        and centre.knowledge().restrict_origins([site.id]).count() == 0
    )


# -- saturation ----------------------------------------------------------------------------


def test_a_run_of_503_answers_is_honoured(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=1, retry_after=1, admission_wait=0)
    state = app.state.offsync
    assert state.try_acquire()  # the test holds the only slot and nobody may wait: 503s
    asked: list[float] = []

    def sleep(delay: float) -> None:
        asked.append(delay)
        if len(asked) == 3:
            state.release()  # the fourth attempt finds the slot free

    site = replica()
    fill(site, 5)
    with LiveServer(app) as srv, transport(srv, site, sleep=sleep, max_retries=5) as t:
        report = offsync.sync(site, t, pull=False)
    assert report.sent_bundles == 1 and centre.knowledge().restrict_origins([site.id]).count() == 5
    assert state.refused_busy == 3
    assert len(asked) == 3 and all(d >= 1 for d in asked)  # Retry-After: 1 was honoured
    assert state.in_flight == 0


def test_the_client_gives_up_with_a_retryable_error(centre: Replica) -> None:
    app = create_app(centre, max_in_flight=0, retry_after=3)
    site = replica()
    fill(site, 2)
    asked: list[float] = []
    with LiveServer(app) as srv:
        with transport(srv, site, sleep=asked.append, max_retries=2) as t:
            with pytest.raises(RetryableTransportError) as info:
                t.upload(site.pack()[0])
            assert info.value.retry_after == 3
            assert asked and len(asked) == 2 and min(asked) >= 3
            with pytest.raises(RetryableTransportError):
                list(t.receive(Knowledge()))
        # A Retry-After longer than the client is willing to wait gives up at once.
        asked.clear()
        with (
            transport(srv, site, sleep=asked.append, max_retry_after=1) as t,
            pytest.raises(RetryableTransportError),
        ):
            t.upload(site.pack()[0])
        assert asked == []
    assert centre.knowledge().restrict_origins([site.id]).count() == 0


def test_a_replica_busy_beyond_the_limit_answers_503(centre: Replica) -> None:
    app = create_app(centre, busy_timeout=0.05)
    with LiveServer(app) as srv, centre.lock:  # another writer holds the replica
        r = httpx.get(f"{srv.url}/knowledge")
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert app.state.offsync.refused_busy == 1


def test_a_stopped_server_is_a_retryable_error() -> None:
    with LiveServer(create_app(replica())) as srv:
        url = srv.url
    site = replica()
    with (
        HTTPTransport(url, site.identity, sleep=no_sleep, max_retries=1) as t,
        pytest.raises(RetryableTransportError, match="ConnectError"),
    ):
        t.knowledge()


# -- signed pulls --------------------------------------------------------------------------


def pull(srv: LiveServer, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{srv.url}/pull", content=body, headers=headers)


def challenge(srv: LiveServer) -> bytes:
    """A fresh challenge of the server's (``GET /challenge``), to sign a pull over."""
    r = httpx.get(f"{srv.url}/challenge")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    return bytes.fromhex(r.json()["challenge"])


def signed_pull(srv: LiveServer, site: Identity, server: bytes, body: bytes) -> dict[str, str]:
    return sign_request(site, server, "pull", body, challenge(srv))


def test_signed_pull_is_accepted_once(centre: Replica, served: LiveServer) -> None:
    site = Identity.generate()
    body = encode_pull_request(Knowledge(), 1 << 20, False)
    headers = signed_pull(served, site, centre.id, body)
    first = pull(served, body, headers)
    assert first.status_code == 200 and first.content.endswith(b"\0\0\0\0")
    again = pull(served, body, headers)
    assert again.status_code == 401 and "replayed" in again.json()["reason"]
    # A challenge spent by a request that failed its signature is not spent.
    fresh = challenge(served)
    forged = sign_request(Identity.generate(), centre.id, "pull", body, fresh)
    forged["offsync-site"] = site.public_key.hex()
    assert pull(served, body, forged).status_code == 401
    good = sign_request(site, centre.id, "pull", body, fresh)
    assert pull(served, body, good).status_code == 200


@pytest.mark.parametrize(
    "forge",
    [
        "unsigned",
        "other-key",
        "tampered-body",
        "other-server",
        "stale",
        "future",
        "other-endpoint",
        "not-this-servers-challenge",
    ],
)
def test_badly_signed_pulls_are_refused(centre: Replica, served: LiveServer, forge: str) -> None:
    site, mallory = Identity.generate(), Identity.generate()
    body = encode_pull_request(Knowledge(), 1 << 20, False)
    now = int(time.time() * 1000)
    lifetime = 300_000  # the default replay_window
    # What the server's own challenges would be at another time (tests know its key).
    own = Challenges(challenge_key(centre.identity), centre.id, lifetime)
    signer, server, endpoint, sent, chal = site, centre.id, "pull", body, challenge(served)
    if forge == "other-key":
        signer = mallory
    elif forge == "tampered-body":
        sent = encode_pull_request(Knowledge(), 1 << 21, False)
    elif forge == "other-server":
        server = mallory.public_key
    elif forge == "stale":
        chal = own.issue(now - lifetime - 60_000)
    elif forge == "future":
        chal = own.issue(now + lifetime + 60_000)
    elif forge == "other-endpoint":
        endpoint = "knowledge"
    elif forge == "not-this-servers-challenge":
        chal = Challenges(challenge_key(mallory), centre.id, lifetime).issue(now)
    headers = sign_request(signer, server, endpoint, body, chal)
    if forge == "other-key":
        headers["offsync-site"] = site.public_key.hex()
    if forge == "unsigned":
        headers = {}
    r = pull(served, sent, headers)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "SignatureError"
    if forge in ("stale", "future"):
        assert "challenge" in r.json()["reason"]


def test_malformed_pull_request_is_refused(centre: Replica, served: LiveServer) -> None:
    site = Identity.generate()
    body = b"\x81\xa1x\x01"  # {"x": 1}
    r = pull(served, body, signed_pull(served, site, centre.id, body))
    assert r.status_code == 422 and r.json()["error"] == "BundleFormatError"


# -- description ---------------------------------------------------------------------------


def test_info_and_openapi(centre: Replica, served: LiveServer) -> None:
    info = httpx.get(served.url + "/").json()
    assert info["replica"] == centre.id.hex() and info["protocol"] == "offsync-http/3"
    spec = httpx.get(served.url + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {
        "/",
        "/blobs",
        "/blobs/{hash}",
        "/knowledge",
        "/challenge",
        "/bundles/{id}",
        "/pull",
        "/openapi.json",
        "/healthz",
        "/readyz",
        "/metrics",
    }


def test_a_whole_upload_that_met_a_busy_replica_is_applied_on_retry(centre: Replica) -> None:
    """Every byte arrived but the apply got 503: the retry sends no bytes, only commits."""
    app = create_app(centre, busy_timeout=0.05)
    site = replica()
    fill(site, 4, size=50_000)
    (bundle,) = site.pack()
    centre.lock.acquire()  # a local writer holds the replica while the chunks arrive
    asked: list[float] = []

    def sleep(delay: float) -> None:
        asked.append(delay)
        centre.lock.release()

    sent: list[int] = []
    with (
        LiveServer(app) as srv,
        transport(
            srv, site, chunk_bytes=CHUNK, sleep=sleep, progress=lambda b, s, t: sent.append(s)
        ) as t,
    ):
        answer = t.upload(bundle)
    assert len(asked) == 1 and app.state.offsync.refused_busy == 1
    assert sent[-1] == len(bundle) and sent.count(len(bundle)) == 1  # one commit, no resend
    assert answer["applied"] == 4 and centre.state_digest() == site.state_digest()


def test_a_pull_abandoned_mid_stream_gives_its_slot_back(centre: Replica) -> None:
    fill(centre, 80, size=40_000)  # several bundles, more than the socket buffers hold
    app = create_app(centre, max_in_flight=1)
    state = app.state.offsync
    site = Identity.generate()
    body = encode_pull_request(Knowledge(), 1 << 20, False)
    with LiveServer(app) as srv:
        headers = signed_pull(srv, site, centre.id, body)
        with httpx.stream("POST", f"{srv.url}/pull", content=body, headers=headers) as r:
            assert r.status_code == 200
            next(r.iter_raw())  # read a little, then hang up
        wait_for(lambda: state.in_flight, lambda n: n == 0)
        again = pull(srv, body, signed_pull(srv, site, centre.id, body))
        assert again.status_code == 200 and again.content.endswith(b"\0\0\0\0")


def test_the_http_libraries_load_only_with_the_http_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, offsync, offsync.transports, offsync.httpwire, offsync.sync\n"
        "print(sorted(m for m in ('httpx', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
