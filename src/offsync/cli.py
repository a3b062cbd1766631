"""The ``offsync`` command: run a site from a shell, without writing Python.

A *site directory* holds one site: ``site.json`` (label, public key, merge policies),
``identity.key`` (the secret key, sealed with a passphrase) and ``replica.sqlite``.
Commands find it with ``--site DIR`` (or ``OFFSYNC_SITE``; default: the current
directory) and read the passphrase from ``--passphrase-file``, ``OFFSYNC_PASSPHRASE`` or
a prompt.

Exit codes (docs/operations.md, "Exit codes")::

    0  done
    1  failure of this machine (storage, an unexpected error)
    2  usage: bad arguments, no site here, wrong passphrase, a refused local write
    3  refused input: a bundle or file that is damaged, forged, out of scope
    4  transport failure: the server, folder or disk could not be reached or written

Every error message says what to do next. ``--json`` makes every command print one JSON
document on stdout for scripts; progress bars and messages go to stderr.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

try:
    import click
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    sys.stderr.write(f"offsync: the command needs its extra: pip install 'offsync[cli]' ({_exc})\n")
    raise SystemExit(2) from None

from . import Identity, Replica, policies
from .bundle import open_bundle, read_header
from .change import ChangeId, decode_changes
from .clock import hlc_millis
from .errors import (
    IdentityError,
    OffsyncError,
    RemoteDataError,
    StorageError,
    TransportError,
    UsageError,
)
from .knowledge import Knowledge

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

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_TRANSPORT = 4

SITE_FILE = "site.json"
KEY_FILE = "identity.key"
STORE_FILE = "replica.sqlite"
BUNDLE_SUFFIX = ".ofs"
#: Set to 1 to seal key files with the cheapest argon2id parameters. For tests only:
#: a key file made this way falls to a passphrase guesser quickly.
FAST_KDF_ENV = "OFFSYNC_INSECURE_FAST_KDF"

F = TypeVar("F", bound=Callable[..., Any])


# -- errors and exit codes -------------------------------------------------------------


class CommandError(click.ClickException):
    """An error with an exit code and a hint on what to do next."""

    def __init__(self, message: str, code: int = EXIT_USAGE, hint: str = "") -> None:
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]
        self.hint = hint

    def show(self, file: Any = None) -> None:
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        err.print(f"[bold red]error:[/] {escape(self.message)}")
        if self.hint:
            err.print(f"[yellow]next:[/] {self.hint}")


def _classify(exc: OffsyncError) -> CommandError:
    """Map the library's error tree to an exit code and a next step."""
    from . import errors as e

    msg = str(exc) or type(exc).__name__
    if isinstance(exc, e.WrongPassphraseError):
        return CommandError(
            msg, EXIT_USAGE, "check OFFSYNC_PASSPHRASE or --passphrase-file for this site"
        )
    if isinstance(exc, e.NotAuthorisedError):
        return CommandError(
            msg,
            EXIT_USAGE,
            "peers would refuse this write: check the site's certificate with "
            "`offsync trust list`, or ask the authority for one that covers it",
        )
    if isinstance(exc, (IdentityError, UsageError)):
        return CommandError(msg, EXIT_USAGE, "see `offsync COMMAND --help`")
    if isinstance(exc, e.SequenceReuseError):
        return CommandError(
            msg,
            EXIT_USAGE,
            "sync with a peer (`offsync sync` or `offsync apply`) to get this site's changes "
            "back; see docs/operations.md, 'Restoring a site from backup'",
        )
    if isinstance(exc, e.DecryptionError):
        return CommandError(
            msg, EXIT_REFUSED, "apply it at the site it was sealed for, or forward it unopened"
        )
    if isinstance(exc, (e.UnknownSignerError, e.ScopeError)):
        return CommandError(
            msg, EXIT_REFUSED, "import the sender's certificate with `offsync trust import`"
        )
    if isinstance(exc, RemoteDataError):
        return CommandError(
            msg,
            EXIT_REFUSED,
            "the input is damaged or forged: fetch a fresh copy from the sender; "
            "`offsync inspect FILE` shows what it claims to be",
        )
    if isinstance(exc, e.PeerRefusedError):
        return CommandError(
            msg,
            EXIT_TRANSPORT,
            "the other side refused and the same request will be refused again: check "
            "--server-key, this site's certificate (`offsync trust list` at the server) "
            "and the server's log",
        )
    if isinstance(exc, e.RetryableTransportError):
        after = f" (the other side asks for {exc.retry_after:g} s)" if exc.retry_after else ""
        return CommandError(
            msg + after, EXIT_TRANSPORT, "try again later; nothing was lost or half-applied"
        )
    if isinstance(exc, TransportError):
        return CommandError(
            msg, EXIT_TRANSPORT, "check the address, folder or disk, then run the command again"
        )
    if isinstance(exc, StorageError):
        return CommandError(
            msg, EXIT_ERROR, "check the disk and the site directory; nothing was changed"
        )
    return CommandError(msg, EXIT_ERROR)


class _Group(click.Group):
    """A group that turns library errors into messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OffsyncError as exc:
            raise _classify(exc) from exc
        except OSError as exc:
            if isinstance(exc, ConnectionError):
                raise CommandError(str(exc), EXIT_TRANSPORT, "check the address") from exc
            raise CommandError(
                f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                EXIT_ERROR,
                "check the path and its permissions",
            ) from exc


# -- shared state ----------------------------------------------------------------------


@dataclass
class State:
    site_dir: Path
    passphrase_file: Path | None
    json: bool = False
    _replica: Replica | None = None
    _identity: Identity | None = None
    _site: Site | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def site(self) -> Site:
        if self._site is None:
            self._site = Site.load(self.site_dir)
        return self._site

    def passphrase(self, *, confirm: bool = False) -> str:
        return read_passphrase(self.passphrase_file, confirm=confirm)

    def identity(self) -> Identity:
        if self._identity is None:
            self._identity = self.site.identity(self.passphrase())
        return self._identity

    def replica(self) -> Replica:
        if self._replica is None:
            self._replica = self.site.open(self.identity())
            self.cleanups.append(self._replica.close)
        return self._replica


def read_passphrase(path: Path | None, *, confirm: bool = False) -> str:
    if path is not None:
        return path.read_text().rstrip("\r\n")
    env = os.environ.get("OFFSYNC_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise CommandError(
            "no passphrase given",
            EXIT_USAGE,
            "set OFFSYNC_PASSPHRASE or pass --passphrase-file FILE",
        )
    value: str = click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
    return value


# -- the site directory ----------------------------------------------------------------


def _policy_of(name: str) -> policies.Policy:
    try:
        return policies.BUILTIN[name]()
    except KeyError:
        raise CommandError(
            f"unknown policy {name!r}",
            EXIT_USAGE,
            f"use one of {', '.join(sorted(policies.BUILTIN))}",
        ) from None


@dataclass
class Site:
    """A site directory: configuration, sealed key file and SQLite store."""

    path: Path
    label: str
    public_key: bytes
    policies: dict[str, str]
    default_policy: str = "lww"
    #: Authority keys (hex): the root of trust. Empty: open mode, any signer may write.
    authorities: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Site:
        cfg = path / SITE_FILE
        if not cfg.is_file():
            raise CommandError(
                f"{path} is not an offsync site (no {SITE_FILE})",
                EXIT_USAGE,
                "create one with `offsync init DIR`, or point --site / OFFSYNC_SITE at it",
            )
        try:
            doc = json.loads(cfg.read_text())
            site = cls(
                path,
                str(doc["label"]),
                bytes.fromhex(doc["public_key"]),
                {str(k): str(v) for k, v in doc.get("policies", {}).items()},
                str(doc.get("default_policy", "lww")),
                [str(a) for a in doc.get("authorities", [])],
            )
            for a in site.authorities:
                if len(bytes.fromhex(a)) != 32:
                    raise ValueError(f"authority key {a!r} is not 32 bytes")
            return site
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(
                f"{cfg} is damaged ({exc})", EXIT_ERROR, "restore it from a backup"
            ) from exc

    def save(self) -> None:
        """Write site.json atomically."""
        doc = {
            "format": "offsync-site",
            "version": 1,
            "label": self.label,
            "public_key": self.public_key.hex(),
            "policies": dict(sorted(self.policies.items())),
            "default_policy": self.default_policy,
            "authorities": self.authorities,
        }
        write_atomic(self.path / SITE_FILE, (json.dumps(doc, indent=2) + "\n").encode())

    @classmethod
    def create(
        cls,
        path: Path,
        identity: Identity,
        passphrase: str,
        site_policies: dict[str, str],
        default_policy: str = "lww",
        authorities: Sequence[str] = (),
    ) -> Site:
        for name in [*site_policies.values(), default_policy]:
            _policy_of(name)
        path.mkdir(parents=True, exist_ok=True)
        if (path / SITE_FILE).exists() or (path / KEY_FILE).exists():
            raise CommandError(
                f"{path} already holds a site",
                EXIT_USAGE,
                "choose another directory; a site's key is never overwritten",
            )
        kdf: dict[str, int] = {}
        if os.environ.get(FAST_KDF_ENV) == "1":
            import nacl.pwhash

            kdf = {
                "opslimit": nacl.pwhash.argon2id.OPSLIMIT_MIN,
                "memlimit": nacl.pwhash.argon2id.MEMLIMIT_MIN,
            }
        identity.save(path / KEY_FILE, passphrase, **kdf)
        site = cls(
            path,
            identity.label,
            identity.public_key,
            site_policies,
            default_policy,
            list(dict.fromkeys(authorities)),
        )
        site.save()
        site.open(identity).close()
        return site

    @property
    def short_id(self) -> str:
        return self.public_key[:6].hex()

    def identity(self, passphrase: str) -> Identity:
        ident = Identity.load(self.path / KEY_FILE, passphrase)
        if ident.public_key != self.public_key:
            raise CommandError(
                "identity.key does not belong to this site.json",
                EXIT_ERROR,
                "restore the site directory from one backup, not from two",
            )
        return ident

    def open(self, identity: Identity) -> Replica:
        return Replica.open(
            str(self.path / STORE_FILE),
            identity=identity,
            policies={c: _policy_of(p) for c, p in self.policies.items()},
            default_policy=_policy_of(self.default_policy),
            trust=[bytes.fromhex(a) for a in self.authorities] if self.authorities else None,
        )


# -- output helpers --------------------------------------------------------------------

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)
if not _out.is_terminal and "COLUMNS" not in os.environ:
    _out.width = 120  # logs and pipes: wide enough that tables keep one line per row


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2, sort_keys=True, ensure_ascii=False))


def say(state: State, message: str) -> None:
    """A narrative line; on stderr with --json so stdout stays one document."""
    (_err if state.json else _out).print(message)


def when(hlc: int) -> str:
    if not hlc:
        return "-"
    ms = hlc_millis(hlc)
    stamp = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")


def head_name(head: ChangeId) -> str:
    return f"{head.origin[:6].hex()}:{head.seq}"


def ranges_text(k: Knowledge) -> list[str]:
    return [
        f"{o[:6].hex()} " + ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ivs)
        for o, ivs in k.intervals.items()
    ]


@contextmanager
def progress(state: State, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (only on a terminal, never with --json)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(
        *columns, console=_err, transient=True, disable=state.json or not _err.is_terminal
    ) as bar:
        task = bar.add_task(description, total=total)

        def step(n: int = 1) -> None:
            bar.advance(task, n)

        yield step


def parse_fields(pairs: Sequence[str], as_json: str | None) -> dict[str, Any]:
    """``name=text`` sets a string, ``name:=JSON`` any value; or one ``--fields`` JSON map."""
    fields: dict[str, Any] = {}
    if as_json is not None:
        try:
            loaded = json.loads(as_json)
        except ValueError as exc:
            raise CommandError(f"--fields is not JSON: {exc}", EXIT_USAGE) from exc
        if not isinstance(loaded, dict):
            raise CommandError("--fields must be a JSON object", EXIT_USAGE)
        fields.update(loaded)
    for pair in pairs:
        m = re.fullmatch(r"([^=:]+)(:?)=(.*)", pair, flags=re.S)
        if not m:
            raise CommandError(
                f"cannot read {pair!r}", EXIT_USAGE, "write FIELD=text or FIELD:=JSON"
            )
        name, typed, raw = m.groups()
        if typed:
            try:
                fields[name] = json.loads(raw)
            except ValueError as exc:
                raise CommandError(f"{name}:= is not JSON: {exc}", EXIT_USAGE) from exc
        else:
            fields[name] = raw
    return fields


def state_of(ctx: click.Context) -> State:
    obj = ctx.find_object(State)
    assert obj is not None
    return obj


def json_option(fn: F) -> F:
    """``--json`` on every command (also accepted before the command name)."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            state_of(ctx).json = True

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print one JSON document on stdout (for scripts).",
    )(fn)


pass_state = click.make_pass_decorator(State)


def fail(message: str, code: int = EXIT_USAGE, hint: str = "") -> NoReturn:
    raise CommandError(message, code, hint)


# -- the command -----------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-s",
    "--site",
    "site_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="OFFSYNC_SITE",
    default=".",
    show_default=True,
    help="The site directory (env OFFSYNC_SITE).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="OFFSYNC_PASSPHRASE_FILE",
    help="Read the key passphrase from this file (else env OFFSYNC_PASSPHRASE, else a prompt).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON output for scripts.")
@click.version_option(package_name="offsync")
@click.pass_context
def cli(ctx: click.Context, site_dir: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """offsync: keep a registry site working offline and deliver its changes later.

    Exit codes: 0 done, 1 local failure, 2 usage, 3 refused input, 4 transport failure.
    """
    state = State(site_dir, passphrase_file, as_json)
    ctx.obj = state

    def close() -> None:
        for cleanup in reversed(state.cleanups):
            cleanup()

    ctx.call_on_close(close)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``offsync`` script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="offsync")


# -- init, id ----------------------------------------------------------------------------


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--label", help="A short human name for the site (default: the directory name).")
@click.option(
    "--policy",
    "policy_specs",
    multiple=True,
    metavar="COLLECTION=POLICY",
    help="Merge policy of a collection: lww, fww or multi (repeatable).",
)
@click.option(
    "--default-policy", default="lww", show_default=True, help="Policy of other collections."
)
@click.option(
    "--trust",
    "trusted",
    multiple=True,
    metavar="KEY",
    help="An authority key (hex) to trust; then only certified sites may write (repeatable).",
)
@click.option(
    "--authority", is_flag=True, help="This site is an authority: it issues certificates."
)
@json_option
@pass_state
def init(
    state: State,
    directory: Path | None,
    label: str | None,
    policy_specs: tuple[str, ...],
    default_policy: str,
    trusted: tuple[str, ...],
    authority: bool,
) -> None:
    """Create a site: a new key (sealed with the passphrase) and an empty store.

    Without --trust or --authority the site is in open mode: it applies the changes of
    any validly signed site. With them, only sites certified by an authority.
    """
    path = directory or state.site_dir
    site_policies: dict[str, str] = {}
    for spec in policy_specs:
        collection, sep, name = spec.partition("=")
        if not sep or not collection:
            fail(f"cannot read --policy {spec!r}", hint="write --policy doses=fww")
        site_policies[collection] = name
    passphrase = state.passphrase(confirm=True)
    if not passphrase:
        fail("an empty passphrase would leave the site key unprotected", hint="choose one")
    authorities = [parse_key(k).hex() for k in trusted]
    identity = Identity.generate(label=label or path.resolve().name)
    if authority:
        authorities.insert(0, identity.public_key.hex())
    site = Site.create(path, identity, passphrase, site_policies, default_policy, authorities)
    if state.json:
        emit_json(
            {
                "site": str(path),
                "label": site.label,
                "public_key": site.public_key,
                "policies": site.policies,
                "authorities": site.authorities,
            }
        )
    else:
        _out.print(f"Created site [bold]{site.label}[/] in {path}")
        _out.print(f"public key {site.public_key.hex()}")
        _out.print("Back up identity.key and keep the passphrase apart from it.")


@cli.command("id")
@json_option
@pass_state
def show_id(state: State) -> None:
    """Show this site's label and public key (no passphrase needed)."""
    site = state.site
    if state.json:
        emit_json({"label": site.label, "public_key": site.public_key, "path": str(site.path)})
    else:
        _out.print(f"{site.label} {site.public_key.hex()}")


# -- records -----------------------------------------------------------------------------


@cli.command()
@click.argument("collection")
@click.argument("key")
@click.argument("pairs", nargs=-1, metavar="FIELD=VALUE...")
@click.option("--fields", "fields_json", metavar="JSON", help="Fields as one JSON object.")
@json_option
@pass_state
def put(
    state: State, collection: str, key: str, pairs: tuple[str, ...], fields_json: str | None
) -> None:
    """Set fields of a record (FIELD=text, FIELD:=JSON); other fields are kept."""
    fields = parse_fields(pairs, fields_json)
    if not fields:
        fail("no fields given", hint="write e.g. `offsync put residents 3519... name=Siti`")
    change = state.replica().put(collection, key, fields)
    if state.json:
        emit_json({"origin": change.origin, "seq": change.seq})
    else:
        _out.print(f"{collection}/{key} written (change {head_name(change)})")


@cli.command()
@click.argument("collection")
@click.argument("key")
@json_option
@pass_state
def get(state: State, collection: str, key: str) -> None:
    """Show one record (exit 1 if there is none)."""
    value = state.replica().get(collection, key)
    if state.json:
        emit_json(value)
    elif value is not None:
        for name, v in value.items():
            _out.print(f"{name}: {json.dumps(_jsonable(v), ensure_ascii=False)}")
    if value is None:
        if not state.json:
            _err.print(f"{collection}/{key}: no such record")
        raise click.exceptions.Exit(EXIT_ERROR)


@cli.command()
@click.argument("collection")
@click.argument("key")
@json_option
@pass_state
def delete(state: State, collection: str, key: str) -> None:
    """Delete a record (a tombstone that travels like any change)."""
    change = state.replica().delete(collection, key)
    if state.json:
        emit_json({"deleted": change is not None})
    elif change is None:
        _out.print(f"{collection}/{key}: nothing to delete")
    else:
        _out.print(f"{collection}/{key} deleted (change {head_name(change)})")


@cli.command()
@click.argument("collection", required=False)
@click.option("--limit", type=int, default=0, help="Show at most this many records.")
@json_option
@pass_state
def ls(state: State, collection: str | None, limit: int) -> None:
    """List collections, or the records of one collection."""
    replica = state.replica()
    if collection is None:
        counts: dict[str, int] = {}
        for row in replica.store.iter_records():
            if row.fields is not None:
                counts[row.collection] = counts.get(row.collection, 0) + 1
        if state.json:
            emit_json(counts)
            return
        table = Table("collection", "records", "policy")
        for name, n in sorted(counts.items()):
            table.add_row(name, str(n), replica.policy(name).name)
        _out.print(table)
        return
    records: list[tuple[str, dict[str, Any]]] = []
    for key, value in replica.items(collection):
        records.append((key, value))
        if limit and len(records) >= limit:
            break
    if state.json:
        emit_json({k: v for k, v in records})
        return
    table = Table("key", "fields", title=collection)
    for key, value in records:
        table.add_row(key, json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=True))
    _out.print(table)


# -- peers -------------------------------------------------------------------------------


def certified_labels(replica: Replica) -> dict[str, bytes]:
    """Label -> key, from the certificates in force (labels used twice are left out)."""
    store = replica.trust_store
    if store is None:
        return {}
    seen: dict[str, list[bytes]] = {}
    for key, cert in store.certificates.items():
        if cert.label:
            seen.setdefault(cert.label, []).append(key)
    return {label: keys[0] for label, keys in seen.items() if len(keys) == 1}


def parse_key(text: str) -> bytes:
    """A full public key in hex (64 digits)."""
    text = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        fail(
            f"{text!r} is not a public key (64 hex digits)",
            hint="`offsync id` at that site prints its key",
        )
    return bytes.fromhex(text)


def resolve_peer(replica: Replica, text: str) -> bytes:
    """A peer named by its certified label, its public key in hex, or an unambiguous
    prefix of the key of a peer heard from."""
    labels = certified_labels(replica)
    if text in labels:
        return labels[text]
    text = text.strip().lower()
    if re.fullmatch(r"[0-9a-f]{64}", text):
        return bytes.fromhex(text)
    if not re.fullmatch(r"[0-9a-f]{4,63}", text):
        fail(
            f"{text!r} is not a public key or a hex prefix of one",
            hint="`offsync status` lists known peers; `offsync id` at the peer prints its key",
        )
    known = [p for p in replica.receipts() if p.hex().startswith(text)]
    if len(known) == 1:
        return known[0]
    fail(
        f"{'no' if not known else 'more than one'} known peer starts with {text}",
        hint="give the full 64-digit public key from `offsync id` at that site",
    )


def peer_knowledge(replica: Replica, peer: bytes) -> Knowledge:
    receipt = replica.receipts().get(peer)
    return receipt.knowledge if receipt is not None else Knowledge()


# -- bundle files ------------------------------------------------------------------------


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:40] or "site"


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def bundle_files(paths: Sequence[Path]) -> list[Path]:
    """Files named on the command line; directories stand for the bundles in them."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix == BUNDLE_SUFFIX))
        else:
            out.append(p)
    return out


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--for", "for_peer", metavar="PEER", help="Only what this peer lacks (its receipt).")
@click.option("--encrypt", is_flag=True, help="Seal the bundles for the --for peer.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=4096),
    default=16 * 1024 * 1024,
    show_default=True,
    help="Largest bundle file.",
)
@json_option
@pass_state
def pack(state: State, out: Path, for_peer: str | None, encrypt: bool, max_bytes: int) -> None:
    """Write bundle files into OUT: everything, or what --for PEER lacks.

    One bundle is written even when nothing is new, so this site's receipt travels.
    """
    replica = state.replica()
    peer = resolve_peer(replica, for_peer) if for_peer else None
    if encrypt and peer is None:
        fail("--encrypt needs --for PEER", hint="name the site that will open the bundles")
    since = peer_knowledge(replica, peer) if peer is not None else None
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{_safe(replica.identity.label)}-{replica.identity.short_id}"
    written: list[dict[str, Any]] = []
    with progress(state, "packing", None) as step:
        for i, data in enumerate(
            replica.iter_pack(
                since, max_bytes=max_bytes, recipient=peer if encrypt else None, always=True
            )
        ):
            header, _ = read_header(data)
            path = out / f"{prefix}-{header.created:016x}-{i:04d}{BUNDLE_SUFFIX}"
            write_atomic(path, data)
            written.append(
                {"file": str(path), "bytes": len(data), "changes": header.ranges.count()}
            )
            step(1)
    if state.json:
        emit_json(written)
        return
    total = sum(w["changes"] for w in written)
    _out.print(
        f"{len(written)} bundle(s), {total} change(s), "
        f"{sum(w['bytes'] for w in written)} bytes in {out}"
    )


def describe_bundle(path: Path, own: bytes | None) -> dict[str, Any]:
    """What ``inspect`` reports: the header, checked but never opened."""
    data = path.read_bytes()
    info: dict[str, Any] = {"file": str(path), "bytes": len(data)}
    try:
        header, body = read_header(data)
    except RemoteDataError as exc:
        info.update(valid=False, error=f"{type(exc).__name__}: {exc}")
        return info
    info.update(
        valid=True,
        signature="valid",
        format_version=int.from_bytes(data[6:8], "big"),
        sender=header.sender,
        sender_is_this_site=header.sender == own,
        recipient=header.recipient,
        encrypted=header.recipient is not None,
        created=when(header.created),
        segments=header.segments,
        changes=header.ranges.count(),
        ranges={o.hex(): [list(iv) for iv in ivs] for o, ivs in header.ranges.intervals.items()},
        body_bytes=len(body),
        uncompressed_bytes=header.body_size,
        receipts=[
            {"replica": r.replica, "created": when(r.created), "holds": r.knowledge.count()}
            for r in header.receipts
        ],
    )
    return info


def _own_key(state: State) -> bytes | None:
    try:
        return Site.load(state.site_dir).public_key
    except CommandError:
        return None


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@json_option
@pass_state
def inspect(state: State, files: tuple[Path, ...]) -> None:
    """Show bundle headers: sender, ranges, sizes, signature. Applies nothing.

    Needs no key and no passphrase: the body is neither decrypted nor decompressed.
    Exit 3 if any file is not a validly signed bundle.
    """
    own = _own_key(state)
    infos = [describe_bundle(p, own) for p in bundle_files(files)]
    if state.json:
        emit_json(infos)
    else:
        for info in infos:
            _print_bundle(info)
    if not all(i["valid"] for i in infos):
        raise click.exceptions.Exit(EXIT_REFUSED)


def _print_bundle(info: dict[str, Any]) -> None:
    table = Table(show_header=False, title=info["file"], title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if not info["valid"]:
        table.add_row("signature", "[red]NOT VALID[/]")
        table.add_row("error", info["error"])
        _out.print(table)
        return
    me = " (this site)" if info["sender_is_this_site"] else ""
    table.add_row("signature", "[green]valid[/]")
    table.add_row("format", str(info["format_version"]))
    table.add_row("sender", info["sender"].hex() + me)
    table.add_row(
        "recipient", info["recipient"].hex() if info["recipient"] else "anyone (not sealed)"
    )
    table.add_row("created", info["created"])
    table.add_row("changes", f"{info['changes']} in {info['segments']} segment(s)")
    table.add_row(
        "ranges",
        "\n".join(
            f"{o[:12]} " + ",".join(f"{a}-{b}" for a, b in ivs) for o, ivs in info["ranges"].items()
        )
        or "-",
    )
    table.add_row(
        "size",
        f"{info['bytes']} bytes (body {info['body_bytes']}, {info['uncompressed_bytes']} unpacked)",
    )
    table.add_row(
        "receipts",
        "\n".join(
            f"{r['replica'][:6].hex()} holds {r['holds']} as of {r['created']}"
            for r in info["receipts"]
        ),
    )
    _out.print(table)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@json_option
@pass_state
def verify(state: State, files: tuple[Path, ...]) -> None:
    """Check bundles completely (signatures of the bundle and of every segment, format,
    limits) without applying them. Bundles sealed for this site are opened with its key.

    Exit 3 if any bundle would be refused.
    """
    own = _own_key(state)
    results: list[dict[str, Any]] = []
    paths = bundle_files(files)
    with progress(state, "verifying", len(paths)) as step:
        for path in paths:
            results.append(_verify_one(state, path, own))
            step(1)
    if state.json:
        emit_json(results)
    else:
        table = Table("file", "result", "changes")
        for r in results:
            mark = "[green]ok[/]" if r["ok"] else "[red]refused[/]"
            table.add_row(r["file"], f"{mark} {r['detail']}", str(r.get("changes", "")))
        _out.print(table)
    if not all(r["ok"] for r in results):
        raise click.exceptions.Exit(EXIT_REFUSED)


def _verify_one(state: State, path: Path, own: bytes | None) -> dict[str, Any]:
    data = path.read_bytes()
    try:
        header, _ = read_header(data)
        identity = None
        if header.recipient is not None:
            if header.recipient != own:
                return {
                    "file": str(path),
                    "ok": True,
                    "detail": "signature valid; body sealed for "
                    f"{header.recipient[:6].hex()}, not checked here",
                    "changes": header.ranges.count(),
                }
            identity = state.identity()
        bundle = open_bundle(data, identity)
        for seg in bundle.segments:
            seg.verify()
            decode_changes(seg.changes, seg.origin, seg.first_seq)
    except RemoteDataError as exc:
        return {"file": str(path), "ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {
        "file": str(path),
        "ok": True,
        "detail": "bundle and segment signatures valid",
        "changes": header.ranges.count(),
    }


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@json_option
@pass_state
def apply(state: State, files: tuple[Path, ...]) -> None:
    """Apply bundle files (or every bundle in a directory) to this site.

    Each bundle is applied whole or not at all; applying one twice changes nothing.
    Refused bundles are reported and skipped; exit 3 if there were any.
    """
    replica = state.replica()
    paths = bundle_files(files)
    rows: list[dict[str, Any]] = []
    with progress(state, "applying", len(paths)) as step:
        for path in paths:
            try:
                report = replica.apply(path.read_bytes())
            except RemoteDataError as exc:
                rows.append(
                    {"file": str(path), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
                )
            else:
                rows.append(
                    {
                        "file": str(path),
                        "ok": True,
                        "sender": report.sender,
                        "applied": report.applied,
                        "duplicates": report.duplicates,
                        "quarantined": report.quarantined,
                        "conflicts": [f"{c}/{k}" for c, k in report.conflicts],
                        "receipts": report.receipts,
                    }
                )
            step(1)
    if state.json:
        emit_json(rows)
    else:
        table = Table("file", "applied", "duplicates", "quarantined", "conflicts", "result")
        for r in rows:
            if r["ok"]:
                table.add_row(
                    Path(r["file"]).name,
                    str(r["applied"]),
                    str(r["duplicates"]),
                    str(r["quarantined"]),
                    str(len(r["conflicts"])),
                    "[green]ok[/]",
                )
            else:
                table.add_row(Path(r["file"]).name, "", "", "", "", f"[red]refused[/] {r['error']}")
        _out.print(table)
        if any(r["ok"] and r["conflicts"] for r in rows):
            _out.print("Open conflicts: see `offsync conflicts`.")
    if not all(r["ok"] for r in rows):
        _err.print(
            "[yellow]next:[/] refused bundles were left untouched; "
            "`offsync inspect FILE` shows what they claim to be"
        )
        raise click.exceptions.Exit(EXIT_REFUSED)


# -- status and conflicts ----------------------------------------------------------------


def status_document(replica: Replica) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data."""
    mine = replica.knowledge()
    peers = []
    for peer, receipt in sorted(replica.receipts().items(), key=lambda kv: -kv[1].created):
        peers.append(
            {
                "peer": peer,
                "last_receipt": when(receipt.created),
                "holds": receipt.knowledge.count(),
                "holds_of_mine": receipt.knowledge.count(replica.id),
                "pending": (mine - receipt.knowledge).count(),
                "pending_of_mine": (mine - receipt.knowledge).count(replica.id),
            }
        )
    return {
        "site": replica.identity.label,
        "public_key": replica.id,
        "seq": replica.seq,
        "changes_held": mine.count(),
        "state_digest": replica.state_digest(),
        "origins": len(mine.intervals),
        "peers": peers,
        "quarantined": [
            {
                "origin": q.origin,
                "first_seq": q.first_seq,
                "last_seq": q.last_seq,
                "reason": q.reason,
            }
            for q in replica.quarantined()
        ],
        "conflicts": [f"{c.collection}/{c.key}" for c in replica.conflicts()],
    }


@cli.command()
@json_option
@pass_state
def status(state: State) -> None:
    """What is pending per peer, last receipts, quarantined changes, open conflicts."""
    doc = status_document(state.replica())
    if state.json:
        emit_json(doc)
        return
    _out.print(
        f"[bold]{doc['site']}[/] {doc['public_key'].hex()}\n"
        f"{doc['seq']} change(s) written here; {doc['changes_held']} held from "
        f"{doc['origins']} site(s); state digest {doc['state_digest'].hex()[:16]}"
    )
    if doc["peers"]:
        table = Table(
            "peer",
            "last receipt",
            "holds",
            "holds of ours",
            "pending",
            "pending of ours",
            title="Peers (from their receipts)",
            title_justify="left",
        )
        for p in doc["peers"]:
            table.add_row(
                p["peer"][:6].hex(),
                p["last_receipt"],
                str(p["holds"]),
                f"{p['holds_of_mine']}/{doc['seq']}",
                str(p["pending"]),
                str(p["pending_of_mine"]),
            )
        _out.print(table)
    else:
        _out.print("No receipts yet: no peer has told us what it holds.")
    if doc["quarantined"]:
        table = Table("origin", "seqs", "reason", title="Quarantined", title_justify="left")
        for q in doc["quarantined"]:
            table.add_row(q["origin"][:6].hex(), f"{q['first_seq']}-{q['last_seq']}", q["reason"])
        _out.print(table)
    else:
        _out.print("Nothing quarantined.")
    n = len(doc["conflicts"])
    _out.print(f"{n} open conflict(s)" + (": see `offsync conflicts`" if n else ""))


@cli.group(cls=_Group, invoke_without_command=True)
@json_option
@click.pass_context
def conflicts(ctx: click.Context) -> None:
    """List open conflicts; `offsync conflicts resolve` settles one."""
    if ctx.invoked_subcommand is not None:
        return
    state = state_of(ctx)
    items = state.replica().conflicts()
    doc: list[dict[str, Any]] = [
        {
            "collection": c.collection,
            "key": c.key,
            "current": c.current,
            "versions": {head_name(h): v for h, v in c.versions.items()},
        }
        for c in items
    ]
    if state.json:
        emit_json(doc)
        return
    if not doc:
        _out.print("No open conflicts.")
        return
    for d in doc:
        table = Table(
            "head", "version", title=f"{d['collection']}/{d['key']}", title_justify="left"
        )
        for head, v in d["versions"].items():
            shown = json.dumps(_jsonable(v), ensure_ascii=False, sort_keys=True)
            if v == d["current"]:
                shown += "  [dim](shown now)[/]"
            table.add_row(head, shown)
        _out.print(table)
    _out.print("Settle one with `offsync conflicts resolve COLLECTION KEY --choose HEAD`.")


@conflicts.command("resolve")
@click.argument("collection")
@click.argument("key")
@click.argument("pairs", nargs=-1, metavar="[FIELD=VALUE...]")
@click.option("--choose", metavar="HEAD", help="Keep the version of this head (ORIGIN:SEQ).")
@click.option("--fields", "fields_json", metavar="JSON", help="Write these fields instead.")
@click.option("--delete", "as_delete", is_flag=True, help="Settle by deleting the record.")
@json_option
@pass_state
def conflicts_resolve(
    state: State,
    collection: str,
    key: str,
    pairs: tuple[str, ...],
    choose: str | None,
    fields_json: str | None,
    as_delete: bool,
) -> None:
    """Settle a record: keep one head's version, write new fields, or delete it."""
    replica = state.replica()
    fields = parse_fields(pairs, fields_json) if (pairs or fields_json) else None
    head: ChangeId | None = None
    if choose is not None:
        prefix, _, seq = choose.partition(":")
        match = [
            h
            for c in replica.conflicts()
            if (c.collection, c.key) == (collection, key)
            for h in c.versions
            if h.origin.hex().startswith(prefix.lower()) and str(h.seq) == seq
        ]
        if len(match) != 1:
            fail(
                f"{choose!r} names no head of an open conflict on {collection}/{key}",
                hint="`offsync conflicts` lists the heads as ORIGIN:SEQ",
            )
        head = match[0]
    if sum((fields is not None, head is not None, as_delete)) != 1:
        fail("give exactly one of --choose HEAD, FIELD=VALUE/--fields, or --delete")
    change = replica.resolve(collection, key, fields, choose=head, delete=as_delete)
    if state.json:
        emit_json(
            {"origin": change.origin, "seq": change.seq, "value": replica.get(collection, key)}
        )
    else:
        _out.print(
            f"{collection}/{key} settled by change {head_name(change)}; it travels like any change"
        )


# -- trust -------------------------------------------------------------------------------


def parse_time(text: str) -> int:
    """``now``, an ISO date or date-time (UTC unless it names a zone), or ms since 1970."""
    text = text.strip()
    if text == "now":
        return int(_dt.datetime.now(tz=_dt.UTC).timestamp() * 1000)
    if text.isdigit():
        return int(text)
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"cannot read the time {text!r}", hint="write now, 2026-01-31 or 2026-01-31T08:00")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return int(moment.timestamp() * 1000)


def ms_text(ms: int | None) -> str:
    if ms is None:
        return "-"
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _require_authority(state: State) -> Replica:
    site = state.site
    if site.public_key.hex() not in site.authorities:
        fail(
            f"{site.label} is not an authority: other sites would refuse what it issues",
            hint="issue certificates at the authority site (created with `offsync init "
            "--authority`), or add this key to its own trust with `offsync trust import`",
        )
    return state.replica()


@cli.group(cls=_Group)
def trust() -> None:
    """Authorities, certificates and revocations (who may write what)."""


@trust.command("import")
@click.argument("key")
@json_option
@pass_state
def trust_import(state: State, key: str) -> None:
    """Trust an authority KEY (hex): the root of trust, exchanged out of band.

    From then on this site applies only changes of sites that an authority certified;
    the rest is held in quarantine and re-examined when certificates arrive.
    """
    site = state.site
    hexkey = parse_key(key).hex()
    added = hexkey not in site.authorities
    if added:
        site.authorities.append(hexkey)
        site.save()
    replica = state.replica()  # opening re-examines what is held under the new trust
    if state.json:
        emit_json({"authorities": site.authorities, "added": added})
    else:
        _out.print(
            f"{'Now trusting' if added else 'Already trusted'}: authority {hexkey}; "
            f"{len(replica.quarantined())} quarantined segment(s) after re-examination"
        )


@trust.command("list")
@json_option
@pass_state
def trust_list(state: State) -> None:
    """Show the authorities, the certificates and the revocations in force."""
    replica = state.replica()
    store = replica.trust_store
    doc: dict[str, Any] = {
        "mode": "open" if store is None else "certified",
        "authorities": state.site.authorities,
        "certificates": [],
        "revocations": [],
        "problems": [],
    }
    if store is not None:
        doc["certificates"] = [
            {
                "site": c.site,
                "label": c.label,
                "collections": list(c.collections),
                "prefixes": list(c.prefixes),
                "valid_from": c.valid_from,
                "valid_until": c.valid_until,
                "replaces": c.replaces,
            }
            for c in store.certificates.values()
        ]
        doc["revocations"] = [
            {
                "site": r.site,
                "effective_ms": r.effective_ms,
                "after_seq": r.after_seq,
                "reason": r.reason,
            }
            for r in store.revocations.values()
        ]
        doc["problems"] = list(store.problems)
    if state.json:
        emit_json(doc)
        return
    if store is None:
        _out.print(
            "Open mode: no authority is trusted, so any validly signed site may write. "
            "`offsync trust import KEY` trusts an authority."
        )
        return
    _out.print("Authorities: " + ", ".join(a[:16] for a in doc["authorities"]))
    table = Table(
        "site",
        "label",
        "collections",
        "key prefixes",
        "valid",
        "replaces",
        title="Certificates",
        title_justify="left",
    )
    for c in doc["certificates"]:
        table.add_row(
            c["site"].hex()[:16],
            c["label"],
            ",".join(c["collections"]),
            ",".join(c["prefixes"]) or "any",
            f"{ms_text(c['valid_from'])} .. {ms_text(c['valid_until'])}",
            c["replaces"].hex()[:16] if c["replaces"] else "",
        )
    _out.print(table)
    for r in doc["revocations"]:
        after = f" after seq {r['after_seq']}" if r["after_seq"] is not None else ""
        since = f" from {ms_text(r['effective_ms'])}" if r["effective_ms"] is not None else ""
        _out.print(f"[red]revoked[/] {r['site'].hex()[:16]}{after}{since}: {r['reason']}")
    for problem in doc["problems"]:
        _out.print(f"[yellow]ignored[/] {problem}")


@trust.command("issue")
@click.argument("site_key", metavar="SITE")
@click.option("--label", default="", help="The site's name, shown to operators.")
@click.option("--collection", "collections", multiple=True, help="May write (default: all).")
@click.option("--prefix", "prefixes", multiple=True, help="Key prefix it may write (region).")
@click.option("--valid-from", default="0", help="now, a date, or ms (default: always).")
@click.option("--valid-until", default=None, help="now, a date, or ms (default: no end).")
@click.option("--replaces", default=None, metavar="KEY", help="The key this one rotates.")
@json_option
@pass_state
def trust_issue(
    state: State,
    site_key: str,
    label: str,
    collections: tuple[str, ...],
    prefixes: tuple[str, ...],
    valid_from: str,
    valid_until: str | None,
    replaces: str | None,
) -> None:
    """Certify SITE (its key in hex): what it may write, and when. Run at the authority.

    The certificate is an ordinary change: it reaches sites by the same roads as data.
    Issuing again for the same key replaces its certificate (renewal, new scope).
    """
    from .trust import issue_certificate

    replica = _require_authority(state)
    options: dict[str, Any] = {
        "label": label,
        "prefixes": prefixes,
        "valid_from": parse_time(valid_from),
        "valid_until": parse_time(valid_until) if valid_until else None,
        "replaces": parse_key(replaces) if replaces else None,
    }
    if collections:
        options["collections"] = collections
    change = issue_certificate(replica, parse_key(site_key), **options)
    if state.json:
        emit_json({"origin": change.origin, "seq": change.seq})
    else:
        _out.print(
            f"Certificate for {site_key[:16]} written (change {head_name(change)}); "
            "deliver it like any change (sync, disk export, pack)"
        )


@trust.command("revoke")
@click.argument("site_key", metavar="SITE")
@click.option("--after-seq", type=int, help="Refuse its changes above this seq.")
@click.option("--effective", help="Refuse its changes stamped from then: now, a date, or ms.")
@click.option("--reason", default="", help="Why (recorded with the revocation).")
@json_option
@pass_state
def trust_revoke(
    state: State, site_key: str, after_seq: int | None, effective: str | None, reason: str
) -> None:
    """Revoke SITE's key (lost disk, stolen laptop). Run at the authority.

    --after-seq pins the revocation to what the centre already holds (`offsync status`
    there shows it); a thief cannot backdate around it.
    """
    from .trust import revoke

    if after_seq is None and effective is None:
        fail(
            "a revocation needs --after-seq, --effective or both",
            hint="`offsync status` at the centre shows how much of that site it holds",
        )
    replica = _require_authority(state)
    change = revoke(
        replica,
        parse_key(site_key),
        after_seq=after_seq,
        effective_ms=parse_time(effective) if effective else None,
        reason=reason,
    )
    if state.json:
        emit_json({"origin": change.origin, "seq": change.seq})
    else:
        _out.print(f"Revocation of {site_key[:16]} written (change {head_name(change)})")


# -- attestations ------------------------------------------------------------------------


@cli.group(cls=_Group)
def attest() -> None:
    """Signed tokens for provisional cards: "this site recorded this", checkable offline."""


@attest.command("issue")
@click.argument("collection")
@click.argument("key")
@json_option
@pass_state
def attest_issue(state: State, collection: str, key: str) -> None:
    """A token for this site's latest change of COLLECTION/KEY (print it as a QR code)."""
    from .attest import attest as make_token
    from .attest import read_attestation, to_text

    token = make_token(state.replica(), collection, key)
    att = read_attestation(token)
    if state.json:
        emit_json({"token": to_text(token), "origin": att.origin, "seq": att.seq})
    else:
        click.echo(to_text(token))


@attest.command("check")
@click.argument("token")
@click.option("--centre", metavar="PEER", help="Also say whether this centre holds it.")
@click.option("--fields", "fields_json", metavar="JSON", help="The fields on the card.")
@json_option
@pass_state
def attest_check(state: State, token: str, centre: str | None, fields_json: str | None) -> None:
    """Verify a token against this site's trust store (offline); exit 3 if it fails.

    With --fields, the fields printed on the card must be the attested ones. With
    --centre, the centre's newest receipt heard here says whether it holds the change.
    """
    from .attest import from_text, verify_attestation

    replica = state.replica()
    raw = from_text(token.strip())
    fields = parse_fields((), fields_json) if fields_json else None
    att = verify_attestation(raw, replica.trust_store, fields=fields)
    doc: dict[str, Any] = {
        "valid": True,
        "origin": att.origin,
        "seq": att.seq,
        "collection": att.collection,
        "key": att.key,
        "recorded": ms_text(att.recorded_ms),
        "trust_checked": replica.trust_store is not None,
        "fields_checked": fields is not None,
    }
    if centre:
        from .attest import delivered

        key = resolve_peer(replica, centre)
        receipt = replica.receipts().get(key)
        doc["at_centre"] = receipt is not None and delivered(raw, receipt, centre=key)
    if state.json:
        emit_json(doc)
        return
    signer = att.origin.hex()[:16]
    labels = {v: k for k, v in certified_labels(replica).items()}
    _out.print(
        f"[green]valid[/]: {att.collection}/{att.key} recorded by "
        f"{labels.get(att.origin, signer)} (change {att.seq}) at {doc['recorded']}"
    )
    if not doc["trust_checked"]:
        _out.print("[yellow]note:[/] open mode: the signature is checked, not the certificate")
    if "at_centre" in doc:
        _out.print("reached the centre" if doc["at_centre"] else "not yet known at the centre")


# -- sync, disk, serve ---------------------------------------------------------------------


def _sync_rows(reports: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "peer": r.peer,
            "received_bundles": len(r.received),
            "applied": r.applied,
            "duplicates": r.duplicates,
            "quarantined": r.quarantined,
            "conflicts": [f"{c}/{k}" for c, k in r.conflicts],
            "refused": [{"source": x.source, "reason": x.reason} for x in r.refused],
            "sent_bundles": r.sent_bundles,
            "sent_changes": r.sent_changes,
            "sent_bytes": r.sent_bytes,
        }
        for r in reports
    ]


def _report_sync(state: State, reports: Sequence[Any], what: str) -> None:
    rows = _sync_rows(reports)
    if state.json:
        emit_json({"rounds": rows, "status": status_document(state.replica())})
    else:
        table = Table(
            "peer",
            "received",
            "applied",
            "dup",
            "quar.",
            "sent",
            "refused",
            title=what,
            title_justify="left",
        )
        for r in rows:
            table.add_row(
                r["peer"][:6].hex() if r["peer"] else "(any)",
                f"{r['received_bundles']} bundle(s)",
                str(r["applied"]),
                str(r["duplicates"]),
                str(r["quarantined"]),
                f"{r['sent_changes']} change(s), {r['sent_bundles']} bundle(s), {r['sent_bytes']} B",
                str(len(r["refused"])),
            )
        _out.print(table)
        for r in rows:
            for x in r["refused"]:
                _out.print(f"[red]refused[/] {x['source']}: {x['reason']}")
        conflicts = sum(len(r["conflicts"]) for r in rows)
        if conflicts:
            _out.print(f"{conflicts} new conflict(s): see `offsync conflicts`.")
    if any(r["refused"] for r in rows):
        _err.print(
            "[yellow]next:[/] refused bundles were set aside (never applied); "
            "ask the sender for a fresh copy"
        )
        raise click.exceptions.Exit(EXIT_REFUSED)


def _peers_option(replica: Replica, names: Sequence[str]) -> list[bytes]:
    return [resolve_peer(replica, n) for n in names]


@cli.command()
@click.argument("target")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="PEER",
    help="Folder: the site to leave bundles for (repeatable; default: whoever left us some).",
)
@click.option("--server-key", metavar="HEX", help="HTTP: refuse a server with another key.")
@click.option("--encrypt", is_flag=True, help="Seal outgoing bundles to the peer's key.")
@click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="HTTP seconds.")
@json_option
@pass_state
def sync(
    state: State,
    target: str,
    peers: tuple[str, ...],
    server_key: str | None,
    encrypt: bool,
    retries: int,
    timeout: float,
) -> None:
    """One sync round with a server (http://...) or a shared FOLDER.

    Sends exactly what the other side lacks (and this site's receipt), then takes what
    it offers. Safe to repeat and to interrupt: the next round picks up where this one
    stopped. Exit 4 when the server or folder cannot be reached, 3 if a bundle was refused.
    """
    from .sync import sync as sync_round

    replica = state.replica()
    if re.match(r"^https?://", target):
        from rich.progress import BarColumn, Progress, TextColumn

        from .transports.http import HTTPTransport

        key = None
        if server_key:
            key = resolve_peer(replica, server_key)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} B"),
            console=_err,
            transient=True,
            disable=state.json or not _err.is_terminal,
        ) as bar:
            tasks: dict[bytes, Any] = {}

            def on_progress(bundle_id: bytes, sent: int, total: int) -> None:
                if bundle_id not in tasks:
                    tasks[bundle_id] = bar.add_task(f"upload {bundle_id[:4].hex()}", total=total)
                bar.update(tasks[bundle_id], completed=sent)

            with HTTPTransport(
                target,
                replica.identity,
                server_key=key,
                encrypt=encrypt,
                max_retries=retries,
                timeout=timeout,
                connect_timeout=min(timeout, 10.0),
                progress=on_progress,
            ) as transport:
                report = sync_round(replica, transport)
        _report_sync(state, [report], f"sync with {target}")
        return
    from .transports import FolderTransport

    folder = Path(target)
    if not folder.is_dir():
        fail(
            f"{target} is neither an http(s) URL nor a folder",
            hint="give http://HOST:PORT or the path of the shared folder",
        )
    targets = _peers_option(replica, peers)
    inbound = FolderTransport(folder, replica.identity, None)
    with inbound:
        reports = [sync_round(replica, inbound, push=False)]
        heard = sorted(inbound.senders)
    targets += [s for s in heard if s not in targets and s != replica.id]
    for peer in targets:
        with FolderTransport(folder, replica.identity, peer, encrypt=encrypt) as transport:
            reports.append(sync_round(replica, transport))
    if not targets:
        _err.print(
            "[yellow]note:[/] nothing was left in the folder: no peer named; "
            "pass --peer KEY for the site that reads this folder"
        )
    _report_sync(state, reports, f"sync with folder {folder}")


@cli.group(cls=_Group)
def disk() -> None:
    """The courier flow: bundles on a removable disk (FAT32/exFAT safe, sealed)."""


@disk.command("export")
@click.argument("mount", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--to",
    "peers",
    multiple=True,
    required=True,
    metavar="PEER",
    help="The site the courier takes the disk to (repeatable).",
)
@click.option("--no-encrypt", is_flag=True, help="Leave bundles readable (not recommended).")
@json_option
@pass_state
def disk_export(state: State, mount: Path, peers: tuple[str, ...], no_encrypt: bool) -> None:
    """Write what each --to site lacks onto the disk at MOUNT.

    Checks the free space first and verifies every file after writing; bundles are sealed
    to the destination's key, so a lost disk leaks nothing.
    """
    from .sync import sync as sync_round
    from .transports import DiskTransport

    replica = state.replica()
    reports = []
    targets = _peers_option(replica, peers)
    with progress(state, "writing to disk", len(targets)) as step:
        for peer in targets:
            with DiskTransport(mount, replica.identity, peer, encrypt=not no_encrypt) as t:
                reports.append(sync_round(replica, t, pull=False))
            step(1)
    _report_sync(state, reports, f"exported to {mount}")
    if not state.json:
        _out.print("Safe to unplug the disk once the command has returned.")


@disk.command("import")
@click.argument("mount", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--reply/--no-reply",
    default=True,
    show_default=True,
    help="Write the return trip: what each sender lacks, and this site's receipt.",
)
@click.option("--to", "peers", multiple=True, metavar="PEER", help="Also write for this site.")
@json_option
@pass_state
def disk_import(state: State, mount: Path, reply: bool, peers: tuple[str, ...]) -> None:
    """Apply every bundle on the disk meant for this site; then write the return trip.

    Files that are torn, unlisted or refused are set aside on the disk (never applied).
    """
    from .sync import sync as sync_round
    from .transports import DiskTransport
    from .transports.disk import exchange

    replica = state.replica()
    if reply:
        with progress(state, "courier exchange", None):
            reports = exchange(replica, mount, _peers_option(replica, peers))
    else:
        with DiskTransport(mount, replica.identity, None) as t:
            reports = [sync_round(replica, t, push=False)]
    _report_sync(state, reports, f"imported from {mount}")


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
@pass_state
def serve(state: State, host: str, port: int, max_in_flight: int) -> None:
    """Serve this site over HTTP (uvicorn) for `offsync sync http://...`.

    Partial uploads are kept in the site's uploads/ directory, so they resume after a
    restart. Stop with Ctrl-C (or SIGTERM).
    """
    import socket

    try:
        import uvicorn

        from .server import create_app
    except ImportError as exc:
        fail(f"serve needs the http extra ({exc})", EXIT_ERROR, "pip install 'offsync[cli]'")
    replica = state.replica()
    app = create_app(replica, upload_dir=state.site.path / "uploads", max_in_flight=max_in_flight)
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
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound}"
    if state.json:
        click.echo(json.dumps({"url": url, "public_key": replica.id.hex()}), nl=True)
    else:
        click.echo(f"serving {replica.identity.label} ({replica.id.hex()}) on {url}")
    sys.stdout.flush()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])


@cli.command(
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run the field demo (centre, district, three offices; see `offsync demo --help`)."""
    from .demo import main as demo_main

    raise click.exceptions.Exit(demo_main(list(args)))


if __name__ == "__main__":
    main()
