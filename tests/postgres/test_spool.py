"""The upload spool of a PostgreSQL centre (docs/scale.md, "The upload spool").

Uploads are held durably and answered 202 held; appliers apply them in group commits
and mark them applied in the same transaction. Checked here: sites deliver through it
over HTTP and get receipts only for what is applied; a bundle refused while applying
is learnt by its uploader and leaves nothing behind, even in a group with good ones;
an applier killed (SIGKILL, a real subprocess) while applying loses and repeats
nothing.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from offsync import Identity, Receipt, Replica, policies
from offsync.errors import PeerRefusedError
from offsync.scope import Partition, Stream
from offsync.segment import hash32
from offsync.sync import sync
from tests.helpers.postgres import DSN, drop_schemas

RESIDENTS = Partition("residents")  # each collection is one partition by default
httpx = pytest.importorskip("httpx", reason="the http extra is not installed")

from offsync.http.spool import Applier, SpoolSettings  # noqa: E402
from offsync.server import create_app  # noqa: E402
from offsync.stores import pgspool  # noqa: E402
from offsync.stores.postgres import PostgresStore  # noqa: E402
from offsync.transports.http import HTTPTransport  # noqa: E402
from tests.helpers.http import LiveServer  # noqa: E402

pytestmark = pytest.mark.postgres

POLICIES: dict[str, policies.Policy] = {
    "residents": policies.LastWriterWins(),
    "doses": policies.FirstWriterWins(),
}
CENTRE_SEED = bytes(range(32))


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"offsync_test_{uuid.uuid4().hex[:10]}_spool"
    try:
        yield name
    finally:
        drop_schemas(name)


def _centre(schema: str) -> Replica:
    return Replica(PostgresStore(DSN, schema=schema), Identity(CENTRE_SEED, "centre"), POLICIES)


def _site(label: str, writes: int, days: int = 1) -> tuple[Replica, list[bytes]]:
    """A site with ``writes`` per day for ``days`` days, packed once a day."""
    site = Replica.open(":memory:", identity=Identity.generate(label=label), policies=POLICIES)
    bundles: list[bytes] = []
    for day in range(days):
        before = site.knowledge()
        with site.batch():
            for i in range(writes):
                site.put("residents", f"{label}-{day}-{i:04d}", {"name": f"{label} {i}"})
        bundles += site.pack(before)
    return site, bundles


def _quick(delay: float) -> None:
    time.sleep(min(delay, 0.05))


def _count(store: PostgresStore) -> tuple[int, int]:
    rows = store._q("SELECT count(*), count(DISTINCT (origin, collection, seq)) FROM changes")
    return int(rows[0][0]), int(rows[0][1])


def test_sites_deliver_through_the_spool_and_get_receipts_once_applied(schema: str) -> None:
    centre = _centre(schema)
    app = create_app(centre, spool=8)
    sites = [_site(f"s{i}", 40)[0] for i in range(4)]
    try:
        with LiveServer(app) as srv:
            for site in sites:
                transport = HTTPTransport(
                    srv.url, site.identity, server_key=centre.id, sleep=_quick
                )
                try:
                    report = sync(site, transport)
                    assert report.ok, report.refused
                    # Every upload answer that counted carried a receipt covering it.
                    assert transport.uploads and all(
                        u["status"] in ("applied", "duplicate") for u in transport.uploads
                    )
                finally:
                    transport.close()
            for site in sites:  # a second round pulls what the others delivered
                transport = HTTPTransport(srv.url, site.identity, server_key=centre.id)
                sync(site, transport)
                transport.close()
    finally:
        app.state.offsync.close()
    store = centre.store
    assert isinstance(store, PostgresStore)
    assert _count(store) == (160, 160)
    assert {s.state_digest() for s in sites} == {centre.state_digest()}
    assert store._q("SELECT count(*) FROM upload_spool WHERE state <> 1")[0][0] == 0
    centre.close()


def test_a_spooled_upload_and_its_duplicate_are_answered_for_their_site(schema: str) -> None:
    """The answers to an upload whose bytes came with the request (applied now, or a
    duplicate) state what the uploading site needs, not every origin the centre holds."""
    centre = _centre(schema)
    others = [_site(f"o{i}", 1) for i in range(12)]
    for other, bundles in others:
        for bundle in bundles:
            centre.apply(bundle)
        other.close()
    site, bundles = _site("mine", 3)
    app = create_app(centre, spool=8)
    url = f"/bundles/{hash32(bundles[0]).hex()}"
    try:
        with LiveServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
            answers = []
            for _ in range(50):  # held (202) until an applier took it: send it again
                answer = http.put(url, content=bundles[0])
                if answer.status_code == 200:
                    answers.append(answer.json())
                    if len(answers) == 2:
                        break
                else:
                    assert answer.status_code == 202, answer.text
                    time.sleep(0.05)
    finally:
        app.state.offsync.close()
    assert [a["status"] for a in answers][-1] == "duplicate"
    for a in answers:
        receipt = Receipt.decode(base64.b64decode(a["receipt"]))
        assert receipt.knowledge.contains(Stream(site.id, RESIDENTS), 3), "it proves the delivery"
        assert set(receipt.knowledge.origins()) <= {site.id, centre.id}, a["status"]
    site.close()
    centre.close()


def test_a_chunked_upload_is_spooled_once_whole(schema: str) -> None:
    """Chunks go to the partial file as always; the last one spools the whole bundle,
    and resuming it afterwards finds it spooled (``GET /bundles/{id}``: complete)."""
    centre = _centre(schema)
    app = create_app(centre, spool=8)
    site = Replica.open(":memory:", identity=Identity.generate(label="big"), policies=POLICIES)
    with site.batch():
        for i in range(1000):
            site.put("residents", f"big-{i:04d}", {"noise": os.urandom(48).hex()})
    (bundle,) = site.pack()
    assert len(bundle) > 3 * 16384
    try:
        with LiveServer(app) as srv:
            transport = HTTPTransport(
                srv.url, site.identity, server_key=centre.id, sleep=_quick, chunk_bytes=16384
            )
            assert transport.upload(bundle)["status"] == "applied"
            status = httpx.get(f"{srv.url}/bundles/{hash32(bundle).hex()}").json()
            assert status["complete"] is True
            assert transport.upload(bundle)["status"] == "duplicate"
            transport.close()
    finally:
        app.state.offsync.close()
    store = centre.store
    assert isinstance(store, PostgresStore)
    assert _count(store) == (1000, 1000)
    centre.close()
    site.close()


def test_a_held_upload_is_not_delivered_until_a_receipt_covers_it(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 202 held is no delivery: with nothing applying, the client asks, then gives up
    for now (retryable); once an applier has applied it, asking again is answered with
    a receipt that covers the bundle."""
    import offsync.transports.http as http_transport
    from offsync.errors import RetryableTransportError

    centre = _centre(schema)
    app = create_app(centre, spool=8)
    state = app.state.offsync
    state.applier.stop()  # nothing applies: uploads stay held
    state.spool_hold = 0.0  # answer at once
    site, bundles = _site("h", 20)
    asked: list[float] = []
    monkeypatch.setattr(http_transport, "MAX_HELD_ASKS", 3)
    try:
        with LiveServer(app) as srv:
            transport = HTTPTransport(
                srv.url, site.identity, server_key=centre.id, sleep=asked.append
            )
            with pytest.raises(RetryableTransportError, match="held"):
                transport.upload(bundles[0])
            assert len(asked) == 3 and all(0 < a <= 1 for a in asked)
            assert not transport.uploads  # nothing taken as delivered
            store = centre.store
            assert isinstance(store, PostgresStore)
            assert _count(store) == (0, 0)
            applier = Applier(_centre(schema), SpoolSettings())
            assert applier.step() == 1
            applier.stop()
            answer = transport.upload(bundles[0])
            assert answer["status"] == "duplicate"
            assert transport.last_receipt is not None
            assert list(transport.last_receipt.knowledge.partitions(site.id))
            transport.close()
            # 503 only when the appliers are this far behind: max_held bundles held.
            state.spool_max_held = 0
            other = _site("o", 3)[1][0]
            refused = httpx.put(f"{srv.url}/bundles/{hash32(other).hex()}", content=other)
            assert refused.status_code == 503 and refused.headers["retry-after"]
    finally:
        state.close()
    assert _count(centre.store) == (20, 20)  # type: ignore[arg-type]
    centre.close()
    site.close()


def test_a_spooled_bundle_refused_later_leaves_nothing_and_its_uploader_learns(
    schema: str,
) -> None:
    """A bundle that hashes to its id but does not verify is held like any other; the
    applier meets it in a group with good bundles, applies those, refuses it, and the
    uploader asking again is told why. Nothing of it is kept."""
    centre = _centre(schema)
    store = centre.store
    assert isinstance(store, PostgresStore)
    good_a, bundles_a = _site("a", 30, days=2)
    good_b, bundles_b = _site("b", 30)
    bad = bytearray(bundles_b[0])
    bad[-1] ^= 1  # the bundle's signature no longer verifies
    forged = bytes(bad)
    garbage = b"not a bundle at all" * 10
    items = [bundles_a[0], forged, bundles_a[1], garbage, bundles_b[0]]
    found = pgspool.put(store, [(hash32(d), d) for d in items])
    assert all(f.state == pgspool.HELD for f in found.values())
    applier = Applier(_centre(schema), SpoolSettings(group=16))
    assert applier.step() == 5  # one group, split to find the refused ones
    assert (applier.applied, applier.refused) == (3, 2)
    states = pgspool.lookup(store, [hash32(d) for d in items])
    assert [states[hash32(d)].state for d in items] == [1, 2, 1, 2, 1]
    refused = states[hash32(forged)]
    assert refused.status == 422 and refused.error and refused.reason
    assert store._q("SELECT count(*) FROM upload_spool WHERE data IS NOT NULL")[0][0] == 0
    assert _count(store) == (90, 90)
    reference = Replica.open(":memory:", identity=Identity(CENTRE_SEED, "c"), policies=POLICIES)
    for d in (bundles_a[0], bundles_a[1], bundles_b[0]):
        reference.apply(d)
    assert centre.state_digest() == reference.state_digest()

    # Over HTTP: the uploader of the forged bundle is told it was refused.
    app = create_app(centre, spool=8)
    try:
        with LiveServer(app) as srv:
            transport = HTTPTransport(srv.url, good_b.identity, server_key=centre.id, sleep=_quick)
            with pytest.raises(PeerRefusedError) as refusal:
                transport.upload(forged)
            assert refusal.value.status == 422
            # A forged bundle never spooled before is refused at once, and not held.
            bad[-2] ^= 1
            with pytest.raises(PeerRefusedError) as at_once:
                transport.upload(bytes(bad))
            assert at_once.value.status == 422
            assert pgspool.lookup(store, [hash32(bytes(bad))]) == {}
            answer = transport.upload(bundles_a[0])  # applied before: a duplicate
            assert answer["status"] == "duplicate"
            transport.close()
    finally:
        app.state.offsync.close()
    assert _count(store) == (90, 90)
    applier.stop()
    centre.close()
    good_a.close()
    good_b.close()


_APPLIER = """
import sys
from offsync import Identity, Receipt, Replica, policies
from offsync.http.spool import Applier, SpoolSettings
from offsync.stores.postgres import PostgresStore

dsn, schema, seed = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
pol = {"residents": policies.LastWriterWins(), "doses": policies.FirstWriterWins()}
applier = Applier(Replica(PostgresStore(dsn, schema=schema), Identity(seed, "c"), pol),
                  SpoolSettings(group=3))
print("ready", flush=True)
while applier.step():
    pass
print("drained", flush=True)
"""


@pytest.mark.slow
def test_an_applier_killed_mid_spool_loses_and_repeats_nothing(schema: str, tmp_path: Path) -> None:
    """SIGKILL a real applier process while it works through the spool; a second one
    finishes. Every change is held exactly once and every bundle is applied once."""
    centre = _centre(schema)
    store = centre.store
    assert isinstance(store, PostgresStore)
    sites = [_site(f"k{i}", 5, days=12) for i in range(12)]
    bundles = [b for _, bs in sites for b in bs]
    # Spooled in the order sites sent them (day by day, site by site).
    order = [sites[s][1][d] for d in range(12) for s in range(12)]
    pgspool.put(store, [(hash32(d), d) for d in order])
    script = tmp_path / "applier.py"
    script.write_text(_APPLIER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, sys.path)))
    proc = subprocess.Popen(
        [sys.executable, str(script), DSN, schema, CENTRE_SEED.hex()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        applied_at_kill = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            applied_at_kill = int(
                store._q("SELECT count(*) FROM upload_spool WHERE state = 1")[0][0]
            )
            if applied_at_kill >= len(bundles) // 4:
                break
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert 0 < applied_at_kill < len(bundles), "the kill did not land mid-spool"
    finisher = Applier(_centre(schema), SpoolSettings(group=3))
    deadline = time.monotonic() + 120
    while pgspool.depth(store)[0] and time.monotonic() < deadline:
        finisher.step()  # a lock the killed one held is released with its connection
    assert pgspool.depth(store) == (0, 0)
    assert store._q("SELECT count(*) FROM upload_spool WHERE state = 1")[0][0] == len(bundles)
    assert _count(store) == (12 * 12 * 5, 12 * 12 * 5)
    reference = Replica.open(":memory:", identity=Identity(CENTRE_SEED, "c"), policies=POLICIES)
    for d in order:
        reference.apply(d)
    assert centre.state_digest() == reference.state_digest()
    assert centre.knowledge() == reference.knowledge()
    finisher.stop()
    centre.close()
    for site, _ in sites:
        site.close()
