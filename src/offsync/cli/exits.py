"""Exit codes, the error that carries one, and which library error maps to which.

Exit codes (docs/operations.md, "Exit codes")::

    0  done
    1  failure of this machine (storage, an unexpected error)
    2  usage: bad arguments, no site here, wrong passphrase, a refused local write
    3  refused input: a bundle or file that is damaged, forged, out of scope
    4  transport failure: the server, folder or disk could not be reached or written
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

from typing import Any, NoReturn

import click
from rich.markup import escape

from .. import errors as e
from .output import err

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_TRANSPORT = 4
#: Interrupted (Ctrl-C): 128 + SIGINT, as shells report it.
EXIT_INTERRUPTED = 130


def show_error(message: str, hint: str = "") -> None:
    """The one shape of every error on the command line: ``error: ...`` and, when there
    is something to do about it, ``next: ...`` (on stderr)."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err.print(f"[yellow]next:[/] {escape(hint)}")


class CommandError(click.ClickException):
    """An error with an exit code and a hint on what to do next."""

    def __init__(self, message: str, code: int = EXIT_USAGE, hint: str = "") -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]
        self.hint = hint

    def show(self, file: Any = None) -> None:
        show_error(self.message, self.hint)


def fail(message: str, code: int = EXIT_USAGE, hint: str = "") -> NoReturn:
    raise CommandError(message, code, hint)


#: Which exit code and next step each kind of library error gets: the first row whose
#: classes the error is an instance of wins, so a subclass stands before its base.
ADVICE: tuple[tuple[tuple[type[e.OffsyncError], ...], int, str], ...] = (
    (
        (e.WrongPassphraseError,),
        EXIT_USAGE,
        "check OFFSYNC_PASSPHRASE or --passphrase-file for this site",
    ),
    (
        (e.NotAuthorisedError,),
        EXIT_USAGE,
        "peers would refuse this write: check the site's certificate with "
        "`offsync trust list`, or ask the authority for one that covers it",
    ),
    ((e.IdentityError, e.UsageError), EXIT_USAGE, "see `offsync COMMAND --help`"),
    (
        (e.SequenceReuseError,),
        EXIT_USAGE,
        "sync with a peer (`offsync sync` or `offsync apply`) to get this site's changes "
        "back; see docs/operations.md, 'Restoring a site from backup'",
    ),
    (
        (e.DecryptionError,),
        EXIT_REFUSED,
        "apply it at the site it was sealed for, or forward it unopened",
    ),
    (
        (e.UnknownSignerError, e.ScopeError),
        EXIT_REFUSED,
        "import the sender's certificate with `offsync trust import`",
    ),
    (
        (e.RemoteDataError,),
        EXIT_REFUSED,
        "the input is damaged or forged: fetch a fresh copy from the sender; "
        "`offsync inspect FILE` shows what it claims to be",
    ),
    (
        (e.PeerRefusedError,),
        EXIT_TRANSPORT,
        "the other side refused and the same request will be refused again: check "
        "--server-key, this site's certificate (`offsync trust list` at the server) "
        "and the server's log",
    ),
    (
        (e.RetryableTransportError,),
        EXIT_TRANSPORT,
        "try again later; nothing was lost or half-applied",
    ),
    (
        (e.TransportError,),
        EXIT_TRANSPORT,
        "check the address, folder or disk, then run the command again",
    ),
    (
        (e.MissingBlobError,),
        EXIT_ERROR,
        "sync with a site that holds it (`offsync status` lists missing blobs;"
        " `offsync blobs` says which blobs this site fetches)",
    ),
    (
        (e.StoreLockedError,),
        EXIT_USAGE,
        "while `offsync serve` (or another program) holds this site, write through it "
        "over HTTP, or stop it and run the command again; `status`, `get` and `ls` "
        "still work (read-only)",
    ),
    (
        (e.StorageFullError,),
        EXIT_ERROR,
        "free space on the disk that holds the site directory (or replace a failing "
        "disk), then run the command again; nothing was changed",
    ),
    (
        (e.StorageError,),
        EXIT_ERROR,
        "check the disk and the site directory; nothing was changed",
    ),
)


def classify(exc: e.OffsyncError) -> CommandError:
    """Map the library's error tree to an exit code and a next step (``ADVICE``)."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, e.RetryableTransportError) and exc.retry_after:
        msg += f" (the other side asks for {exc.retry_after:g} s)"
    for kinds, code, hint in ADVICE:
        if isinstance(exc, kinds):
            return CommandError(msg, code, hint)
    return CommandError(msg, EXIT_ERROR)


def from_os_error(exc: OSError) -> CommandError:
    """A refused connection is a transport failure; any other OSError a local one."""
    if isinstance(exc, ConnectionError):
        return CommandError(str(exc), EXIT_TRANSPORT, "check the address")
    return CommandError(
        f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
        EXIT_ERROR,
        "check the path and its permissions",
    )
