"""The centre: several server processes over one PostgreSQL database.

uvicorn starts each worker process by calling ``app_from_env()``, which opens this
worker's own connection and ``Replica`` on the shared ``PostgresStore`` and wraps it in
``offsync.server.create_app``::

    OFFSYNC_POSTGRES=postgresql://offsync@db/registry \\
    OFFSYNC_IDENTITY=/etc/offsync/centre.key OFFSYNC_PASSPHRASE_FILE=/run/secrets/centre \\
    OFFSYNC_POLICIES=residents=lww,doses=fww,addresses=multi \\
    uvicorn --factory offsync.centre:app_from_env --workers 4 --host 0.0.0.0 --port 8443

Workers share nothing but the database: the store serialises per origin and per record
(docs/scale.md), each worker bounds its own in-flight work (``OFFSYNC_MAX_IN_FLIGHT``)
and answers 503 with Retry-After beyond it. Signed pulls are single-use across all of
them: each worker checks any worker's challenges (their key derives from the centre's
identity) and records a used one in the database (``http_nonces``), so a captured
request is served once whichever worker it reaches.

Environment (``offsync.http.settings`` has every setting; ``offsync serve --help`` shows
the same as flags):

=============================  ======================================================
OFFSYNC_POSTGRES               connection string (required); keep its password out of
                               it, in a libpq password file (``passfile=...``)
OFFSYNC_SCHEMA                 schema holding the store (default ``offsync``)
OFFSYNC_IDENTITY               the centre's key file (required)
OFFSYNC_PASSPHRASE_FILE        a file holding its passphrase (or, less safely,
                               OFFSYNC_PASSPHRASE: the passphrase itself)
OFFSYNC_POLICIES               ``collection=policy,...`` with policies lww, fww, multi
OFFSYNC_PARTITIONS             ``collection=length,...``: the partition rule (docs/spec-v3.md §4)
OFFSYNC_DEFAULT_POLICY         policy of other collections (default lww)
OFFSYNC_AUTHORITIES            comma-separated hex keys of the trust authorities (trust
                               mode); unset: open mode, every validly signed origin writes
OFFSYNC_MAX_IN_FLIGHT          uploads/applies/pulls at once per worker (default 8)
OFFSYNC_BUSY_TIMEOUT           seconds to wait for the replica before 503 (default 10)
OFFSYNC_RETRY_AFTER            the Retry-After of a 503, seconds (default 2)
OFFSYNC_SPOOL                  spool uploads and apply up to this many bundles per
                               transaction in the background (default 0: off;
                               docs/scale.md, "The upload spool")
OFFSYNC_UPLOAD_DIR             where partial uploads wait (default: a temporary directory)
OFFSYNC_MAX_UPLOAD_BYTES, OFFSYNC_MAX_PULL_BUNDLE_BYTES, OFFSYNC_MAX_PULL_RESPONSE_BYTES,
OFFSYNC_MAX_PARTIAL_UPLOADS, OFFSYNC_PARTIAL_TTL, OFFSYNC_CHALLENGE_LIFETIME,
OFFSYNC_READABLE, OFFSYNC_METRICS
                               the other ``create_app`` options (docs/operations.md)
OFFSYNC_LOG_FORMAT, _LOG_LEVEL text or json; debug, info (default), warning, error:
OFFSYNC_LOG_FILE               offsync's own log events (uvicorn keeps its own logging)
=============================  ======================================================

``offsync serve --postgres`` runs the same workers without the environment: it hands
each worker a ``CentreFactory`` (through the pipe uvicorn starts its workers with), so
the passphrase is never copied into an environment that other processes could read
(``/proc/PID/environ``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import Identity, Replica, policies
from .errors import UsageError

__all__ = ["CentreFactory", "app_from_env", "replica_from_env"]


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if not value:
        raise UsageError(f"the centre needs {name} in its environment (see offsync.centre)")
    return value


def _policies(spec: str) -> dict[str, policies.Policy]:
    out: dict[str, policies.Policy] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        collection, _, name = item.partition("=")
        if not collection or name not in policies.BUILTIN:
            raise UsageError(
                f"OFFSYNC_POLICIES: cannot read {item!r}; write collection=policy with "
                f"policy one of {', '.join(sorted(policies.BUILTIN))}"
            )
        out[collection] = policies.BUILTIN[name]()
    return out


def _passphrase(env: Mapping[str, str]) -> str:
    path = env.get("OFFSYNC_PASSPHRASE_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(
                f"OFFSYNC_PASSPHRASE_FILE: cannot read {path}: {exc.strerror}"
            ) from exc
    passphrase = env.get("OFFSYNC_PASSPHRASE")
    if passphrase is None:
        raise UsageError("the centre needs OFFSYNC_PASSPHRASE_FILE (or OFFSYNC_PASSPHRASE)")
    return passphrase


def replica_from_env(env: Mapping[str, str] | None = None) -> Replica:
    """This process's replica of the centre, on the shared PostgreSQL store."""
    env = os.environ if env is None else env
    default = env.get("OFFSYNC_DEFAULT_POLICY", "lww")
    if default not in policies.BUILTIN:
        raise UsageError(f"OFFSYNC_DEFAULT_POLICY: unknown policy {default!r}")
    authorities = [a.strip() for a in env.get("OFFSYNC_AUTHORITIES", "").split(",") if a.strip()]
    try:
        trust = [bytes.fromhex(a) for a in authorities]
    except ValueError as exc:
        raise UsageError("OFFSYNC_AUTHORITIES: write hex public keys separated by commas") from exc
    return CentreFactory(
        dsn=_need(env, "OFFSYNC_POSTGRES"),
        schema=env.get("OFFSYNC_SCHEMA", "offsync"),
        identity=_need(env, "OFFSYNC_IDENTITY"),
        passphrase=_passphrase(env),
        policies=dict(_specs(env.get("OFFSYNC_POLICIES", ""))),
        default_policy=default,
        authorities=trust,
        partitions=_lengths(env.get("OFFSYNC_PARTITIONS", "")),
    ).replica()


def _lengths(spec: str) -> dict[str, int]:
    """``OFFSYNC_PARTITIONS``: ``collection=length,...``, the deployment's partition rule."""
    out: dict[str, int] = {}
    for item in (i.strip() for i in spec.split(",") if i.strip()):
        collection, _, length = item.partition("=")
        if not collection.strip() or not length.strip().isdigit():
            raise UsageError(f"OFFSYNC_PARTITIONS: cannot read {item!r} (write residents=6)")
        out[collection.strip()] = int(length)
    return out


def _specs(spec: str) -> list[tuple[str, str]]:
    _policies(spec)  # refuses what it cannot read
    return [
        (c.strip(), p.strip())
        for c, _, p in (item.partition("=") for item in spec.split(",") if item.strip())
    ]


def app_from_env(env: Mapping[str, str] | None = None) -> Any:
    """The ASGI app of one centre worker (``uvicorn --factory offsync.centre:app_from_env``).

    offsync's log events go to stderr (or OFFSYNC_LOG_FILE) in OFFSYNC_LOG_FORMAT at
    OFFSYNC_LOG_LEVEL; uvicorn's own lines keep uvicorn's logging.
    """
    from .http.settings import SETTINGS, from_env
    from .logs import install

    env = os.environ if env is None else env
    values = from_env(env, SETTINGS)
    install(
        values.get("log_format", "text"),
        values.get("log_level", "info"),
        file=values.get("log_file"),
    )
    return _app(replica_from_env(env), values, {})


def _app(replica: Replica, values: Mapping[str, Any], labels: Mapping[bytes, str]) -> Any:
    from .http.settings import app_options
    from .server import create_app

    try:
        options = app_options(replica, values)
    except UsageError:
        replica.close()
        raise
    return create_app(replica, site_labels=labels, **options)


@dataclass(frozen=True)
class CentreFactory:
    """Everything a centre worker needs to build its app, as one value that uvicorn
    hands to each worker process it starts (``uvicorn.Config(factory, factory=True)``),
    pickled through the pipe it starts them with: nothing of it, the passphrase least of
    all, goes through the environment. A worker restarted after a crash gets it again.

    ``settings`` are ``offsync.http.settings`` values (``create_app``'s options and the
    log options); ``labels`` names sites in logs and metrics (the address book).
    """

    dsn: str
    schema: str
    identity: str
    passphrase: str = field(repr=False)
    policies: dict[str, str] = field(default_factory=dict)
    default_policy: str = "lww"
    authorities: list[bytes] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    #: The deployment's partition rule (collection -> key-prefix length).
    partitions: dict[str, int] = field(default_factory=dict)
    labels: dict[bytes, str] = field(default_factory=dict)

    def replica(self) -> Replica:
        """This process's replica of the centre: its own connection to the database."""
        from .stores.postgres import PostgresStore

        identity = Identity.load(self.identity, self.passphrase)
        chosen = {c: policies.BUILTIN[p]() for c, p in self.policies.items()}
        store = PostgresStore(self.dsn, schema=self.schema)
        return Replica(
            store,
            identity,
            chosen,
            default_policy=policies.BUILTIN[self.default_policy](),
            trust=list(self.authorities) or None,
            partitions=self.partitions,
        )

    def __call__(self) -> Any:
        return _app(self.replica(), self.settings, self.labels)
