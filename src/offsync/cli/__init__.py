"""The ``offsync`` command: run a site from a shell, without writing Python.

A *site directory* holds one site: ``site.json`` (label, public key, merge policies),
``identity.key`` (the secret key, sealed with a passphrase) and ``replica.sqlite``.
Commands find it with ``--site DIR`` (or ``OFFSYNC_SITE``; default: the current
directory) and read the passphrase from ``--passphrase-file``, ``OFFSYNC_PASSPHRASE`` or
a prompt.

Exit codes say what failed: this machine (1), usage (2), refused input (3), a transport
(4); the table and which error gets which are in ``exits`` (docs/operations.md, "Exit
codes").

Every error message says what to do next. ``--json`` makes every command print one JSON
document on stdout for scripts; progress bars and messages go to stderr.

The package: ``app`` (the group, global options, errors as exit codes), ``exits`` (exit
codes and the error mapping), ``site`` (the site directory, key and passphrase),
``params`` (reading fields, keys, peers, times), ``output`` (tables, JSON, progress), and
one module per family of commands: ``records``, ``bundles``, ``status``, ``trust``,
``transfer`` (sync, disk), ``centres`` (the centres a site delivers to), ``serve``, ``backups`` (backup, restore) and ``peers`` (the
address book).
"""

from __future__ import annotations

import sys

try:
    import click  # noqa: F401
    import rich.console
    import rich.table  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    sys.stderr.write(f"offsync: the command needs its extra: pip install 'offsync[cli]' ({_exc})\n")
    raise SystemExit(2) from None

# Each command module adds its commands to ``cli`` when imported.
from . import backups, bundles, centres, peers, records, serve, status, transfer, trust  # noqa: F401
from .app import cli, main
from .exits import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TRANSPORT,
    EXIT_USAGE,
)
from .site import Site

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_TRANSPORT",
    "EXIT_USAGE",
    "Site",
    "cli",
    "main",
]
