"""Logs: events as text or JSON lines, from the server and the command; who delivered
what, refusals and failures; and never a record's key (a NIK) or a field's value.

The end-to-end test drives a real ``offsync serve`` and real ``offsync`` commands with
NIK-like keys and names, then reads every log line they wrote.
"""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import httpx
import pytest

from offsync import Identity, Replica, sync
from offsync.errors import UsageError
from offsync.logs import JSONFormatter, TextFormatter, event, install, short_key
from offsync.server import create_app
from offsync.transports.http import HTTPTransport
from offsync.trust import issue_certificate
from tests.helpers.cli import Shell, serving
from tests.helpers.http import LiveServer

# Personal data the tests write: keys (NIKs) and field values. None may reach a log.
NIKS = ["3519010101900001", "3519010101900002", "3519020202850003"]
VALUES = ["Siti Aminah", "Budi Santoso", "Kare", "CoronaVac", "Jl. Mawar 12"]


def _record(name: str = "offsync.server", **fields: object) -> logging.LogRecord:
    logger = logging.getLogger(name)
    found: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record)

    keep = Keep()
    logger.addHandler(keep)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        event(logger, logging.INFO, "upload.applied", **fields)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(old)
    return found[0]


def test_an_event_as_text_and_as_json() -> None:
    record = _record(site="3ab0992f14c2", label="kec saradan", applied=12, ok=True, gone=None)
    assert (
        record.getMessage()
        == 'upload.applied site=3ab0992f14c2 label="kec saradan" applied=12 ok=true'
    )
    text = TextFormatter().format(record)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO offsync\.server upload\.applied "
        r'site=3ab0992f14c2 label="kec saradan" applied=12 ok=true',
        text,
    ), text
    doc = json.loads(JSONFormatter().format(record))
    assert doc["event"] == "upload.applied" and doc["level"] == "info"
    assert (doc["site"], doc["label"], doc["applied"], doc["ok"]) == (
        "3ab0992f14c2",
        "kec saradan",
        12,
        True,
    )
    assert "gone" not in doc and "message" not in doc


def test_uvicorns_access_lines_get_fields() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "PUT", "/bundles/ab", "1.1", 200),
        None,
    )
    doc = json.loads(JSONFormatter().format(record))
    assert (doc["event"], doc["method"], doc["status"]) == ("http.access", "PUT", 200)
    assert "method=PUT path=/bundles/ab" in TextFormatter().format(record)


def test_install_sends_events_and_undo_puts_things_back(tmp_path: Path) -> None:
    logger = logging.getLogger("offsync")
    before = (logger.level, logger.propagate, list(logger.handlers))
    undo = install("json", "debug", file=tmp_path / "offsync.log")
    event(logging.getLogger("offsync.cli"), logging.DEBUG, "sync.round", applied=1)
    undo()
    assert (logger.level, logger.propagate, list(logger.handlers)) == before
    (line,) = (tmp_path / "offsync.log").read_text().splitlines()
    assert json.loads(line)["event"] == "sync.round"
    with pytest.raises(UsageError, match="choose one of"):
        install("yaml")


def test_the_server_names_a_certified_site_by_its_certificate(tmp_path: Path) -> None:
    """Trust mode: the label in the server's events is the certificate's."""
    authority = Replica.open(":memory:", identity=Identity.generate(label="authority"))
    site = Replica.open(":memory:", identity=Identity.generate(label="laptop"))
    issue_certificate(authority, site.identity, label="kec-saradan")
    centre = Replica.open(":memory:", identity=Identity.generate(), trust=[authority.id])
    for bundle in authority.pack():
        centre.apply(bundle)
    site.put("residents", NIKS[0], {"name": VALUES[0]})
    undo = install("json", "info", file=tmp_path / "server.log")
    try:
        with LiveServer(create_app(centre)) as srv, HTTPTransport(srv.url, site.identity) as link:
            sync(site, link)
    finally:
        undo()
    docs = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()]
    applied = [d for d in docs if d.get("event") == "upload.applied"]
    assert applied and all(d["label"] == "kec-saradan" for d in applied)
    assert applied[0]["site"] == short_key(site.id) and applied[0]["applied"] == 1
    pulled = [d for d in docs if d.get("event") == "pull.served"]
    assert pulled and pulled[0]["label"] == "kec-saradan"
    for r in (authority, site, centre):
        r.close()


def _lines(path: Path) -> list[dict[str, object]]:
    text = path.read_text()
    docs = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert docs, f"{path} is empty"
    return docs


@pytest.mark.slow
def test_no_personal_data_in_the_logs_of_a_real_server_and_command(tmp_path: Path) -> None:
    sh = Shell(tmp_path)
    sh.init("pusat")
    kec_a = sh.init("kec-a")
    sh.init("kec-b")
    sh.run("--site", "pusat", "peers", "add", "kec-a", kec_a)  # labels kec-a at the server
    sh.run(
        "--site", "kec-a", "put", "residents", NIKS[0], f"name={VALUES[0]}", f"village={VALUES[2]}"
    )
    sh.run("--site", "kec-a", "put", "addresses", NIKS[0], f"street={VALUES[4]}")
    sh.run("--site", "kec-b", "put", "residents", NIKS[1], f"name={VALUES[1]}")
    sh.run("--site", "kec-b", "put", "doses", f"{NIKS[2]}/1", f"vaccine={VALUES[3]}")
    server_log, cli_log = tmp_path / "server.log", tmp_path / "cli.log"
    logs = ("--log-format", "json", "--log-level", "debug", "--log-file", str(cli_log))
    options = ("--log-format", "json", "--log-level", "debug", "--log-file", str(server_log))
    with serving(sh, "pusat", *options, "--access-log", "--metrics") as (url, _pid):
        for site in ("kec-a", "kec-b", "kec-a"):
            sh.run(*logs, "--site", site, "sync", url)
        assert httpx.put(f"{url}/bundles/{'ab' * 32}", content=NIKS[0].encode()).status_code == 422
        httpx.get(url + "/metrics")
        # A failure whose message names the record asked for: logged without it.
        sh.run(*logs, "--site", "kec-a", "get", "residents", "3519099999999999", code=1)
        sh.run(
            *logs,
            "--site",
            "kec-a",
            "conflicts",
            "resolve",
            "residents",
            NIKS[0],
            "--choose",
            "x:1",
            code=2,
        )
    assert sh.json("--site", "kec-a", "get", "residents", NIKS[1])["name"] == VALUES[1]

    server, cli = _lines(server_log), _lines(cli_log)
    events = {str(d.get("event")) for d in server}
    assert {"server.ready", "upload.applied", "pull.served", "refused", "http.access"} <= events
    applied = [d for d in server if d.get("event") == "upload.applied" and d.get("applied")]
    assert {d.get("label") for d in applied} == {"kec-a", None}  # kec-b is in no book
    assert all(re.fullmatch(r"[0-9a-f]{64}", str(d["bundle"])) for d in applied)
    assert sum(int(str(d["applied"])) for d in applied) == 4
    refused = [d for d in server if d.get("event") == "refused"]
    assert [(d["status"], d["error"]) for d in refused] == [(422, "BundleIdMismatch")]
    rounds = [d for d in cli if d.get("event") == "sync.round"]
    assert len(rounds) == 3 and rounds[-1]["applied"] == 2  # kec-b's two, back at kec-a
    failed = [d for d in cli if d.get("event") == "command.failed"]
    assert [(d["command"], d["exit"]) for d in failed] == [("get", 1), ("conflicts resolve", 2)]
    assert all("reason" not in d for d in failed if d["exit"] == 2)

    everything = server_log.read_text() + cli_log.read_text()
    for secret in NIKS + VALUES + ["3519099999999999"]:
        assert secret not in everything, f"{secret!r} is in the logs"


def test_a_text_log_reads_as_one_line_per_event() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("offsync.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        event(logger, logging.WARNING, "busy", status=503, reason="server saturated")
        event(logger, logging.DEBUG, "upload.chunk", received=1)  # below the level
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith('WARNING offsync.test busy status=503 reason="server saturated"')
