"""The centre as deployed: uvicorn with several workers over one PostgreSQL database.

Real uvicorn (``--factory offsync.centre:app_from_env --workers 2``) on a free loopback
port; sites sync with it over HTTP at the same time, each request landing on whichever
worker accepts it. Afterwards every site and the centre hold the same state.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from offsync import Identity, Knowledge, Replica, policies
from offsync.errors import UsageError
from offsync.sync import sync
from tests.helpers.postgres import DSN, drop_schemas

httpx = pytest.importorskip("httpx", reason="the http extra is not installed")

from offsync.stores.postgres import PostgresStore  # noqa: E402
from offsync.transports.http import HTTPTransport  # noqa: E402

pytestmark = pytest.mark.postgres

POLICIES = {"residents": policies.LastWriterWins(), "doses": policies.FirstWriterWins()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[tuple[str, Identity, str]]:
    """(url, identity, schema) of a two-worker centre on a fresh schema."""
    with running_centre(tmp_path, workers=2) as found:
        yield found


@contextmanager
def running_centre(tmp_path: Path, workers: int) -> Iterator[tuple[str, Identity, str]]:
    """(url, identity, schema) of a centre of ``workers`` processes on a fresh schema."""
    schema = f"offsync_test_{uuid.uuid4().hex[:10]}_server"
    identity = Identity.generate(label="centre")
    key = tmp_path / "centre.key"
    identity.save(key, "pw", opslimit=1, memlimit=8192)
    PostgresStore(DSN, schema=schema).close()  # migrate before the workers race to
    port = _free_port()
    env = dict(
        os.environ,
        OFFSYNC_POSTGRES=DSN,
        OFFSYNC_SCHEMA=schema,
        OFFSYNC_IDENTITY=str(key),
        OFFSYNC_PASSPHRASE="pw",
        OFFSYNC_POLICIES="residents=lww,doses=fww",
        OFFSYNC_MAX_IN_FLIGHT="2",
        OFFSYNC_RETRY_AFTER="1",
    )
    command = [sys.executable, "-m", "uvicorn", "--factory", "offsync.centre:app_from_env"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--log-level", "warning"]
    log = tmp_path / "uvicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("the centre did not answer: " + log.read_text())
        yield url, identity, schema
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drop_schemas(schema)


def test_sites_sync_with_a_multi_worker_centre(centre: tuple[str, Identity, str]) -> None:
    url, identity, schema = centre
    sites = [
        Replica.open(":memory:", identity=Identity.generate(label=f"s{i}"), policies=POLICIES)
        for i in range(6)
    ]
    for i, site in enumerate(sites):
        with site.batch():
            for n in range(30):
                site.put("residents", f"3519{(i * 7 + n) % 50:04d}", {"name": f"{i}-{n}"})

    def round_trip(site: Replica) -> None:
        transport = HTTPTransport(url, site.identity, server_key=identity.public_key)
        try:
            sync(site, transport)
            for bundle in site.pack():  # a courier delivers everything again
                transport.upload(bundle)
        finally:
            transport.close()

    with concurrent.futures.ThreadPoolExecutor(len(sites)) as pool:
        list(pool.map(round_trip, sites))
    for site in sites:  # a second round: pull what the others pushed, via any worker
        transport = HTTPTransport(url, site.identity, server_key=identity.public_key)
        sync(site, transport)
        transport.close()
    store = PostgresStore(DSN, schema=schema)
    view = Replica(store, identity, POLICIES)
    assert store._q("SELECT count(*) FROM changes")[0][0] == 6 * 30
    assert {s.state_digest() for s in sites} == {view.state_digest()}
    assert all(s.knowledge() == view.knowledge() for s in sites)
    view.close()
    for site in sites:
        site.close()


def test_a_centre_with_authorities_quarantines_an_uncertified_site(tmp_path: Path) -> None:
    """OFFSYNC_AUTHORITIES puts the centre's workers in trust mode."""
    from offsync.centre import replica_from_env

    schema = f"offsync_test_{uuid.uuid4().hex[:10]}_trust"
    identity = Identity.generate(label="centre")
    key = tmp_path / "centre.key"
    identity.save(key, "pw", opslimit=1, memlimit=8192)
    env = {
        "OFFSYNC_POSTGRES": DSN,
        "OFFSYNC_SCHEMA": schema,
        "OFFSYNC_IDENTITY": str(key),
        "OFFSYNC_PASSPHRASE": "pw",
        "OFFSYNC_AUTHORITIES": identity.public_key.hex(),
    }
    try:
        centre = replica_from_env(env)
        stranger = Replica.open(":memory:", identity=Identity.generate(label="laptop"))
        stranger.put("residents", "3519010101900001", {"name": "x"})
        report = centre.apply(stranger.pack()[0])
        assert (report.applied, report.quarantined) == (0, 1)
        assert centre.get("residents", "3519010101900001") is None
        assert [q.reason.split(":")[0] for q in centre.quarantined()] == ["trust"]
        centre.close()
        with pytest.raises(UsageError, match="OFFSYNC_AUTHORITIES"):
            replica_from_env({**env, "OFFSYNC_AUTHORITIES": "not-hex"})
    finally:
        drop_schemas(schema)


@pytest.mark.slow
def test_a_captured_pull_is_served_once_by_all_workers(tmp_path: Path) -> None:
    """One signed pull, captured on the wire and sent again 40 times on new connections
    (which land on any of the 4 workers): served once. Before, each worker kept its own
    nonces and served it once each."""
    from offsync.http.bodies import encode_pull_request
    from offsync.http.signing import sign_request

    with running_centre(tmp_path, workers=4) as (url, identity, _):
        site = Identity.generate(label="site")
        body = encode_pull_request(Knowledge(), 1 << 20, False)

        def fresh_challenge() -> bytes:
            return bytes.fromhex(httpx.get(url + "/challenge").json()["challenge"])

        captured = sign_request(site, identity.public_key, "pull", body, fresh_challenge())
        statuses = []
        for _ in range(40):
            with httpx.Client() as client:  # a new connection each time: any worker
                statuses.append(client.post(url + "/pull", content=body, headers=captured))
        assert [r.status_code for r in statuses].count(200) == 1
        assert {r.status_code for r in statuses} == {200, 401}
        assert all("replayed" in r.json()["reason"] for r in statuses if r.status_code == 401)
        # A challenge from one worker is good at any other: every fresh pull is served.
        for _ in range(12):
            with httpx.Client() as client:
                headers = sign_request(site, identity.public_key, "pull", body, fresh_challenge())
                assert client.post(url + "/pull", content=body, headers=headers).status_code == 200
