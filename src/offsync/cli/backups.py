"""Backups and restores of a site: ``offsync backup DEST`` and ``offsync restore``.

A backup is a directory: ``site.json``, ``identity.key`` (sealed with the passphrase;
``--no-key`` leaves it out), a copy of the store made with SQLite's online backup API
(``offsync.stores.sqlite.backup``: consistent while the site is in use, checked before
it is kept) and ``backup.json``, which says what the copy held. A restore goes through
the fork-safety path: the restored site waits for a peer's answer before it writes
(``RestoreWait``), then refuses to write until its lost changes are back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..knowledge import Knowledge
from ..replica.packing import RESTORED_META
from ..stores import sqlite as sqlite_store
from .app import cli, json_option, pass_state
from .bundles import safe_name
from .exits import EXIT_ERROR, fail
from .output import emit_json, err, iso_ms, now_ms, out, short
from .site import (
    KEY_FILE,
    SITE_FILE,
    STORE_FILE,
    RestoreWait,
    Site,
    State,
    utc_stamp,
    write_atomic,
)

MANIFEST = "backup.json"


def _copy_file(src: Path, dest: Path) -> None:
    """Copy with the source's permissions (a key file stays 0600), flushed to disk."""
    data = src.read_bytes()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, src.stat().st_mode & 0o777)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # pragma: no cover - directories cannot be flushed there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _target(dest: Path, site: Site) -> Path:
    if dest.is_dir() and ((dest / MANIFEST).exists() or (dest / SITE_FILE).exists()):
        fail(
            f"{dest} holds a backup (or a site) already",
            hint="a backup never overwrites: choose a new name",
        )
    if dest.is_dir():  # a folder of backups: a new one inside, named after site and time
        dest = dest / f"{safe_name(site.label)}-{utc_stamp()}"
    if os.path.lexists(dest):
        fail(f"{dest} exists already", hint="a backup never overwrites: choose a new name")
    if not dest.parent.is_dir():
        fail(f"{dest.parent}: no such directory", hint="create it, or choose another place")
    return dest


@cli.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--no-key", is_flag=True, help="Leave identity.key out (when it is backed up elsewhere)."
)
@json_option
@pass_state
def backup(state: State, dest: Path, no_key: bool) -> None:
    """Back this site up to DEST, consistently, also while it is in use.

    DEST is a new directory (an existing one gets a new directory inside, named after
    the site and the time) holding site.json, identity.key and a copy of the store made
    with SQLite's online backup API. The copy is written under a temporary name, flushed
    to disk, opened read-only and checked (integrity, rows, and a state digest equal to
    the store's at the moment of the copy) before it is given its name. Needs no
    passphrase; works while `offsync serve` runs. Restore with `offsync restore`.
    """
    site = state.site
    if not site.store_path.exists():
        fail(f"{site.store_path} is missing: there is nothing to back up", code=EXIT_ERROR)
    taken = now_ms()
    target = _target(dest, site)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    tmp.mkdir(mode=0o700)  # personal data and a (sealed) key: for its owner only
    try:
        report = sqlite_store.backup(site.store_path, tmp / STORE_FILE)
        _copy_file(site.path / SITE_FILE, tmp / SITE_FILE)
        if not no_key:
            _copy_file(site.path / KEY_FILE, tmp / KEY_FILE)
        manifest: dict[str, Any] = {
            "format": "offsync-backup",
            "version": 1,
            "taken": iso_ms(taken),
            "offsync": __version__,
            "site": site.label,
            "public_key": site.public_key.hex(),
            "schema_version": report.schema_version,
            "state_digest": report.state_digest.hex() if report.state_digest else None,
            "seq": report.seq,
            "store_bytes": report.size,
            "rows": dict(report.rows),
            "key_file": not no_key,
        }
        write_atomic(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if state.json:
        emit_json({"path": str(target), **manifest})
        return
    out.print(f"Backed up [bold]{site.label}[/] to {target}")
    digest = report.state_digest.hex()[:16] if report.state_digest else "-"
    out.print(
        f"  store: {report.size} bytes, schema {report.schema_version}, "
        f"{report.seq} change(s) written here, {report.rows.get('records', 0)} record(s), "
        f"state digest {digest}"
    )
    out.print("  checked: SQLite integrity, rows and state digest equal to the store's")
    if no_key:
        out.print("  without identity.key: keep the site's key file backed up elsewhere")
    else:
        out.print("  with identity.key (sealed): keep the passphrase apart from this backup")


def _expected(backup_dir: Path) -> sqlite_store.BackupReport | None:
    """What ``backup.json`` says the copy held, if the backup has one."""
    path = backup_dir / MANIFEST
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return sqlite_store.BackupReport(
            str(backup_dir / STORE_FILE),
            int(doc["store_bytes"]),
            int(doc["schema_version"]),
            bytes.fromhex(doc["state_digest"]) if doc.get("state_digest") else None,
            {str(k): int(v) for k, v in doc["rows"].items()},
            bytes.fromhex(doc["public_key"]),
            int(doc["seq"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        fail(f"{path} is damaged ({exc})", EXIT_ERROR, "use another backup")


def _taken(backup_dir: Path) -> str | None:
    try:
        taken = json.loads((backup_dir / MANIFEST).read_text()).get("taken")
    except (OSError, ValueError):
        return None
    return str(taken) if taken else None


def _move_aside(store: Path) -> Path | None:
    """Rename the store (with its -wal and -shm, which belong to it) out of the way."""
    if not store.exists():
        return None
    aside = store.with_name(f"{store.name}.before-restore-{utc_stamp()}")
    for suffix in ("", "-wal", "-shm"):
        src = store.with_name(store.name + suffix)
        if src.exists():
            os.replace(src, aside.with_name(aside.name + suffix))
    return aside


def _replace_store(site_dir: Path, fill: Any) -> Path | None:
    """Move the site's store aside and ``fill`` the empty place, holding the store's
    lock all along, so that no process has the site open meanwhile."""
    site_dir.mkdir(parents=True, exist_ok=True)
    store = site_dir / STORE_FILE
    lock = sqlite_store.OwnerLock(str(store))  # StoreLockedError while it is in use
    try:
        aside = _move_aside(store)
        try:
            fill(store)
        except BaseException:
            if aside is not None and not store.exists():  # as it was: the old store back
                for suffix in ("", "-wal", "-shm"):
                    moved = aside.with_name(aside.name + suffix)
                    if moved.exists():
                        os.replace(moved, store.with_name(store.name + suffix))
            raise
    finally:
        lock.release()
    return aside


def _wait_after(site: Site, backup: str | None, taken: str | None, restored: int) -> RestoreWait:
    """The wait for the store now in place: the peers that held some of this site's
    changes when it was saved are those that must answer. The store is marked restored
    (``Replica.forget_told``): its next round says everything again to each peer."""
    store = sqlite_store.SQLiteStore(str(site.store_path))  # upgrades an older schema
    try:
        with store.transaction():
            store.set_meta(RESTORED_META, str(restored).encode())
        seq = int(store.get_meta("seq") or b"0")
        receipts: dict[bytes, int] = {}
        waiting: list[bytes] = []
        for peer, created, knowledge, _ in store.peers():
            if peer == site.public_key:
                continue
            receipts[peer] = created
            if Knowledge.from_bytes(knowledge).restrict_origins([site.public_key]):
                waiting.append(peer)
    finally:
        store.close()
    return RestoreWait(restored, backup, taken, seq, receipts, sorted(waiting))


@cli.command()
@click.argument(
    "backup_dir",
    metavar="[BACKUP]",
    required=False,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--from-peers",
    is_flag=True,
    help="No backup: start an empty store that takes this site's changes back from peers.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="End the wait for a peer without hearing from one (a lost change would fork).",
)
@json_option
@pass_state
def restore(state: State, backup_dir: Path | None, from_peers: bool, resume: bool) -> None:
    """Restore this site (--site DIR) from BACKUP, made by `offsync backup`.

    The backup is checked first; the store it replaces is kept beside it
    (replica.sqlite.before-restore-TIME). A restored site may have written changes after
    the backup that peers hold: until a peer it delivers to has answered (`offsync
    sync`, `apply`, `disk import`), it refuses to write, and to seal changes its backup
    holds unsealed; once one has, it refuses to write until those changes are back.
    `offsync status` shows the wait. --from-peers starts over with an empty store that
    waits the same way; --resume ends a wait without a peer's answer.
    """
    if sum((backup_dir is not None, from_peers, resume)) != 1:
        fail("give exactly one of BACKUP, --from-peers or --resume")
    if resume:
        _resume(state)
        return
    restored = now_ms()
    if backup_dir is not None:
        doc = _from_backup(state, backup_dir, restored)
    else:
        doc = _from_peers(state, restored)
    if state.json:
        emit_json(doc)
        return
    site = state.site
    source = f"from {backup_dir}" if backup_dir else "as an empty store"
    out.print(f"Restored [bold]{site.label}[/] {source} (seq {doc['seq']})")
    if doc["replaced"]:
        out.print(f"The store it replaced is kept as {doc['replaced']}")
    who = " or ".join(short(bytes.fromhex(w), state.names()) for w in doc["waiting_for"])
    err.print(
        "[yellow]next:[/] do not enter data yet: sync with "
        + (who or "the district or the centre")
        + " (`offsync sync URL`, or `offsync apply` / `offsync disk import` of what it sent)."
        " Writing is refused until it has answered, and then until this site's own later"
        " changes are back if it holds some; `offsync status` shows the wait."
    )


def _from_backup(state: State, backup_dir: Path, restored: int) -> dict[str, Any]:
    if not (backup_dir / SITE_FILE).is_file() or not (backup_dir / STORE_FILE).is_file():
        fail(
            f"{backup_dir} is not a site backup (no {SITE_FILE} or no {STORE_FILE} in it)",
            hint="give a directory made by `offsync backup`",
        )
    backed = Site.load(backup_dir)
    expected = _expected(backup_dir)
    found = sqlite_store.check_backup(backup_dir / STORE_FILE, expected)
    if found.identity not in (None, backed.public_key):
        fail(
            f"{backup_dir}: its store belongs to another key than its site.json",
            EXIT_ERROR,
            "use a backup made by `offsync backup`, or another one",
        )
    if found.schema_version > sqlite_store.schema_version():
        fail(
            f"{backup_dir}: store schema {found.schema_version} is newer than this offsync"
            f" knows ({sqlite_store.schema_version()})",
            EXIT_ERROR,
            "restore it with the offsync that made it, or a newer one",
        )
    target = state.site_dir
    if (target / SITE_FILE).exists():
        here = Site.load(target)
        if here.public_key != backed.public_key:
            fail(
                f"this backup is of {backed.label} ({backed.short_id}), but {target} holds"
                f" {here.label} ({here.short_id})",
                hint="restore it into its own site directory (--site DIR)",
            )
    if not (target / KEY_FILE).exists() and not (backup_dir / KEY_FILE).exists():
        fail(
            f"neither {target} nor the backup holds {KEY_FILE}",
            hint=f"copy the site's {KEY_FILE} into {target} first; without it the site"
            " needs a new key (docs/operations-keys.md, rotation)",
        )

    def fill(store: Path) -> None:
        copied = sqlite_store.backup(backup_dir / STORE_FILE, store)
        if copied.state_digest != found.state_digest:  # pragma: no cover - checked inside
            fail(f"{store}: the copy differs from the backup", EXIT_ERROR)

    aside = _replace_store(target, fill)
    for name in (SITE_FILE, KEY_FILE):
        if not (target / name).exists() and (backup_dir / name).exists():
            _copy_file(backup_dir / name, target / name)
    site = state.site
    wait = _wait_after(site, str(backup_dir), _taken(backup_dir), restored)
    wait.save(site.path)
    return _restore_doc(wait, aside)


def _from_peers(state: State, restored: int) -> dict[str, Any]:
    site = state.site
    if not (site.path / KEY_FILE).exists():
        fail(f"{site.path} holds no {KEY_FILE}", hint="restore the key file first")
    aside = _replace_store(site.path, lambda store: None)
    sqlite_store.SQLiteStore(str(site.store_path)).close()  # an empty store, current schema
    wait = RestoreWait(restored, None, None, 0, {}, [])
    wait.save(site.path)
    return _restore_doc(wait, aside)


def _restore_doc(wait: RestoreWait, aside: Path | None) -> dict[str, Any]:
    return {
        "restored": iso_ms(wait.restored_ms),
        "backup": wait.backup,
        "backup_taken": wait.backup_taken,
        "seq": wait.seq,
        "replaced": str(aside) if aside else None,
        "waiting_for": [k.hex() for k in wait.waiting_for],
    }


def _resume(state: State) -> None:
    ended = RestoreWait.end(state.site.path)
    if state.json:
        emit_json({"ended": ended})
        return
    if not ended:
        out.print("This site is not waiting after a restore.")
        return
    out.print("The wait after the restore is over: this site writes again.")
    err.print(
        "[yellow]note:[/] if a peer does hold changes of this site that its store lost,"
        " the next write forks its history; `offsync status` shows a peer's claim once"
        " one is heard (docs/operations-keys.md, 'Restoring a site from backup')"
    )
