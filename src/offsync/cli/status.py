"""What a site holds and owes: per-peer status, quarantine, open conflicts and their
resolution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .. import Replica
from ..change import ChangeId
from ..delivery import Delivery
from .app import Group, cli, json_option, pass_state, state_of
from .centres import centre_keys
from .exits import fail
from .output import emit_json, head_name, iso_hlc, iso_ms, json_text, out, short, when
from .params import parse_fields
from .site import RestoreWait, State


def centres_document(replica: Replica, keys: Sequence[bytes]) -> dict[str, Any]:
    """Delivery to the centres (``offsync centres``): a change of this site is at a
    centre once any of them holds it; in trust mode a centre counts only while its key
    is certified (``offsync.delivery``)."""
    delivery = Delivery(replica, keys)
    counted = delivery.counted_centres()
    undelivered = delivery.undelivered().count()
    return {
        "keys": list(keys),
        "counted": [k for k in keys if k in counted],
        "undelivered_of_mine": undelivered,
        "delivered_of_mine": replica.knowledge().restrict_origins([replica.id]).count()
        - undelivered,
    }


def status_document(
    replica: Replica,
    names: Mapping[bytes, str] | None = None,
    centres: Sequence[bytes] = (),
) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data; ``names``: labels of keys;
    ``centres``: the keys of the centres this site delivers to."""
    names = names or {}
    mine = replica.knowledge()
    peers = []
    union = replica.peer_knowledge()  # what all of a peer's receipts said (spec §6)
    for peer, receipt in sorted(replica.receipts().items(), key=lambda kv: -kv[1].created):
        holds = union.get(peer, receipt.knowledge)
        peers.append(
            {
                "peer": peer,
                "label": names.get(peer),
                "last_receipt": iso_hlc(receipt.created),
                "holds": holds.count(),
                "holds_of_mine": holds.restrict_origins([replica.id]).count(),
                "pending": (mine - holds).count(),
                "pending_of_mine": (mine - holds).restrict_origins([replica.id]).count(),
            }
        )
    return {
        "site": replica.identity.label,
        "public_key": replica.id,
        "seq": replica.seq,
        "sealed": replica.sealed,
        "changes_held": mine.count(),
        "state_digest": replica.state_digest(),
        "origins": sum(1 for _ in mine.origins()),
        "streams": mine.stream_count(),
        "peers": peers,
        "quarantined": [
            {
                "origin": q.origin,
                "label": names.get(q.origin),
                "first_seq": q.first_seq,
                "last_seq": q.last_seq,
                "reason": q.reason,
            }
            for q in replica.quarantined()
        ],
        "conflicts": [f"{c.collection}/{c.key}" for c in replica.conflicts()],
        "centres": centres_document(replica, centres) if centres else None,
        "missing_blobs": _missing_blobs(replica),
        # Peers saying they hold more of this site's changes than it has sealed (a
        # restore from backup, or a false claim): counted claims block writing until
        # resolved.
        "seq_claims": [
            {
                "peer": c.peer,
                "label": names.get(c.peer),
                "seq": c.seq,
                # The own stream the claim is about (format 3 numbers seqs per stream).
                "collection": None if c.stream is None else c.stream.collection,
                "prefix": None if c.stream is None else c.stream.prefix,
                "counted": c.counted,
                "blocks_writing": c.counted,
            }
            for c in replica.seq_claims()
            if c.seq > replica.sealed
        ],
    }


#: Records with missing blobs that ``status`` names (it counts them all).
MISSING_SHOWN = 20


def _missing_blobs(replica: Replica) -> dict[str, Any]:
    """Blobs visible records reference that are not here yet (``Replica.missing_blobs``)."""
    missing = replica.missing_blobs()
    records = sorted(missing.by_record)
    return {
        # eager: a missing blob is awaited; lazy: only those asked for are; none: no
        # blob is, and the missing ones are what this site chose not to fetch.
        "fetch": replica.blob_fetch,
        "asked_for": len(replica.demanded_blobs()),
        "blobs": missing.count,
        "bytes": missing.bytes,
        "records": len(records),
        "first_records": [f"{c}/{k}" for c, k in records[:MISSING_SHOWN]],
    }


def restore_document(state: State, replica: Replica) -> dict[str, Any] | None:
    """The restore this site is in (``offsync restore``), or None."""
    wait = RestoreWait.load(state.site.path)
    if wait is None:
        return None
    answered = wait.answered_by(replica)
    return {
        "restored": iso_ms(wait.restored_ms),
        "backup": wait.backup,
        "backup_taken": wait.backup_taken,
        "seq_at_restore": wait.seq,
        "waiting_for": [
            {"peer": k, "label": state.names(replica).get(k)} for k in wait.waiting_for
        ],
        "waiting": answered is None,
        "answered_by": answered,
    }


@cli.command()
@json_option
@pass_state
def status(state: State) -> None:
    """What is pending per peer, last receipts, quarantined changes, open conflicts."""
    replica = state.reader()
    names = state.names(replica)
    doc = status_document(replica, names, centre_keys(state))
    doc["restore"] = restore_document(state, replica)
    if state.json:
        emit_json(doc)
        return
    out.print(
        f"[bold]{escape(doc['site'])}[/] {doc['public_key'].hex()}\n"
        f"{doc['seq']} change(s) written here; {doc['changes_held']} held from "
        f"{doc['origins']} site(s) in {doc['streams']} stream(s); state digest {doc['state_digest'].hex()[:16]}"
    )
    _print_restore(state, replica, doc["restore"])
    if doc["centres"] is not None:
        c = doc["centres"]
        out.print(
            f"{c['delivered_of_mine']} of this site's changes are at a centre (any of "
            f"{len(c['counted'])} whose receipts count), {c['undelivered_of_mine']} not yet"
        )
    if doc["peers"]:
        table = Table(
            "peer",
            "key",
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
                escape(p["label"] or "-"),
                p["peer"][:6].hex(),
                when(replica.receipts()[p["peer"]].created),
                str(p["holds"]),
                f"{p['holds_of_mine']}/{doc['seq']}",
                str(p["pending"]),
                str(p["pending_of_mine"]),
            )
        out.print(table)
    else:
        out.print("No receipts yet: no peer has told us what it holds.")
    if doc["quarantined"]:
        table = Table("origin", "seqs", "reason", title="Quarantined", title_justify="left")
        for q in doc["quarantined"]:
            table.add_row(
                escape(short(q["origin"], names)),
                f"{q['first_seq']}-{q['last_seq']}",
                escape(q["reason"]),
            )
        out.print(table)
    else:
        out.print("Nothing quarantined.")
    n = len(doc["conflicts"])
    out.print(f"{n} open conflict(s)" + (": see `offsync conflicts`" if n else ""))
    blobs = doc["missing_blobs"]
    if blobs["blobs"] and blobs["fetch"] == "none":
        out.print(
            f"{blobs['blobs']} blob(s) not fetched here ({blobs['bytes']} bytes): this site"
            " keeps the records, not their blobs (blobs=none)"
        )
    elif blobs["blobs"] and blobs["fetch"] == "lazy":
        out.print(
            f"{blobs['blobs']} blob(s) not fetched here ({blobs['bytes']} bytes; blobs=lazy);"
            f" {blobs['asked_for']} asked for, fetched at the next sync"
        )
    elif blobs["blobs"]:
        out.print(
            f"{blobs['blobs']} blob(s) missing ({blobs['bytes']} bytes) for"
            f" {blobs['records']} record(s), e.g. "
            + escape(", ".join(blobs["first_records"][:3]))
            + ": they arrive when the sites that hold them sync"
        )
    else:
        out.print("No blobs missing.")
    for claim in doc["seq_claims"]:
        verdict = (
            "[red]blocks writing[/]: sync with that peer to get the changes back; if the claim "
            "is false, revoke its key (trust mode) or move this site to a new key"
            if claim["counted"]
            else "not counted (the claimant is not certified)"
        )
        out.print(
            f"Peer {escape(short(claim['peer'], names))} says it holds this site's changes up"
            f" to seq {claim['seq']} (this replica is at {doc['seq']}, sealed up to"
            f" {doc['sealed']}): {verdict}"
        )


def _print_restore(state: State, replica: Replica, restore: dict[str, Any] | None) -> None:
    if restore is None:
        return
    source = (
        f"from a backup taken {restore['backup_taken'] or 'at an unknown time'}"
        if restore["backup"]
        else "as an empty store"
    )
    if restore["waiting"]:
        who = (
            " or ".join(short(w["peer"], state.names(replica)) for w in restore["waiting_for"])
            or "any peer"
        )
        out.print(
            f"[red]Restored[/] {source} on {restore['restored']}: waiting for {escape(who)} to"
            " answer before writing (`offsync sync`, `offsync apply`, `offsync disk import`)"
        )
    else:
        out.print(
            f"Restored {source} on {restore['restored']};"
            f" {escape(short(restore['answered_by'], state.names(replica)))} has answered since"
            " (the wait ends at the next command that writes)"
        )


@cli.group(cls=Group, invoke_without_command=True)
@json_option
@click.pass_context
def conflicts(ctx: click.Context) -> None:
    """List open conflicts; `offsync conflicts resolve` settles one."""
    if ctx.invoked_subcommand is not None:
        return
    state = state_of(ctx)
    items = state.reader().conflicts()
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
        out.print("No open conflicts.")
        return
    for d in doc:
        table = Table(
            "head", "version", title=f"{d['collection']}/{d['key']}", title_justify="left"
        )
        for head, v in d["versions"].items():
            shown = json_text(v)
            if v == d["current"]:
                shown += "  [dim](shown now)[/]"
            table.add_row(head, shown)
        out.print(table)
    out.print("Settle one with `offsync conflicts resolve COLLECTION KEY --choose HEAD`.")


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
    replica = state.writer()
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
        out.print(
            f"{collection}/{key} settled by change {head_name(change)}; it travels like any change"
        )
