"""Configuring a server: every ``create_app`` option is a setting (a flag of ``offsync
serve`` and an ``OFFSYNC_*`` variable), read and checked by one table, with mistakes
refused in the command line's one error shape before anything listens."""

from __future__ import annotations

import inspect
import socket
import sys
from pathlib import Path

import httpx
import pytest

from offsync import Identity, Replica
from offsync.centre import app_from_env
from offsync.errors import UsageError
from offsync.http.settings import (
    APP_SETTINGS,
    SETTINGS,
    app_options,
    from_env,
    parse_bytes,
    parse_seconds,
)
from offsync.segment import hash32
from offsync.server import create_app
from tests.helpers.cli import InProcess, Shell, serving


def test_every_create_app_option_is_a_setting() -> None:
    """A new option of create_app without a flag and a variable fails here."""
    params = set(inspect.signature(create_app).parameters) - {"replica", "site_labels"}
    assert params == {s.name for s in APP_SETTINGS}
    flags = [s.flag for s in SETTINGS]
    envs = [s.env for s in SETTINGS]
    assert len(set(flags)) == len(flags) and len(set(envs)) == len(envs)
    assert all(e.startswith("OFFSYNC_") for e in envs)
    assert {"OFFSYNC_BUSY_TIMEOUT", "OFFSYNC_CHALLENGE_LIFETIME", "OFFSYNC_METRICS"} <= set(envs)


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("600K", 600 * 1024), ("16M", 16 << 20), ("16MiB", 16 << 20), ("1.5G", 3 << 29)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300), ("2m", 120), ("7d", 604800), ("0.5s", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_seconds(text) == seconds


def test_the_environment_is_read_and_checked() -> None:
    values = from_env(
        {
            "OFFSYNC_BUSY_TIMEOUT": "30s",
            "OFFSYNC_MAX_UPLOAD_BYTES": "32M",
            "OFFSYNC_PARTIAL_TTL": "2d",
            "OFFSYNC_CHALLENGE_LIFETIME": "10m",
            "OFFSYNC_METRICS": "yes",
            "OFFSYNC_REFERENCE": "vaccine_lots, clinics,vaccine_lots",
            "OFFSYNC_UNRELATED": "x",
        }
    )
    assert values == {
        "busy_timeout": 30.0,
        "max_upload_bytes": 32 << 20,
        "partial_ttl": 172800.0,
        "replay_window": 600.0,
        "metrics": True,
        "reference": ("vaccine_lots", "clinics"),
    }
    for env, words in [
        ({"OFFSYNC_RETRY_AFTER": "0"}, "OFFSYNC_RETRY_AFTER: 0 is below 1"),
        ({"OFFSYNC_RETRY_AFTER": "900"}, "clients give up"),
        ({"OFFSYNC_MAX_UPLOAD_BYTES": "100K"}, "is below 512K"),
        ({"OFFSYNC_BUSY_TIMEOUT": "soon"}, "not a duration"),
        ({"OFFSYNC_ADMISSION_WAIT": "11m"}, "is above"),
        ({"OFFSYNC_MAX_WAITING": "-1"}, "is below 0"),
        ({"OFFSYNC_READABLE": "some"}, "choose one of auto, everything, certified"),
        ({"OFFSYNC_LOG_FORMAT": "xml"}, "choose one of text, json"),
        ({"OFFSYNC_REFERENCE": "x" * 65}, "OFFSYNC_REFERENCE: a collection name is at most"),
    ]:
        with pytest.raises(UsageError, match=words):
            from_env(env)


def test_options_reach_the_app(tmp_path: Path) -> None:
    replica = Replica.open(":memory:", identity=Identity.generate())
    values = from_env(
        {
            "OFFSYNC_RETRY_AFTER": "7",
            "OFFSYNC_MAX_PARTIAL_UPLOADS": "5",
            "OFFSYNC_ADMISSION_WAIT": "1.5s",
            "OFFSYNC_MAX_WAITING": "12",
        }
    )
    app = create_app(replica, **app_options(replica, {**values, "upload_dir": str(tmp_path)}))
    state = app.state.offsync
    assert (state.retry_after, state.max_partial_uploads, state.upload_dir) == (7, 5, tmp_path)
    assert (state.busy_timeout, state.max_in_flight, state.readable) == (10.0, 8, None)
    assert (state.admission_wait, state.max_waiting) == (1.5, 12)
    with pytest.raises(UsageError, match="needs trust mode"):
        app_options(replica, {"readable": "certified"})
    replica.close()


def test_certified_readers_hide_everything_from_an_uncertified_site() -> None:
    from offsync.http.settings import certified_readers
    from offsync.trust import issue_certificate, revoke

    authority = Replica.open(":memory:", identity=Identity.generate())
    kec, stranger, gone = (Identity.generate() for _ in range(3))
    issue_certificate(authority, kec, label="kec")
    issue_certificate(authority, gone, label="gone")
    revoke(authority, gone, effective_ms=0)
    centre = Replica.open(":memory:", identity=Identity.generate(), trust=[authority.id])
    for bundle in authority.pack():
        centre.apply(bundle)
    readable = certified_readers(centre)
    # kec's certificate names no read scope: it reads what it may write (everything but
    # _trust, by default), and _trust.
    assert readable(kec.public_key).is_everything
    assert readable(authority.id).is_everything
    assert not readable(stranger.public_key)
    assert not readable(gone.public_key)
    centre.close()
    authority.close()


def test_app_from_env_refuses_a_bad_setting_before_it_connects() -> None:
    with pytest.raises(UsageError, match="OFFSYNC_MAX_IN_FLIGHT"):
        app_from_env({"OFFSYNC_MAX_IN_FLIGHT": "0", "OFFSYNC_POSTGRES": "postgresql://nowhere"})


# -- the command line ------------------------------------------------------------------


@pytest.fixture
def sh(tmp_path: Path) -> Shell:
    shell = InProcess(tmp_path)
    shell.init("pusat")
    return shell


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--busy-timeout", "soon"], {}, "'--busy-timeout': 'soon' is not a duration"),
        (["--max-upload-bytes", "10K"], {}, "is below 512K (a bundle carries whole segments"),
        ([], {"OFFSYNC_MAX_UPLOAD_BYTES": "10K"}, "(from OFFSYNC_MAX_UPLOAD_BYTES)"),
        ([], {"OFFSYNC_PARTIAL_TTL": "1s"}, "is below 1m (from OFFSYNC_PARTIAL_TTL)"),
        (["--log-format", "xml"], {}, "'xml': choose one of text, json"),
        (["--readable", "certified"], {}, "needs trust mode"),
        (["--port", "70000"], {}, "is above 65535"),
    ],
)
def test_serve_refuses_a_bad_setting_before_listening(
    sh: Shell, args: list[str], env: dict[str, str], words: str
) -> None:
    refused = sh.run("--site", "pusat", "serve", "--port", "0", *args, code=2, env=env)
    assert "serving" not in refused.stdout
    lines = refused.stderr.splitlines()
    assert lines[0].startswith("error: ") and lines[1].startswith("next: "), refused.stderr
    assert words in refused.stderr


def test_serve_says_which_extra_metrics_need(sh: Shell, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("prometheus_client")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    refused = sh.run("--site", "pusat", "serve", "--port", "0", "--metrics", code=2)
    assert "prometheus-client" in refused.stderr and "offsync[metrics]" in refused.stderr


def test_flags_and_variables_reach_a_real_server(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    sh.init("pusat")
    uploads = tmp_path / "elsewhere"
    flags = (
        "--max-upload-bytes",
        "600K",
        "--challenge-lifetime",
        "2m",
        "--upload-dir",
        str(uploads),
    )
    env = {"OFFSYNC_MAX_PULL_BUNDLE_BYTES": "2M", "OFFSYNC_METRICS": "1"}
    sh.env.update(env)
    with serving(sh, "pusat", *flags) as (url, _pid):
        info = httpx.get(url + "/").json()
        assert info["max_upload_bytes"] == 600 * 1024
        assert info["max_pull_bundle_bytes"] == 2 << 20
        assert info["replay_window_seconds"] == 120
        assert httpx.get(url + "/challenge").json()["lifetime_seconds"] == 120
        assert httpx.get(url + "/metrics").status_code == 200
        part = b"x" * 100
        bundle_id = hash32(part * 2).hex()
        headers = {"Content-Range": f"bytes 0-99/{len(part) * 2}"}
        assert (
            httpx.put(f"{url}/bundles/{bundle_id}", content=part, headers=headers).status_code
            == 202
        )
        assert any(bundle_id in p.name for p in uploads.iterdir())


def test_serve_accepts_connections_once_it_prints_its_url(tmp_path: Path) -> None:
    """The URL on the first line means "connect now": the socket listens before it is
    printed. (It used to listen only once uvicorn had started, so a client quick off
    the mark was refused; with its retries spent at once, a sync in the tests failed.)"""
    sh = Shell(tmp_path)
    sh.init("pusat")
    with serving(sh, "pusat") as (url, _pid):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=60) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(12).startswith(b"HTTP/1.")
