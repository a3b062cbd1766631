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

Environment:

=========================  ==========================================================
OFFSYNC_POSTGRES           connection string (required)
OFFSYNC_SCHEMA             schema holding the store (default ``offsync``)
OFFSYNC_IDENTITY           the centre's key file (required)
OFFSYNC_PASSPHRASE(_FILE)  its passphrase, or a file holding it
OFFSYNC_POLICIES           ``collection=policy,...`` with policies lww, fww, multi
OFFSYNC_DEFAULT_POLICY     policy of other collections (default lww)
OFFSYNC_AUTHORITIES        comma-separated hex keys of the trust authorities (trust
                           mode); unset: open mode, every validly signed origin writes
OFFSYNC_MAX_IN_FLIGHT      uploads/applies/pulls at once per worker (default 4)
OFFSYNC_BUSY_TIMEOUT       seconds to wait for the replica before 503 (default 10)
OFFSYNC_RETRY_AFTER        the Retry-After of a 503, seconds (default 2)
OFFSYNC_UPLOAD_DIR         where partial uploads wait (default: a temporary directory)
=========================  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import Identity, Replica, policies
from .errors import UsageError

__all__ = ["app_from_env", "replica_from_env"]


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


def replica_from_env(env: Mapping[str, str] | None = None) -> Replica:
    """This process's replica of the centre, on the shared PostgreSQL store."""
    from .stores.postgres import PostgresStore

    env = os.environ if env is None else env
    passphrase = env.get("OFFSYNC_PASSPHRASE")
    if passphrase is None and env.get("OFFSYNC_PASSPHRASE_FILE"):
        passphrase = Path(env["OFFSYNC_PASSPHRASE_FILE"]).read_text().rstrip("\n")
    if passphrase is None:
        raise UsageError("the centre needs OFFSYNC_PASSPHRASE or OFFSYNC_PASSPHRASE_FILE")
    identity = Identity.load(_need(env, "OFFSYNC_IDENTITY"), passphrase)
    default = env.get("OFFSYNC_DEFAULT_POLICY", "lww")
    if default not in policies.BUILTIN:
        raise UsageError(f"OFFSYNC_DEFAULT_POLICY: unknown policy {default!r}")
    authorities = [a.strip() for a in env.get("OFFSYNC_AUTHORITIES", "").split(",") if a.strip()]
    try:
        trust = [bytes.fromhex(a) for a in authorities] or None
    except ValueError as exc:
        raise UsageError("OFFSYNC_AUTHORITIES: write hex public keys separated by commas") from exc
    store = PostgresStore(
        _need(env, "OFFSYNC_POSTGRES"), schema=env.get("OFFSYNC_SCHEMA", "offsync")
    )
    return Replica(
        store,
        identity,
        _policies(env.get("OFFSYNC_POLICIES", "")),
        default_policy=policies.BUILTIN[default](),
        trust=trust,
    )


def app_from_env(env: Mapping[str, str] | None = None) -> Any:
    """The ASGI app of one centre worker (``uvicorn --factory offsync.centre:app_from_env``)."""
    from .server import create_app

    env = os.environ if env is None else env
    replica = replica_from_env(env)
    return create_app(
        replica,
        upload_dir=env.get("OFFSYNC_UPLOAD_DIR") or None,
        max_in_flight=int(env.get("OFFSYNC_MAX_IN_FLIGHT", "4")),
        busy_timeout=float(env.get("OFFSYNC_BUSY_TIMEOUT", "10")),
        retry_after=int(env.get("OFFSYNC_RETRY_AFTER", "2")),
    )
