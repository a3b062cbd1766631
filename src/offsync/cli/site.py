"""The site directory, its sealed key and passphrase, and one invocation's state.

A site directory holds one site: ``site.json`` (label, public key, merge policies,
trusted authorities), ``identity.key`` (the secret key, sealed with a passphrase) and
``replica.sqlite``. The passphrase comes from ``--passphrase-file``,
``OFFSYNC_PASSPHRASE`` or a prompt, and only when a command needs the key.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from .. import Identity, Replica, policies
from ..errors import StoreLockedError
from .exits import EXIT_ERROR, EXIT_USAGE, CommandError
from .output import err

SITE_FILE = "site.json"
KEY_FILE = "identity.key"
STORE_FILE = "replica.sqlite"
#: Set to 1 to seal key files with the cheapest argon2id parameters. For tests only:
#: a key file made this way falls to a passphrase guesser quickly.
FAST_KDF_ENV = "OFFSYNC_INSECURE_FAST_KDF"


def policy_of(name: str) -> policies.Policy:
    try:
        return policies.BUILTIN[name]()
    except KeyError:
        raise CommandError(
            f"unknown policy {name!r}",
            EXIT_USAGE,
            f"use one of {', '.join(sorted(policies.BUILTIN))}",
        ) from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write, flush to disk, then rename over ``path``: a crash leaves old or new."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
            policy_of(name)
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

    def open(self, identity: Identity, *, read_only: bool = False) -> Replica:
        return Replica.open(
            str(self.path / STORE_FILE),
            identity=identity,
            read_only=read_only,
            policies={c: policy_of(p) for c, p in self.policies.items()},
            default_policy=policy_of(self.default_policy),
            trust=[bytes.fromhex(a) for a in self.authorities] if self.authorities else None,
        )


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


@dataclass
class State:
    """One invocation: the global options, and the site, key and replica opened lazily
    (a command that needs no key asks for no passphrase)."""

    site_dir: Path
    passphrase_file: Path | None
    json: bool = False
    _replica: Replica | None = None
    _identity: Identity | None = None
    _site: Site | None = None
    _passphrase: str | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def site(self) -> Site:
        if self._site is None:
            self._site = Site.load(self.site_dir)
        return self._site

    def own_key(self) -> bytes | None:
        """This site's public key, or None when the directory holds no site."""
        try:
            return self.site.public_key
        except CommandError:
            return None

    def passphrase(self, *, confirm: bool = False) -> str:
        if self._passphrase is None:
            self._passphrase = read_passphrase(self.passphrase_file, confirm=confirm)
        return self._passphrase

    def identity(self) -> Identity:
        if self._identity is None:
            self._identity = self.site.identity(self.passphrase())
        return self._identity

    def replica(self) -> Replica:
        if self._replica is None:
            self._replica = self.site.open(self.identity())
            self.cleanups.append(self._replica.close)
        return self._replica

    def reader(self) -> Replica:
        """The replica for a command that only reads it: opened as usual, or read-only
        when another process owns the site (``offsync serve``), which goes on serving."""
        if self._replica is None:
            try:
                return self.replica()
            except StoreLockedError:
                self._replica = self.site.open(self.identity(), read_only=True)
                self.cleanups.append(self._replica.close)
                err.print(
                    "[yellow]note:[/] another process owns this site; "
                    "showing what it has committed, read-only"
                )
        return self._replica
