"""One SQLite replica file, one owning process.

A replica keeps an in-memory index of what it holds and numbers its own changes, so two
processes writing one file lose or refuse writes (two uvicorn workers answered 500 with
``UNIQUE constraint failed: outbox.seq``; a put made beside ``offsync serve`` stayed
unseen by the server). The store now holds an OS lock while it is open for writing; a
second opener, in another process or in this one, gets ``StoreLockedError`` saying who
holds it, and inspection opens the file read-only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from offsync import Identity, Replica, sync
from offsync.errors import StorageError, StoreLockedError, UsageError
from offsync.stores.sqlite import SQLiteStore
from offsync.transports.http import HTTPTransport
from tests.helpers.cli import Shell, as_from_a_terminal, serving

SEED = b"\x51" * 32


def _open(path: Path, **options: Any) -> Replica:
    return Replica.open(str(path), identity=Identity(SEED, label="site"), **options)


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python process running ``code`` (with ``sys.argv[1:]`` = ``args``)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


#: Opens the replica in a child process and says what happened, then waits for stdin.
OPEN_IN_CHILD = """
    import sys
    from offsync import Identity, Replica
    from offsync.errors import StoreLockedError
    try:
        rep = Replica.open(sys.argv[1], identity=Identity(b"\\x51" * 32, label="site"))
    except StoreLockedError as exc:
        print("locked:", exc, flush=True)
        sys.exit(0)
    rep.put("residents", "child", {"by": "child"})
    print("opened", flush=True)
    sys.stdin.read()
    rep.close()
"""


def test_a_second_process_opening_the_replica_gets_store_locked(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    rep = _open(path)
    rep.put("residents", "parent", {"by": "parent"})
    child = _child(OPEN_IN_CHILD, str(path))
    out, err = child.communicate(timeout=60)
    assert out.startswith("locked:"), out + err
    assert f"pid {os.getpid()} " in out  # the message says who holds it
    assert "HTTP" in out and "read_only=True" in out  # and what to do
    assert rep.get("residents", "child") is None
    rep.put("residents", "parent-2", {"by": "parent"})  # the owner is not disturbed
    rep.close()


def test_the_lock_follows_the_owner_and_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    _open(path).close()
    child = _child(OPEN_IN_CHILD, str(path))
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "opened\n"
        with pytest.raises(StoreLockedError, match=f"pid {child.pid} "):
            _open(path)
        child.send_signal(signal.SIGKILL)  # a crash: the OS releases the lock
        child.wait(timeout=30)
    finally:
        child.kill()
        child.communicate()
    with _open(path) as rep:  # nothing to clean up by hand
        assert rep.get("residents", "child") == {"by": "child"}


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    rep = _open(path)
    with pytest.raises(StoreLockedError, match="already open in this process"):
        _open(path)
    (tmp_path / "elsewhere").symlink_to(tmp_path)  # the same file by another name
    with pytest.raises(StoreLockedError, match="already open in this process"):
        _open(tmp_path / "elsewhere" / "site.sqlite")
    rep.put("residents", "k", {"n": 1})
    rep.close()
    with _open(path) as again:  # closed: free again
        assert again.get("residents", "k") == {"n": 1}
    # A refused open (here another identity) does not keep the file locked.
    with pytest.raises(UsageError, match="another identity"):
        Replica.open(str(path), identity=Identity(b"\x52" * 32))
    _open(path).close()


def test_read_only_opens_read_what_the_owner_committed_and_never_write(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    owner = _open(path)
    owner.put("residents", "a", {"n": 1})
    reader = _open(path, read_only=True)
    assert reader.get("residents", "a") == {"n": 1}
    owner.put("residents", "b", {"n": 2})
    assert reader.get("residents", "b") == {"n": 2}  # records are read from the file
    assert reader.state_digest() == owner.state_digest()
    lock_text = (tmp_path / "site.sqlite.lock").read_text()
    for write in (
        lambda: reader.put("residents", "c", {"n": 3}),
        lambda: reader.apply(owner.pack()[0]),
        lambda: reader.pack(),
    ):
        with pytest.raises(UsageError, match="read-only"):
            write()
    assert owner.get("residents", "c") is None
    assert (tmp_path / "site.sqlite.lock").read_text() == lock_text  # took no lock
    reader.close()
    owner.put("residents", "c", {"n": 3})
    owner.close()
    with pytest.raises(StorageError, match="cannot read"):  # nothing is created
        Replica.open(str(tmp_path / "none.sqlite"), identity=Identity(SEED), read_only=True)
    assert not (tmp_path / "none.sqlite").exists()
    SQLiteStore(str(tmp_path / "empty.sqlite")).close()
    with pytest.raises(UsageError, match="no replica yet"):
        Replica.open(str(tmp_path / "empty.sqlite"), identity=Identity(SEED), read_only=True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_forked_process_cannot_write_through_its_parents_store(tmp_path: Path) -> None:
    rep = _open(tmp_path / "site.sqlite")
    pid = os.fork()
    if pid == 0:  # the child: a worker forked after the replica was opened
        try:
            rep.put("residents", "child", {"n": 1})
        except StoreLockedError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    rep.put("residents", "parent", {"n": 1})
    assert rep.get("residents", "child") is None
    rep.close()


@pytest.mark.slow
def test_offsync_serve_owns_the_site_and_other_commands_say_so(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    centre = sh.init("kab")
    sh.init("kec")
    sh.run("--site", "kab", "put", "residents", "3519000000000001", "name=Ana")
    with serving(sh, "kab") as (url, pid):
        put = sh.run("--site", "kab", "put", "residents", "3519000000000002", "name=Budi", code=2)
        assert "open in another process" in put.stderr and f"pid {pid} " in put.stderr
        assert "offsync serve" in put.stderr and "next:" in put.stderr
        assert "Traceback" not in put.stderr
        sh.run("--site", "kab", "apply", str(tmp_path), code=2)  # every writer is refused
        # Inspection reads what the server has committed, while it keeps serving.
        sh.run("--site", "kec", "put", "residents", "3519000000000003", "name=Citra")
        sh.run("--site", "kec", "sync", url, "--server-key", centre)
        got = sh.json("--site", "kab", "get", "residents", "3519000000000003")
        assert got == {"name": "Citra"}
        status = sh.run("--site", "kab", "status", "--json")
        assert json.loads(status.stdout)["changes_held"] == 2 and "read-only" in status.stderr
        assert sh.json("--site", "kab", "ls") == {"residents": 2}
        assert httpx.get(url + "/knowledge", timeout=30).status_code == 200
    sh.run("--site", "kab", "put", "residents", "3519000000000002", "name=Budi")


APP_MODULE = """
import os

from offsync import Identity, Replica
from offsync.server import create_app


def make_app():
    replica = Replica.open(os.environ["SITE_DB"], identity=Identity(bytes.fromhex(os.environ["SITE_SEED"])))
    return create_app(replica, upload_dir=os.environ["SITE_UPLOADS"])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """``uvicorn --workers 2`` of an app that opens one SQLite replica per worker."""
    (tmp_path / "siteapp.py").write_text(APP_MODULE)
    port = _free_port()
    env = {
        **os.environ,
        "SITE_DB": str(tmp_path / "site.sqlite"),
        "SITE_SEED": SEED.hex(),
        "SITE_UPLOADS": str(tmp_path / "uploads"),
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "siteapp:make_app"]
    proc = subprocess.Popen(
        as_from_a_terminal(
            [*uvicorn, "--workers", "2", "--host", "127.0.0.1", "--port", str(port)]
        ),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
    reader.start()
    try:
        yield f"http://127.0.0.1:{port}", lines
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stderr.close()


def _wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_uvicorn_worker_on_one_sqlite_replica_fails_at_start_up(
    tmp_path: Path, two_workers: tuple[str, list[str]]
) -> None:
    url, stderr = two_workers

    def answers() -> bool:
        try:
            return httpx.get(url + "/knowledge", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    _wait_for(answers, "a worker to answer")
    _wait_for(lambda: any("StoreLockedError" in line for line in stderr), "a refused worker")
    said = "".join(stderr)
    assert "is open in another process (pid " in said
    # Every write is answered by the one worker that owns the replica: no 500s.
    sites = [Replica.open(":memory:", identity=Identity.generate(f"kec-{i}")) for i in range(6)]
    for i, site in enumerate(sites):
        site.put("residents", f"35190000000000{i:02d}", {"n": i})
        with HTTPTransport(url, site.identity, max_retries=0) as http:
            report = sync(site, http)
        assert report.ok and report.sent_changes == 1, report
        site.close()
    with _open(tmp_path / "site.sqlite", read_only=True) as reader:
        assert len(list(reader.items("residents"))) == 6


def test_a_replica_dropped_without_close_frees_the_file(tmp_path: Path) -> None:
    path = tmp_path / "site.sqlite"
    _open(path).put("residents", "k", {"n": 1})  # never closed, nothing refers to it
    with _open(path) as again:
        assert again.get("residents", "k") == {"n": 1}
