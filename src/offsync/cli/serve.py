"""``offsync serve``: this site over HTTP, or a centre of several worker processes over
one PostgreSQL database (``offsync.centre``)."""

from __future__ import annotations

import inspect
import json
import os
import socket
import sys
from typing import Any

import click

from .app import cli, pass_state
from .exits import EXIT_ERROR, EXIT_TRANSPORT, fail
from .site import KEY_FILE, State

CENTRE_FACTORY = "offsync.centre:app_from_env"


def _listen(host: str, port: int) -> tuple[socket.socket, str]:
    """A listening socket bound here (port 0: a free one), and its URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="0 picks a free port (printed on the first line).",
)
@click.option("--max-in-flight", type=click.IntRange(min=1), default=8, show_default=True)
@click.option(
    "--postgres",
    "dsn",
    metavar="DSN",
    help="Serve a centre on this PostgreSQL database instead of the site's SQLite file.",
)
@click.option(
    "--schema",
    default="offsync",
    show_default=True,
    help="With --postgres: the schema that holds the store.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --postgres: server processes sharing the database.",
)
@pass_state
def serve(
    state: State,
    host: str,
    port: int,
    max_in_flight: int,
    dsn: str | None,
    schema: str,
    workers: int,
) -> None:
    """Serve this site over HTTP (uvicorn) for `offsync sync http://...`.

    Partial uploads are kept in the site's uploads/ directory, so they resume after a
    restart. Stop with Ctrl-C (or SIGTERM).

    With --postgres the site's key serves a centre whose store is the PostgreSQL
    database, in --workers processes (offsync.centre); what the site's own store holds
    is copied there first.
    """
    try:
        import uvicorn

        from ..server import create_app
    except ImportError as exc:
        fail(f"serve needs the http extra ({exc})", EXIT_ERROR, "pip install 'offsync[cli]'")
    if dsn is not None:
        _serve_centre(state, host, port, max_in_flight, dsn, schema, workers)
        return
    if workers != 1:
        fail(
            "--workers needs --postgres",
            hint="worker processes share a PostgreSQL store, never the site's SQLite file",
        )
    replica = state.sealer()  # peers pull: packing seals
    app = create_app(replica, upload_dir=state.site.path / "uploads", max_in_flight=max_in_flight)
    sock, url = _listen(host, port)
    _announce(state, replica.identity.label, replica.id, url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])


def _serve_centre(
    state: State, host: str, port: int, max_in_flight: int, dsn: str, schema: str, workers: int
) -> None:
    """Run ``offsync.centre:app_from_env`` in uvicorn's factory mode, configured through
    the environment that every worker process inherits."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from ..centre import replica_from_env

    site = state.site
    env = {
        "OFFSYNC_POSTGRES": dsn,
        "OFFSYNC_SCHEMA": schema,
        "OFFSYNC_IDENTITY": str((site.path / KEY_FILE).resolve()),
        "OFFSYNC_PASSPHRASE": state.passphrase(),
        "OFFSYNC_POLICIES": ",".join(f"{c}={p}" for c, p in sorted(site.policies.items())),
        "OFFSYNC_DEFAULT_POLICY": site.default_policy,
        "OFFSYNC_MAX_IN_FLIGHT": str(max_in_flight),
        "OFFSYNC_AUTHORITIES": ",".join(site.authorities),
        # Workers share partial uploads safely: each upload is locked per bundle id.
        "OFFSYNC_UPLOAD_DIR": str((site.path / "uploads").resolve()),
    }
    # Open the centre here first: a wrong DSN or passphrase fails now with its exit code,
    # not in every worker; the schema is migrated once, before the workers race to it;
    # and what this site holds (its own changes, certificates) reaches the database.
    local = state.sealer()
    centre = replica_from_env(env)
    try:
        for bundle in local.iter_pack(centre.knowledge()):
            centre.apply(bundle)
    finally:
        centre.close()
    os.environ.update(env)
    sock, url = _listen(host, port)
    _announce(state, site.label, site.public_key, url)
    config = uvicorn.Config(
        CENTRE_FACTORY, factory=True, workers=workers, log_level="warning", lifespan="off"
    )
    if workers == 1:
        uvicorn.Server(config).run(sockets=[sock])
        return
    extra: dict[str, Any] = {}
    if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn
        extra["target"] = uvicorn.Server(config).run
    Multiprocess(config, sockets=[sock], **extra).run()
