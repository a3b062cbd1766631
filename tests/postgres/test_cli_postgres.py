"""``offsync serve --postgres DSN --workers 2``: a centre of two uvicorn worker processes
over one PostgreSQL database, started, synced with and stopped through the command.

Needs a server (OFFSYNC_TEST_POSTGRES, default postgresql://postgres@127.0.0.1:5432/test);
the module is skipped, saying why, when none answers (the check is tests/helpers/postgres.py's).
The centre's store lives in a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import Shell, serving
from tests.helpers.postgres import DSN, drop_schemas, psycopg

pytestmark = pytest.mark.postgres


def _workers(parent: int) -> set[int]:
    """The worker processes ``parent`` spawned (multiprocessing's spawn_main), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.slow
def test_serve_a_centre_on_postgres_with_two_workers(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    schema = f"offsync_test_{uuid.uuid4().hex[:10]}_cli"
    centre = sh.init("pusat", "--policy", "doses=fww")
    sh.init("kec-a")
    sh.init("kec-b")
    # Written at the centre's site before it moves to PostgreSQL: copied there on start.
    sh.run("--site", "pusat", "put", "notices", "n1", "text=clinic closed friday")
    sh.run("--site", "kec-a", "put", "residents", "3519010101900001", "name=Siti")
    sh.run("--site", "kec-a", "put", "residents", "3519010101900002", "name=Budi")
    sh.run("--site", "kec-b", "put", "doses", "3519020202850003/1", "vaccine=CoronaVac")
    options = ("--postgres", DSN, "--schema", schema, "--workers", "2")
    try:
        with serving(sh, "pusat", *options) as (url, pid):
            assert url.startswith("http://127.0.0.1:")
            first = sh.json("--site", "kec-a", "sync", url, "--server-key", centre)
            assert first["rounds"][0]["sent_changes"] == 2
            assert first["rounds"][0]["applied"] == 1  # the centre's notice
            second = sh.json("--site", "kec-b", "sync", url, "--server-key", centre)
            assert second["rounds"][0]["applied"] == 3
            third = sh.json("--site", "kec-a", "sync", url)
            assert third["rounds"][0]["applied"] == 1  # kec-b's dose
            workers = _workers(pid)
            assert len(workers) == 2, f"wanted 2 worker processes of {pid}, found {workers}"
        assert not any(Path(f"/proc/{w}").exists() for w in workers), "a worker outlived serve"
        with psycopg.connect(DSN) as conn:
            table = psycopg.sql.Identifier(schema, "changes")
            query = psycopg.sql.SQL("SELECT count(*) FROM {}").format(table)
            row = conn.execute(query).fetchone()
        assert row is not None and row[0] == 4
    finally:
        drop_schemas(schema)
    digests = {sh.json("--site", s, "status")["state_digest"] for s in ("kec-a", "kec-b")}
    assert len(digests) == 1


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
@pytest.mark.slow
def test_a_centres_workers_get_no_passphrase_in_their_environment_and_share_metrics(
    tmp_path: Path,
) -> None:
    """The passphrase comes from a file and reaches the workers through uvicorn's pipe,
    not their environment (before, serve copied it there, readable in
    /proc/PID/environ); the workers' metrics are one set (multiprocess mode)."""
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    from tests.helpers.cli import PASSPHRASE
    from tests.helpers.metrics import scrape, value

    sh = Shell(tmp_path)
    schema = f"offsync_test_{uuid.uuid4().hex[:10]}_env"
    centre = sh.init("pusat")
    sh.init("kec-a")
    sh.run("--site", "kec-a", "put", "residents", "3519010101900001", "name=Siti")
    sh.run("--site", "kec-a", "put", "residents", "3519010101900002", "name=Budi")
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    del sh.env["OFFSYNC_PASSPHRASE"]
    sh.env["OFFSYNC_PASSPHRASE_FILE"] = str(secret)
    options = ("--postgres", DSN, "--schema", schema, "--workers", "2", "--metrics")
    try:
        with serving(sh, "pusat", *options) as (url, pid):
            synced = sh.json("--site", "kec-a", "sync", url, "--server-key", centre)
            assert synced["rounds"][0]["sent_changes"] == 2
            workers = _workers(pid)
            assert len(workers) == 2
            for process in (pid, *workers):
                environ = Path(f"/proc/{process}/environ").read_bytes()
                assert PASSPHRASE.encode() not in environ, f"process {process}"
                assert b"OFFSYNC_PASSPHRASE=" not in environ
            # A worker sets its gauge when its app starts, which may come after the
            # other worker answered the sync: wait (bounded) until both have.
            deadline = time.monotonic() + 60
            while value(scrape(url), "offsync_max_in_flight") != 16:
                assert time.monotonic() < deadline, "the second worker never started"
                time.sleep(0.2)
            for _ in range(6):  # new connections: any worker answers for both
                samples = scrape(url)
                assert value(samples, "offsync_changes_total", outcome="applied") == 2
                assert value(samples, "offsync_max_in_flight") == 16  # 8 per live worker
    finally:
        drop_schemas(schema)


def _held_in(schema: str, count: int) -> int:
    """The changes a centre's schema holds, once it holds ``count`` (bounded wait)."""
    query = psycopg.sql.SQL("SELECT count(*) FROM {}.changes").format(
        psycopg.sql.Identifier(schema)
    )
    held = -1
    for _ in range(240):
        with psycopg.connect(DSN) as conn:
            row = conn.execute(query).fetchone()
        held = int(row[0]) if row else -1
        if held == count:
            break
        time.sleep(0.25)
    return held


def test_a_postgres_centre_of_two_workers_peers_with_another_centre(tmp_path: Path) -> None:
    """``serve --postgres --workers 2 --peer URL``: the supervising process runs the
    rounds with the other centre on a connection of its own; what a site delivered to
    the other centre reaches this one's database."""
    sh = Shell(tmp_path)
    schema = f"offsync_test_{uuid.uuid4().hex[:10]}_peer"
    sh.init("pusat-a")
    sh.init("pusat-b")
    sh.init("kec")
    sh.run("--site", "kec", "put", "residents", "3519010101900001", "name=Siti")
    sh.run("--site", "kec", "put", "residents", "3519010101900002", "name=Budi")
    try:
        with serving(sh, "pusat-b") as (url_b, _):
            sh.run("--site", "kec", "sync", url_b)
            options = ("--postgres", DSN, "--schema", schema, "--workers", "2")
            with serving(sh, "pusat-a", *options, "--peer", url_b, "--peer-every", "1"):
                assert _held_in(schema, 2) == 2
    finally:
        drop_schemas(schema)
