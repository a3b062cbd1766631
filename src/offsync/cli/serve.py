"""``offsync serve``: this site over HTTP, or a centre of several worker processes over
one PostgreSQL database (``offsync.centre``).

Every ``create_app`` option is a flag and an ``OFFSYNC_*`` variable, made from one table
(``offsync.http.settings``) that ``offsync.centre.app_from_env`` reads too. The key's
passphrase never enters an environment: a centre's workers get it inside the
``CentreFactory`` uvicorn hands each of them through the pipe it starts them with.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from .. import Replica
from ..errors import UsageError
from ..http.settings import SETTINGS, Setting, app_options
from ..logs import LOGGERS, dict_config, install
from .app import cli, pass_state
from .exits import EXIT_ERROR, EXIT_TRANSPORT, EXIT_USAGE, fail
from .site import KEY_FILE, State

F = TypeVar("F", bound=Callable[..., Any])
#: Log options the group also takes (before the command name); its value (flag or
#: environment) is the fallback, so the environment is read there only.
_GROUP_LOG_OPTIONS = ("log_format", "log_level", "log_file")


class SettingType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """A flag's value read and checked as its setting says (``Setting.parse``)."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.name = setting.kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.setting.parse(value)
        except ValueError as exc:
            source = None
            if ctx is not None and param is not None and param.name is not None:
                source = ctx.get_parameter_source(param.name)
            where = f" (from {self.setting.env})" if source is ParameterSource.ENVIRONMENT else ""
            self.fail(f"{exc}{where}", param, ctx)


def _default(setting: Setting) -> str:
    value = setting.default
    if value is None or setting.kind == "path":
        return ""
    if setting.kind == "bool":
        return " [default: off]" if not value else " [default: on]"
    if setting.kind == "bytes":
        return f" [default: {setting._show(value)}]"
    if setting.kind == "seconds":
        return f" [default: {setting._show(value)}]"
    return f" [default: {value}]"


def setting_options(fn: F) -> F:
    """A flag for each setting, reading its ``OFFSYNC_*`` variable when not given."""
    for setting in reversed(SETTINGS):
        envvar = None if setting.name in _GROUP_LOG_OPTIONS else setting.env
        where = f" (env {setting.env})" if envvar else " (also before the command)"
        text = setting.help + where + _default(setting)
        if setting.kind == "bool":
            option = click.option(
                f"{setting.flag}/--no-{setting.flag[2:]}",
                setting.name,
                default=None,
                envvar=envvar,
                help=text,
            )
        else:
            option = click.option(
                setting.flag,
                setting.name,
                type=SettingType(setting),
                default=None,
                envvar=envvar,
                metavar=(
                    f"[{'|'.join(setting.choices)}]"
                    if setting.kind == "choice"
                    else setting.kind.upper()
                ),
                help=text,
            )
        fn = option(fn)
    return fn


def _listen(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket bound here (port 0: a free one), and its URL.

    It listens before the URL is announced: a client that connects as soon as it reads
    the URL waits in the backlog until uvicorn accepts, instead of being refused while
    uvicorn starts (uvicorn listens again with its own backlog)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Nagle off (TCP_NODELAY, inherited by accepted connections; and IPPROTO_TCP named,
    # which asyncio needs to turn it off itself): with it on, an answer written in two
    # parts waited for the client's delayed ACK, ~40 ms a request (docs/design.md, Blobs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen()
    except OSError as exc:
        sock.close()
        fail(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            EXIT_TRANSPORT,
            "choose another --port, or stop what is using it",
        )
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"http://{shown}:{sock.getsockname()[1]}"


def _announce(state: State, label: str, key: bytes, url: str) -> None:
    """The first line on stdout: scripts read the URL (last word) or the JSON."""
    if state.json:
        click.echo(json.dumps({"url": url, "public_key": key.hex()}), nl=True)
    else:
        click.echo(f"serving {label} ({key.hex()}) on {url}")
    sys.stdout.flush()


def _start_logging(state: State, server: dict[str, Any]) -> None:
    """Once every check has passed (a refusal before is said in the one error shape
    alone), offsync's and uvicorn's loggers get the server's handler, so that what
    happens before uvicorn starts is logged too (the app says it is ready); undone
    when the command ends. uvicorn applies the same as its ``log_config``, in this
    process and in each worker it starts."""
    form, level, file = server.pop("offsync_log")
    if state.log_undo is not None:
        state.log_undo()
    state.cleanups.append(install(form, level, file=file, loggers=LOGGERS))


def _uvicorn_options(state: State, given: dict[str, Any]) -> dict[str, Any]:
    """uvicorn's logging: offsync's format for uvicorn's lines too, at the asked level;
    the access log off unless asked for (offsync's own events say who sent what)."""
    form = given.pop("log_format", None) or state.log_format or "text"
    level = given.pop("log_level", None) or state.log_level or "info"
    file = given.pop("log_file", None) or state.log_file
    return {
        "log_config": dict_config(form, level, file=file),
        "log_level": level,
        "access_log": bool(given.pop("access_log", False)),
        "lifespan": "off",
        "offsync_log": (form, level, file),
    }


@contextlib.contextmanager
def _multiprocess_metrics(on: bool, workers: int) -> Iterator[None]:
    """Workers sharing one metrics directory (prometheus-client's multiprocess mode),
    made empty for this run and removed after it; one set by the operator is used as
    it is."""
    from ..http.metrics import MULTIPROC_ENV

    if not on or workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="offsync-metrics-")
    os.environ[MULTIPROC_ENV] = path  # not a secret: where the workers write counters
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)


@cli.command()
@click.option(
    "--postgres",
    "dsn",
    metavar="DSN",
    envvar="OFFSYNC_POSTGRES",
    help="Serve a centre on this PostgreSQL database instead of the site's SQLite file "
    "(env OFFSYNC_POSTGRES; keep the password in a libpq password file, not here).",
)
@click.option(
    "--schema",
    default="offsync",
    show_default=True,
    envvar="OFFSYNC_SCHEMA",
    help="With --postgres: the schema that holds the store (env OFFSYNC_SCHEMA).",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="URL",
    envvar="OFFSYNC_PEERS",
    help="Another centre to sync with as a peer, every --peer-every (repeatable; env "
    "OFFSYNC_PEERS, separated by spaces). Its key: from `offsync centres` if listed there, "
    "else pinned at first contact.",
)
@setting_options
@pass_state
def serve(
    state: State, /, dsn: str | None, schema: str, peers: tuple[str, ...], **values: Any
) -> None:
    """Serve this site over HTTP (uvicorn) for `offsync sync http://...`.

    Partial uploads are kept in the site's uploads/ directory, so they resume after a
    restart. Stop with Ctrl-C (or SIGTERM). GET /healthz says the process is alive,
    GET /readyz that its store answers; --metrics serves Prometheus metrics at
    /metrics. Sizes take K, M, G (16M); durations s, m, h, d (7d).

    With --postgres the site's key serves a centre whose store is the PostgreSQL
    database, in --workers processes (offsync.centre); what the site's own store holds
    is copied there first. --peer URL syncs with another centre of the deployment every
    --peer-every, in this process (docs/scale.md, "Several centres").
    """
    try:
        import uvicorn

        from ..server import create_app
    except ImportError as exc:
        fail(f"serve needs the http extra ({exc})", EXIT_ERROR, "pip install 'offsync[cli]'")
    given = {k: v for k, v in values.items() if v is not None}
    if given.get("metrics"):
        from ..http.metrics import available

        if not available():
            fail(
                "--metrics needs prometheus-client, which is not installed",
                EXIT_USAGE,
                "pip install 'offsync[metrics]', or start without --metrics",
            )
    server = _uvicorn_options(state, given)
    host, port = given.pop("host", "127.0.0.1"), given.pop("port", 8080)
    workers = given.pop("workers", 1)
    given.setdefault("upload_dir", str((state.site.path / "uploads").resolve()))
    peering = _PeeringPlan(state, list(peers), given.pop("peer_every", 60.0))
    if dsn is not None:
        _serve_centre(state, dsn, schema, host, port, workers, given, server, peering)
        return
    if workers != 1:
        fail(
            "--workers needs --postgres",
            hint="worker processes share a PostgreSQL store, never the site's SQLite file",
        )
    replica = state.sealer()  # peers pull: packing seals
    options = app_options(replica, given)
    _start_logging(state, server)
    app = create_app(replica, site_labels=state.names(replica), **options)
    sock, url = _listen(host, port)
    _announce(state, replica.identity.label, replica.id, url)
    with peering.running(replica, app.state.offsync.observe.metrics):
        uvicorn.Server(uvicorn.Config(app, **server)).run(sockets=[sock])


@dataclass
class _PeeringPlan:
    """The peer centres of ``--peer`` and their period, run beside the server."""

    state: State
    urls: list[str]
    every: float

    def keys(self) -> dict[str, bytes]:
        """The keys of peers listed by ``offsync centres``, by URL."""
        listed = {c["url"]: c["key"] for c in self.state.site.centres}
        return {
            url: bytes.fromhex(key)
            for url in self.urls
            if (key := listed.get(url.rstrip("/"))) is not None
        }

    @contextlib.contextmanager
    def running(self, replica: Replica, metrics: Any = None) -> Iterator[None]:
        """Rounds with the peers in a background thread while the block runs."""
        if not self.urls:
            yield
            return
        from ..sync import Peering

        try:
            peering = Peering(replica, self.urls, every=self.every, server_keys=self.keys())
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE, "give each --peer as http://HOST:PORT, once")
        peering.metrics = metrics
        with peering:
            yield


def _serve_centre(
    state: State,
    dsn: str,
    schema: str,
    host: str,
    port: int,
    workers: int,
    given: dict[str, Any],
    server: dict[str, Any],
    peering: _PeeringPlan,
) -> None:
    """Run a ``CentreFactory`` in uvicorn's factory mode: each worker process builds
    its own replica and app from it. One worker: its app is built here, and the rounds
    with peer centres share its replica and metrics; several: the rounds run in this
    (the supervising) process on a connection of their own, logged only."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..centre import CentreFactory

    site = state.site
    local = state.sealer()
    factory = CentreFactory(
        dsn=dsn,
        schema=schema,
        identity=str((site.path / KEY_FILE).resolve()),
        passphrase=state.passphrase(),
        policies=dict(site.policies),
        default_policy=site.default_policy,
        partitions=dict(site.partitions),
        authorities=[bytes.fromhex(a) for a in site.authorities],
        # Workers share partial uploads safely: each upload is locked per bundle id.
        settings=given,
        labels=state.names(local),
    )
    # Open the centre here first: a wrong DSN or passphrase fails now with its exit code,
    # not in every worker; the schema is migrated once, before the workers race to it;
    # and what this site holds (its own changes, certificates) reaches the database.
    centre = factory.replica()
    try:
        app_options(centre, given)  # a setting the centre cannot follow fails here
        for bundle in local.iter_pack(centre.knowledge()):
            centre.apply(bundle)
    finally:
        centre.close()
    _start_logging(state, server)
    sock, url = _listen(host, port)
    _announce(state, site.label, site.public_key, url)
    if workers == 1:
        app = factory()
        state_ = app.state.offsync
        with peering.running(state_.replica, state_.observe.metrics):
            uvicorn.Server(uvicorn.Config(app, **server)).run(sockets=[sock])
        return
    config = uvicorn.Config(factory, factory=True, workers=workers, **server)
    with _multiprocess_metrics(bool(given.get("metrics")), workers):
        extra: dict[str, Any] = {}
        if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
            extra["target"] = uvicorn.Server(config).run
        own = factory.replica() if peering.urls else None
        try:
            with peering.running(own) if own is not None else contextlib.nullcontext():
                Multiprocess(config, sockets=[sock], **extra).run()
        finally:
            if own is not None:
                own.close()
