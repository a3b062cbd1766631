"""Delivering changes: a sync round with a server or a shared folder, and the courier's
removable disk.

A courier's disk that is full (or whose driver reports no free space) never hides what
was done: ``disk import`` reports what it applied and, separately, each reply it could
not write (exit 4); ``--assume-free`` overrides a free-space figure the driver gets
wrong.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .. import Replica
from ..errors import TransportError
from ..sync import Failure, NotWritten, SyncReport, exchange, exchange_folder, sync_any
from ..sync import sync as sync_round
from ..sync.failover import where_of
from ..transports import Location, Transport, open_transport, parse_location
from . import events
from .app import Group, cli, json_option, pass_state
from .centres import Centre, centre_keys, chosen, remember, took_document
from .exits import EXIT_REFUSED, EXIT_TRANSPORT, fail
from .output import emit_json, err, out, progress, short
from .site import State, has_unsealed
from .status import restore_document, status_document


def _sync_rows(
    reports: Sequence[SyncReport], names: Mapping[bytes, str] | None = None
) -> list[dict[str, Any]]:
    names = names or {}
    return [
        {
            "peer": r.peer,
            "label": names.get(r.peer) if r.peer else None,
            "received_bundles": len(r.received),
            "applied": r.applied,
            "duplicates": r.duplicates,
            "quarantined": r.quarantined,
            "conflicts": [f"{c}/{k}" for c, k in r.conflicts],
            "refused": [{"source": x.source, "reason": x.reason} for x in r.refused],
            "sent_bundles": r.sent_bundles,
            "sent_changes": r.sent_changes,
            "sent_bytes": r.sent_bytes,
            "more": r.more,
            **_blob_columns(r),
        }
        for r in reports
    ]


def _blob_columns(r: SyncReport) -> dict[str, int]:
    """What the blob lane moved in a round (zeros when it did not run)."""
    lane = r.blobs
    return {
        "blobs_sent": lane.sent if lane else 0,
        "blobs_sent_bytes": lane.sent_bytes if lane else 0,
        "blobs_received": lane.received if lane else 0,
        "blobs_received_bytes": lane.received_bytes if lane else 0,
        "blobs_left": lane.left if lane else 0,
        "blobs_left_bytes": lane.left_bytes if lane else 0,
    }


def _blobs_cell(r: Mapping[str, Any]) -> str:
    cell = f"{r['blobs_sent']} out ({_size(r['blobs_sent_bytes'])})"
    cell += f", {r['blobs_received']} in ({_size(r['blobs_received_bytes'])})"
    if r["blobs_left"]:
        cell += f", {r['blobs_left']} left"
    return cell


def _size(n: int) -> str:
    """Bytes for a clerk: ``512 B``, ``2.0 KiB``, ``3.4 MiB``, ``1.9 GiB``."""
    value, unit = float(n), "B"
    for bigger in ("KiB", "MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _report_sync(
    state: State,
    reports: Sequence[SyncReport],
    what: str,
    not_written: Sequence[NotWritten] = (),
    missing: str = "not written",
    extra: dict[str, Any] | None = None,
    withheld: Sequence[bytes] = (),
) -> None:
    """The rounds as a table (or JSON with the site's status), then the courier replies
    that could not be written and those withheld from sites that may not read (trust
    mode); exit 4 if any was not written, else 3 if anything was refused or a site this
    command was asked to send to may not read."""
    replica = state.replica()
    denied = [r.peer for r in reports if r.withheld and r.peer is not None]
    withheld = [*withheld, *(k for k in denied if k not in withheld)]
    names = state.names(replica)
    events.rounds(reports, names)
    rows = _sync_rows(reports, names)
    if state.json:
        unwritten = [
            {"peer": n.peer, "label": names.get(n.peer), "reason": n.reason} for n in not_written
        ]
        status = status_document(replica, names, centre_keys(state))
        status["restore"] = restore_document(state, replica)
        kept_back = [{"peer": k, "label": names.get(k)} for k in withheld]
        emit_json(
            {
                "rounds": rows,
                "not_written": unwritten,
                "withheld": kept_back,
                "status": status,
                **(extra or {}),
            }
        )
    else:
        _print_rounds(rows, names, what, not_written, missing)
        for k in withheld:
            out.print(
                f"[yellow]nothing sent[/] to {escape(short(k, names))}: not certified to "
                "read here (trust mode)"
            )
    if any(r.withheld and r.peer is None for r in reports):
        err.print(
            "[yellow]nothing sent:[/] in trust mode a round sends only to a named site "
            "that may read (--peer, --to)"
        )
    refused = any(r["refused"] for r in rows)
    if refused:
        err.print(
            "[yellow]next:[/] refused bundles were set aside (never applied); "
            "ask the sender for a fresh copy"
        )
    if not_written:
        applied = sum(r["applied"] for r in rows)
        err.print(
            f"[yellow]next:[/] {applied} change(s) were applied and stay applied; what is "
            f"not written above is missing from the disk ({len(not_written)} site(s)). "
            "Fix what the reason says (a full disk: free some space, or give the real free "
            "space with --assume-free if its driver reports a wrong one) and run the same "
            "command again."
        )
        raise click.exceptions.Exit(EXIT_TRANSPORT)
    if refused or any(r.withheld for r in reports):
        raise click.exceptions.Exit(EXIT_REFUSED)


def _print_rounds(
    rows: Sequence[dict[str, Any]],
    names: dict[bytes, str],
    what: str,
    not_written: Sequence[NotWritten],
    missing: str,
) -> None:
    """The rounds as a table for a clerk, then what was refused and what not written."""
    table = Table(
        "peer",
        "received",
        "applied",
        "dup",
        "quar.",
        "sent",
        "blobs",
        "refused",
        title=what,
        title_justify="left",
    )
    for r in rows:
        table.add_row(
            escape(short(r["peer"], names)) if r["peer"] else "(any)",
            f"{r['received_bundles']} bundle(s)",
            str(r["applied"]),
            str(r["duplicates"]),
            str(r["quarantined"]),
            f"{r['sent_changes']} change(s), {r['sent_bundles']} bundle(s), {r['sent_bytes']} B",
            _blobs_cell(r),
            str(len(r["refused"])),
        )
    out.print(table)
    for r in rows:
        for x in r["refused"]:
            out.print(f"[red]refused[/] {escape(x['source'])}: {escape(x['reason'])}")
    for n in not_written:
        out.print(f"[red]{missing}[/] for {escape(short(n.peer, names))}: {escape(n.reason)}")
    left = sum(r["blobs_left"] for r in rows)
    if left:
        left_bytes = sum(r["blobs_left_bytes"] for r in rows)
        out.print(
            f"[yellow]{left} blob(s) ({_size(left_bytes)}) did not fit[/] on this disk: "
            "the records are all on it; export again onto another disk to carry the rest "
            "(blobs already on this disk are not written again)."
        )
    if any(r["more"] for r in rows):
        out.print(
            "[yellow]stopped at the byte budget[/] (--max-bytes-per-round): more is waiting"
            " to be sent or received, highest priority first; run `offsync sync` again"
        )
    conflicts = sum(len(r["conflicts"]) for r in rows)
    if conflicts:
        out.print(f"{conflicts} new conflict(s): see `offsync conflicts`.")


@cli.command()
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    metavar="PEER",
    help="Folder: the site to leave bundles for (repeatable; default: whoever left us some).",
)
@click.option("--server-key", metavar="HEX", help="HTTP: refuse a server with another key.")
@click.option("--encrypt", is_flag=True, help="Seal outgoing bundles to the peer's key.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="HTTP: retries per server before giving up (or moving on to the next centre).",
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="HTTP seconds.")
@click.option(
    "--max-bytes-per-round",
    "budget",
    callback=lambda ctx, param, value: _budget(_byte_size(ctx, param, value)),
    metavar="SIZE",
    help="HTTP: send and receive at most about SIZE (e.g. 10MB) this round, highest"
    " priority first (`init --priority`); the rest goes at the next round.",
)
@json_option
@pass_state
def sync(
    state: State,
    targets: tuple[str, ...],
    peers: tuple[str, ...],
    server_key: str | None,
    encrypt: bool,
    retries: int,
    timeout: float,
    budget: int | None,
) -> None:
    """One sync round with a server (http://...) or a shared FOLDER.

    Sends exactly what the other side lacks (and this site's receipt), then takes what
    it offers. Safe to repeat and to interrupt: the next round picks up where this one
    stopped. Several URLs, or none (the centres listed by `offsync centres`): the round
    goes to the first centre that answers, the one that answered last time first, and
    moves on when one is down, busy or times out (never when one refuses a bundle).
    A round with --max-bytes-per-round stops at that budget (each way; a bundle read
    is applied, so a round always moves something) and says so.
    Exit 4 when no server or folder can be reached, 3 if a bundle was refused.
    """
    replica = state.replica()
    key = state.resolve(replica, server_key) if server_key else None
    centres = chosen(state, targets, key)
    if centres[0].where.kind == "http":
        _sync_http(state, replica, centres, encrypt, retries, timeout, budget)
    else:
        if budget is not None:
            fail(
                "--max-bytes-per-round limits a round with a server (http://...), not a folder",
                hint="leave it out: a folder stop moves what the folder holds",
            )
        _sync_folder(state, replica, centres[0].where, peers, encrypt)


def _takes_first(state: State, replica: Replica) -> bool:
    """Whether this round must take what the peer offers before it may send: a restored
    site with changes not sealed yet seals them only once a peer has answered."""
    return state.restore_wait(replica) is not None and has_unsealed(replica)


def _not_answered(state: State, replica: Replica) -> bool:
    """After a round that only took: True (and a note) if the restore still waits."""
    if state.restore_wait(replica) is None:
        return False
    err.print(
        "[yellow]note:[/] nothing was sent: this site was restored and no peer it"
        " delivers to has answered yet, so the changes it has not sealed stay unsealed"
        " (see `offsync status`); sync again once that peer has"
    )
    return True


def _sync_http(
    state: State,
    replica: Replica,
    centres: Sequence[Centre],
    encrypt: bool,
    retries: int,
    timeout: float,
    budget: int | None = None,
) -> None:
    """A round with the first of ``centres`` that answers (one: that server), within
    ``budget`` bytes each way when one is given."""
    from rich.progress import BarColumn, Progress, TextColumn

    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} B"),
            console=err,
            transient=True,
            disable=state.json or not err.is_terminal,
        ) as bar,
        contextlib.ExitStack() as stack,
    ):
        tasks: dict[bytes, Any] = {}

        def on_progress(bundle_id: bytes, sent: int, total: int) -> None:
            if bundle_id not in tasks:
                tasks[bundle_id] = bar.add_task(f"upload {bundle_id[:4].hex()}", total=total)
            bar.update(tasks[bundle_id], completed=sent)

        transports = [
            stack.enter_context(
                open_transport(
                    c.where,
                    replica,
                    c.key,
                    encrypt=encrypt,
                    max_retries=retries,
                    timeout=timeout,
                    connect_timeout=min(timeout, 10.0),
                    progress=on_progress,
                )
            )
            for c in centres
        ]
        reports: list[SyncReport] = []
        failures: list[Failure] = []
        if len(transports) > 1 and state.restore_wait(replica, end=False) is not None:
            _hear_every_centre(replica, transports, reports, failures, budget)
        if _takes_first(state, replica):
            took = _round(replica, transports, reports, failures, push=False, budget=budget)
            if _not_answered(state, replica):
                _report_took(state, centres, reports, took, failures)
                return
        took = _round(replica, transports, reports, failures, push=True, budget=budget)
        remember(state, centres[took], reports[-1].peer)
    _report_took(state, centres, reports, took, failures)


def _round(
    replica: Replica,
    transports: Sequence[Transport],
    reports: list[SyncReport],
    failures: list[Failure],
    *,
    push: bool,
    budget: int | None = None,
) -> int:
    """One round by ``sync_any``; the index of the centre that took it. One server:
    a plain round, whose failure is that server's own error."""
    if len(transports) == 1:
        reports.append(sync_round(replica, transports[0], push=push, max_bytes_per_round=budget))
        return 0
    took = sync_any(replica, transports, push=push, max_bytes_per_round=budget)
    reports.append(took.report)
    failures.extend(took.failures)
    return took.index


def _hear_every_centre(
    replica: Replica,
    transports: Sequence[Transport],
    reports: list[SyncReport],
    failures: list[Failure],
    budget: int | None = None,
) -> None:
    """A restored site takes what every centre that answers offers before it sends or
    writes: centres that have not peered yet may each hold changes of this site that
    the backup lacks, and a write over one of them would fork it (docs/scale.md,
    "Restores with several centres"). A centre that does not answer is listed."""
    for transport in transports:
        try:
            reports.append(sync_round(replica, transport, push=False, max_bytes_per_round=budget))
        except TransportError as exc:
            failures.append(Failure(where_of(transport), type(exc).__name__, str(exc)))


def _report_took(
    state: State,
    centres: Sequence[Centre],
    reports: Sequence[SyncReport],
    took: int,
    failures: Sequence[Failure],
) -> None:
    """The rounds, saying which centre took them when there was a choice."""
    where = centres[took].where
    failures = list({(f.where, f.error): f for f in failures}.values())  # once each
    extra = took_document(where.address, failures) if len(centres) > 1 else None
    if extra is not None and not state.json:
        for f in failures:
            err.print(f"[yellow]centre down:[/] {escape(f.where)}: {escape(f.reason)}")
        out.print(f"delivered through {escape(where.address)}")
    _report_sync(state, reports, f"sync with {where}", extra=extra)


def _sync_folder(
    state: State, replica: Replica, where: Location, peers: Sequence[str], encrypt: bool
) -> None:
    """A stop at the shared folder (``offsync.sync.exchange_folder``); while a restored
    site waits for a peer, only the import."""
    held = False

    def may_reply() -> bool:
        nonlocal held
        held = _takes_first(state, replica) and _not_answered(state, replica)
        return not held

    targets = state.resolve_all(replica, peers)
    stop = exchange_folder(replica, where.path, targets, may_reply=may_reply, encrypt=encrypt)
    if not held and not stop.replies:
        err.print(
            "[yellow]note:[/] nothing was left in the folder: no peer named; "
            "pass --peer KEY for the site that reads this folder"
        )
    _report_sync(state, stop.rounds, f"sync with folder {where.path}", withheld=stop.withheld)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.I)


def _byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A number of bytes: ``0``, ``750M``, ``2G``, ``1.5GiB`` (K, M, G, T: powers of 1024)."""
    if value is None:
        return None
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise click.BadParameter(f"{value!r} is not a size: write e.g. 0, 750M, 2G")
    unit = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * unit)


def _budget(value: int | None) -> int | None:
    """A round's byte budget: a positive size (None: no budget)."""
    if value is not None and value <= 0:
        raise click.BadParameter("a budget is a positive size: write e.g. 10MB")
    return value


assume_free_option = click.option(
    "--assume-free",
    "assume_free",
    callback=_byte_size,
    metavar="SIZE",
    help="Take SIZE (e.g. 2G) as the disk's free space instead of what its driver "
    "reports (some FAT32 drivers report 0). A write that really runs out of space "
    "still fails safely.",
)


@cli.group(cls=Group)
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
@assume_free_option
@json_option
@pass_state
def disk_export(
    state: State, mount: Path, peers: tuple[str, ...], no_encrypt: bool, assume_free: int | None
) -> None:
    """Write what each --to site lacks onto the disk at MOUNT.

    Checks the free space first and verifies every file after writing; bundles are sealed
    to the destination's key, so a lost disk leaks nothing. Exit 4 if the disk is full
    (what could not be written is listed; nothing half-written stays on the disk).
    """
    replica = state.sealer()
    try:
        parse_location(mount, "disk")
    except TransportError as exc:
        fail(str(exc), EXIT_TRANSPORT, "plug in the disk; give its mount point")
    reports = []
    not_written = []
    targets = state.resolve_all(replica, peers)
    with progress(state.json, "writing to disk", len(targets)) as step:
        for peer in targets:
            try:
                with open_transport(
                    mount,
                    replica,
                    peer,
                    kind="disk",
                    encrypt=not no_encrypt,
                    assume_free_bytes=assume_free,
                ) as t:
                    reports.append(sync_round(replica, t, pull=False))
            except TransportError as exc:
                not_written.append(NotWritten(peer, str(exc)))
            step(1)
    _report_sync(state, reports, f"exported to {mount}", not_written)
    if not state.json:
        out.print("Safe to unplug the disk once the command has returned.")


@disk.command("import")
@click.argument("mount", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--reply/--no-reply",
    default=True,
    show_default=True,
    help="Write the return trip: what each sender lacks, and this site's receipt.",
)
@click.option("--to", "peers", multiple=True, metavar="PEER", help="Also write for this site.")
@assume_free_option
@json_option
@pass_state
def disk_import(
    state: State, mount: Path, reply: bool, peers: tuple[str, ...], assume_free: int | None
) -> None:
    """Apply every bundle on the disk meant for this site; then write the return trip.

    Files that are torn, unlisted or refused are set aside on the disk (never applied).
    If the return trip does not fit on the disk, what was applied stays applied and
    the command exits 4 saying so: free space and run it again to write the reply.
    """
    replica = state.replica()
    first: list[SyncReport] = []
    if reply and _takes_first(state, replica):
        with open_transport(mount, replica, kind="disk") as t:
            first.append(sync_round(replica, t, push=False))
        if _not_answered(state, replica):
            _report_sync(state, first, f"imported from {mount}")
            return
    if reply:
        with progress(state.json, "courier exchange", None):
            stop = exchange(
                replica, mount, state.resolve_all(replica, peers), assume_free_bytes=assume_free
            )
        _report_sync(
            state,
            first + stop.rounds,
            f"imported from {mount}",
            stop.not_written,
            "reply not written",
            withheld=stop.withheld,
        )
    else:
        with open_transport(mount, replica, kind="disk") as t:
            reports = [sync_round(replica, t, push=False)]
        _report_sync(state, reports, f"imported from {mount}")
