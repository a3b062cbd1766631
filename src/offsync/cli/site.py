"""The site directory, its sealed key and passphrase, and one invocation's state.

A site directory holds one site: ``site.json`` (label, public key, merge policies,
trusted authorities, the address book of peers' labels), ``identity.key`` (the secret
key, sealed with a passphrase) and ``replica.sqlite``; after ``offsync restore``, also
``restore.json`` until a peer has answered (``RestoreWait``). The passphrase comes from
``--passphrase-file``, ``OFFSYNC_PASSPHRASE`` or a prompt, and only when a command needs
the key.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import click

from .. import Identity, Replica, policies
from ..errors import StoreLockedError, UsageError
from ..scope import PartitionRule
from ..stores import sqlite as sqlite_store
from .exits import EXIT_ERROR, EXIT_USAGE, CommandError, fail
from .output import emit_json, err, iso_ms, out, short

SITE_FILE = "site.json"
KEY_FILE = "identity.key"
STORE_FILE = "replica.sqlite"
RESTORE_FILE = "restore.json"
#: Where a store is copied before an upgrade of its schema (``Site.open``).
BACKUPS_DIR = "backups"
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


def _length(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"a partition length is a number of code points, not {value!r}")
    return value


def parse_partitions(specs: Sequence[str]) -> dict[str, int]:
    """``collection=length`` settings (``--partitions residents=6``) as a rule's map."""
    out: dict[str, int] = {}
    for spec in specs:
        for item in (i.strip() for i in spec.split(",")):
            collection, sep, length = item.partition("=")
            if not sep or not collection.strip() or not length.strip().isdigit():
                fail(
                    f"cannot read --partitions {item!r}",
                    hint="write --partitions residents=6 (a collection and a key-prefix length)",
                )
            out[collection.strip()] = int(length)
    try:
        PartitionRule(out)
    except UsageError as exc:
        fail(f"--partitions: {exc}", hint="a length is 0 to 512 code points; _trust is always 0")
    return out


def write_atomic(path: Path, data: bytes) -> None:
    """Write, flush to disk, then rename over ``path``: a crash leaves old or new."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def utc_stamp() -> str:
    """Now, for file names: ``20261201T205131Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class CentreEntry(TypedDict):
    """A centre of site.json: its URL, and its key in hex (None until pinned)."""

    url: str
    key: str | None


def _centre_entry(doc: Any) -> CentreEntry:
    """One entry of site.json's ``centres``: ``{"url": str, "key": hex or None}``."""
    url, key = doc["url"], doc.get("key")
    if not isinstance(url, str) or not (key is None or isinstance(key, str)):
        raise ValueError(f"centre entry {doc!r} is not {{url, key}}")
    return {"url": url, "key": key}


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
    #: The address book: label -> public key (hex) of peers, kept by ``offsync peers``.
    peers: dict[str, str] = field(default_factory=dict)
    #: The centres this site delivers to, in order (``offsync centres``): each
    #: ``{"url": ..., "key": hex or None}``; a key not given is pinned at first contact.
    centres: list[CentreEntry] = field(default_factory=list)
    #: The deployment's partition rule: collection -> key-prefix length in code points
    #: (docs/spec-v3.md §4); a collection not named is one partition. Set at ``init``,
    #: deployment-wide and never changed (the store refuses another rule).
    partitions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Site:
        cfg = path / SITE_FILE
        if not cfg.is_file():
            raise CommandError(
                f"{path} is not an offsync site (no {SITE_FILE})",
                EXIT_USAGE,
                "create one with `offsync init DIR`, restore one with `offsync --site DIR"
                " restore BACKUP`, or point --site / OFFSYNC_SITE at it",
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
                {str(k): str(v) for k, v in doc.get("peers", {}).items()},
                [_centre_entry(c) for c in doc.get("centres", [])],
                {str(k): _length(v) for k, v in doc.get("partitions", {}).items()},
            )
            keys = [c["key"] for c in site.centres if c["key"] is not None]
            for a in [*site.authorities, *site.peers.values(), *keys]:
                if len(bytes.fromhex(a)) != 32:
                    raise ValueError(f"key {a!r} is not 32 bytes")
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
        if self.peers:
            doc["peers"] = dict(sorted(self.peers.items()))
        if self.centres:
            doc["centres"] = self.centres
        if self.partitions:
            doc["partitions"] = dict(sorted(self.partitions.items()))
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
        blobs: str | None = None,
        partitions: dict[str, int] | None = None,
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
            partitions=dict(partitions or {}),
        )
        site.save()
        site.open(identity, create=True, blobs=blobs).close()
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

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    def open(
        self,
        identity: Identity,
        *,
        read_only: bool = False,
        create: bool = False,
        blobs: str | None = None,
    ) -> Replica:
        """The site's replica. A missing store is an error unless ``create``: an empty
        store under an existing key would reuse the change numbers of what it lost. A
        store of an older schema is copied to ``backups/`` before it is upgraded."""
        if not create and not self.store_path.exists():
            fail(
                f"{self.store_path} is missing",
                EXIT_ERROR,
                "restore it from a backup (`offsync restore BACKUP`), or start an empty store"
                " that takes this site's changes back from its peers before it writes "
                "(`offsync restore --from-peers`); see docs/operations.md, 'Backups and restores'",
            )
        if not read_only:
            self._backup_before_upgrade()
        return Replica.open(
            str(self.store_path),
            identity=identity,
            read_only=read_only,
            policies={c: policy_of(p) for c, p in self.policies.items()},
            default_policy=policy_of(self.default_policy),
            trust=[bytes.fromhex(a) for a in self.authorities] if self.authorities else None,
            blobs=blobs,
            partitions=self.partitions,
        )

    def _backup_before_upgrade(self) -> None:
        pending = sqlite_store.pending_migrations(self.store_path)
        if not pending:
            return
        old = pending[0].version - 1
        folder = self.path / BACKUPS_DIR
        folder.mkdir(exist_ok=True)
        dest = folder / f"{STORE_FILE}.schema-{old}.{utc_stamp()}"
        sqlite_store.backup(self.store_path, dest)
        err.print(
            f"[yellow]note:[/] upgrading the store from schema {old} to "
            f"{pending[-1].version}; a checked copy of it as it was is in {dest}"
        )


@dataclass
class RestoreWait:
    """``restore.json``: this site was restored (``offsync restore``) and waits for a
    peer's answer before it writes, or seals what its store holds unsealed.

    Only a peer's receipt can tell a restored site that it had gone further than its
    backup: until one arrives, a write could reuse a lost change's number (a fork). The
    wait ends at the first receipt newer than the restored store held from a peer that
    then held some of this site's changes (any peer if none did); from then on the
    replica itself refuses to write until its lost changes are back
    (``SequenceReuseError``).
    """

    restored_ms: int
    #: The backup restored (None: an empty store, ``--from-peers``), and when it was taken.
    backup: str | None
    backup_taken: str | None
    #: This site's seq in the restored store.
    seq: int
    #: The newest receipt held from each peer at the restore (its ``created``).
    receipts: dict[bytes, int]
    #: Peers whose receipts then held some of this site's changes: one of them must answer.
    waiting_for: list[bytes]

    @classmethod
    def load(cls, site_path: Path) -> RestoreWait | None:
        path = site_path / RESTORE_FILE
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text())
            return cls(
                int(doc["restored_ms"]),
                doc.get("backup"),
                doc.get("backup_taken"),
                int(doc.get("seq", 0)),
                {bytes.fromhex(k): int(v) for k, v in doc.get("receipts", {}).items()},
                [bytes.fromhex(k) for k in doc.get("waiting_for", [])],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(
                f"{path} is damaged ({exc})",
                EXIT_ERROR,
                "sync with a peer, then remove the file with `offsync restore --resume`",
            ) from exc

    def save(self, site_path: Path) -> None:
        doc: dict[str, Any] = {
            "format": "offsync-restore",
            "version": 1,
            "restored": iso_ms(self.restored_ms),
            "restored_ms": self.restored_ms,
            "backup": self.backup,
            "backup_taken": self.backup_taken,
            "seq": self.seq,
            "receipts": {k.hex(): v for k, v in sorted(self.receipts.items())},
            "waiting_for": [k.hex() for k in self.waiting_for],
        }
        write_atomic(site_path / RESTORE_FILE, (json.dumps(doc, indent=2) + "\n").encode())

    @staticmethod
    def end(site_path: Path) -> bool:
        """Remove the wait; False if there was none."""
        try:
            (site_path / RESTORE_FILE).unlink()
        except FileNotFoundError:
            return False
        return True

    def answered_by(self, replica: Replica) -> bytes | None:
        """A peer that has answered since the restore, if one has."""
        for peer, receipt in sorted(replica.receipts().items()):
            if self.waiting_for and peer not in self.waiting_for:
                continue
            if receipt.created > self.receipts.get(peer, -1):
                return peer
        return None


def has_unsealed(replica: Replica) -> bool:
    """Whether the replica holds own changes not sealed into segments yet."""
    return replica.has_unsealed()


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
    #: The global log options (``--log-format``, ``--log-level``, ``--log-file``); None:
    #: not given, each command has its default (``offsync serve`` logs more).
    log_format: str | None = None
    log_level: str | None = None
    log_file: Path | None = None
    #: Takes back the log handler the global options installed (``offsync serve``
    #: installs its own in its place).
    log_undo: Callable[[], None] | None = None
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

    def saved(self, document: Any, message: str) -> None:
        """Save ``site.json`` after a command changed it, and say what it holds now:
        ``document`` with ``--json``, else ``message``."""
        self.site.save()
        if self.json:
            emit_json(document)
        else:
            out.print(message)

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

    def names(self, replica: Replica | None = None) -> dict[bytes, str]:
        """Labels of keys: this site's, the authorities', the address book's, and (given
        the replica, in trust mode) the certified ones, which win."""
        from .params import key_labels

        return key_labels(replica, self.site)

    def restore_wait(self, replica: Replica, *, end: bool = True) -> RestoreWait | None:
        """The wait of a restore while it holds; None once a peer has answered (then,
        with ``end``, the wait is ended: its file removed)."""
        wait = RestoreWait.load(self.site.path)
        if wait is None:
            return None
        peer = wait.answered_by(replica)
        if peer is None:
            return wait
        if end:
            RestoreWait.end(self.site.path)
            err.print(
                f"[yellow]note:[/] {self.name_of(peer, replica)} has answered since the"
                " restore: the wait is over (writing stays refused while a peer holds"
                " changes of this site that it lacks)"
            )
        return None

    def resolve(self, replica: Replica, text: str) -> bytes:
        """A peer named by a label (certified, or in the address book), its key in hex,
        or an unambiguous prefix of a known peer's key."""
        from .params import resolve_peer

        return resolve_peer(replica, text, self.site.peers)

    def resolve_all(self, replica: Replica, names: Sequence[str]) -> list[bytes]:
        return [self.resolve(replica, n) for n in names]

    def name_of(self, key: bytes, replica: Replica | None = None) -> str:
        """``label (short id)``, or the short id alone when no label is known."""
        return short(key, self.names(replica))

    def writer(self) -> Replica:
        """The replica for a command that writes this site's own changes; refused while
        a restore waits for a peer (``RestoreWait``)."""
        replica = self.replica()
        wait = self.restore_wait(replica)
        if wait is not None:
            fail(
                f"this site was restored{self._restored_from(wait)} and no peer has"
                " answered since: a write now could reuse the number of a change it lost",
                hint=self._wait_hint(wait, replica)
                + "; if no peer will ever answer, `offsync restore --resume` ends the wait"
                " (a lost change that a peer does hold would then fork this site)",
            )
        return replica

    def sealer(self) -> Replica:
        """The replica for a command that packs what it holds (and so seals own changes
        not sealed yet); refused while a restore waits and there are such changes:
        sealed before a peer answers, they could be cut into segments that differ from
        the ones peers hold."""
        replica = self.replica()
        wait = self.restore_wait(replica)
        if wait is not None and has_unsealed(replica):
            fail(
                f"this site was restored{self._restored_from(wait)} and holds changes not"
                " sealed yet: sealing them before a peer has answered could fork this"
                " site's history",
                hint="take what a peer sends first: " + self._wait_hint(wait, replica),
            )
        return replica

    @staticmethod
    def _restored_from(wait: RestoreWait) -> str:
        if wait.backup is None:
            return " as an empty store"
        return f" from a backup taken {wait.backup_taken or 'at an unknown time'}"

    def _wait_hint(self, wait: RestoreWait, replica: Replica) -> str:
        who = (
            " or ".join(self.name_of(k, replica) for k in wait.waiting_for)
            if wait.waiting_for
            else "the district or the centre"
        )
        return (
            f"sync with {who} (`offsync sync URL`, or `offsync apply` / `offsync disk"
            " import` of what it sent); `offsync status` shows the wait"
        )

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
