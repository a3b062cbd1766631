"""Commands on this site alone: create it, show its key, write and read records and
their history."""

from __future__ import annotations

import mimetypes
import shutil
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .. import Identity
from ..blobs import DEFAULT_MEDIA_TYPE, BlobRef, is_reference
from ..replica.blobs import BLOB_FETCH
from .app import cli, json_option, pass_state
from .exits import EXIT_ERROR, fail, show_error
from .output import emit_json, err, head_name, iso_hlc, json_text, out, when
from .params import parse_fields, parse_key
from .site import Site, State, parse_partitions


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
    "--partitions",
    "partition_specs",
    multiple=True,
    metavar="COLLECTION=LENGTH",
    help="The deployment's partition rule: a collection is cut into partitions by the first"
    " LENGTH characters of its keys (repeatable; the same at every site; never changed).",
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
@click.option(
    "--open",
    "open_mode",
    is_flag=True,
    help="Open mode, for trials only: any signed key may write, and may read everything.",
)
@click.option(
    "--blobs",
    "blob_fetch",
    type=click.Choice(BLOB_FETCH),
    default=BLOB_FETCH[0],
    show_default=True,
    help="Which blobs (photos, fingerprints) this site fetches: all its records reference"
    " (eager), only those asked for (lazy), or none (it still forwards those it holds).",
)
@json_option
@pass_state
def init(
    state: State,
    directory: Path | None,
    label: str | None,
    policy_specs: tuple[str, ...],
    default_policy: str,
    partition_specs: tuple[str, ...],
    trusted: tuple[str, ...],
    authority: bool,
    open_mode: bool,
    blob_fetch: str,
) -> None:
    """Create a site: a new key (sealed with the passphrase) and an empty store.

    A site trusts an authority (--trust KEY, or --authority for the authority itself):
    then only certified sites write, and each reads what its certificate allows. Open
    mode, where any signed key writes and reads everything, must be asked for (--open):
    personal data must never end up there by default.
    """
    if open_mode and (trusted or authority):
        fail("--open cannot be combined with --trust or --authority", hint="choose one")
    if not (open_mode or trusted or authority):
        fail(
            "a site needs an authority to trust",
            hint="offsync init DIR --trust AUTHORITY_KEY (or --authority for the authority "
            "itself); --open makes a trial site that anyone may read: docs/operations-keys.md",
        )
    path = directory or state.site_dir
    site_policies: dict[str, str] = {}
    for spec in policy_specs:
        collection, sep, name = spec.partition("=")
        if not sep or not collection:
            fail(f"cannot read --policy {spec!r}", hint="write --policy doses=fww")
        site_policies[collection] = name
    partitions = parse_partitions(partition_specs)
    passphrase = state.passphrase(confirm=True)
    if not passphrase:
        fail("an empty passphrase would leave the site key unprotected", hint="choose one")
    authorities = [parse_key(k).hex() for k in trusted]
    identity = Identity.generate(label=label or path.resolve().name)
    if authority:
        authorities.insert(0, identity.public_key.hex())
    site = Site.create(
        path,
        identity,
        passphrase,
        site_policies,
        default_policy,
        authorities,
        blob_fetch,
        partitions=partitions,
    )
    if state.json:
        emit_json(
            {
                "site": str(path),
                "label": site.label,
                "public_key": site.public_key,
                "policies": site.policies,
                "authorities": site.authorities,
                "mode": "trust" if site.authorities else "open",
                "blobs": blob_fetch,
            }
        )
    else:
        out.print(f"Created site [bold]{site.label}[/] in {path}")
        out.print(f"public key {site.public_key.hex()}")
        if blob_fetch != BLOB_FETCH[0]:
            out.print(f"blobs: {blob_fetch} ({_FETCH_TEXT[blob_fetch]})")
        out.print("Back up identity.key and keep the passphrase apart from it.")
    if not site.authorities:
        err.print(
            "[yellow]open mode:[/] this site applies the changes of any signed key, and "
            "serves any key everything it holds. For real data, create it with "
            "--trust AUTHORITY_KEY (or --authority): docs/operations-keys.md"
        )


#: What each fetch policy means, as ``init`` and ``blobs`` say it.
_FETCH_TEXT = {
    "eager": "fetches every blob its records reference",
    "lazy": "fetches a blob when it is asked for (`get --save`), at the next sync",
    "none": "fetches no blobs: it keeps the records, and forwards the blobs it holds",
}


@cli.command("blobs")
@click.option(
    "--fetch",
    "policy",
    type=click.Choice(BLOB_FETCH),
    help="Change which blobs this site fetches (kept in its store).",
)
@json_option
@pass_state
def blobs_command(state: State, policy: str | None) -> None:
    """Show (or with --fetch change) which blobs this site fetches, and what it holds,
    misses and was asked for."""
    replica = state.replica() if policy else state.reader()
    if policy:
        replica.set_blob_fetch(policy)
    missing = replica.missing_blobs()
    held = [b for b in replica.blob_store.blobs() if b.complete]
    asked = [r.hex for r in replica.demanded_blobs()]
    doc: dict[str, Any] = {
        "fetch": replica.blob_fetch,
        "held": len(held),
        "held_bytes": sum(b.size for b in held),
        "missing": missing.count,
        "missing_bytes": missing.bytes,
        "asked_for": asked,
    }
    if state.json:
        emit_json(doc)
        return
    out.print(f"fetch: {doc['fetch']} ({_FETCH_TEXT[replica.blob_fetch]})")
    out.print(f"held: {doc['held']} blob(s), {doc['held_bytes']} bytes")
    out.print(f"missing: {doc['missing']} blob(s), {doc['missing_bytes']} bytes")
    if asked:
        out.print(f"asked for, fetched at the next sync: {len(asked)}")


@cli.command("id")
@json_option
@pass_state
def show_id(state: State) -> None:
    """Show this site's label and public key (no passphrase needed)."""
    site = state.site
    if state.json:
        emit_json({"label": site.label, "public_key": site.public_key, "path": str(site.path)})
    else:
        out.print(f"{site.label} {site.public_key.hex()}")


def _field_path(spec: str, option: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        fail(f"cannot read {option} {spec!r}", hint=f"write {option} photo=face.jpg")
    return name, Path(path)


@cli.command()
@click.argument("collection")
@click.argument("key")
@click.argument("pairs", nargs=-1, metavar="FIELD=VALUE...")
@click.option("--fields", "fields_json", metavar="JSON", help="Fields as one JSON object.")
@click.option(
    "--attach",
    "attachments",
    multiple=True,
    metavar="FIELD=PATH",
    help="Store a file as a blob and put its reference in FIELD (repeatable).",
)
@click.option(
    "--media-type",
    help="Media type of the attached files (default: guessed from each file's name).",
)
@json_option
@pass_state
def put(
    state: State,
    collection: str,
    key: str,
    pairs: tuple[str, ...],
    fields_json: str | None,
    attachments: tuple[str, ...],
    media_type: str | None,
) -> None:
    """Set fields of a record (FIELD=text, FIELD:=JSON); other fields are kept."""
    fields = parse_fields(pairs, fields_json)
    files = [_field_path(spec, "--attach") for spec in attachments]
    if not fields and not files:
        fail("no fields given", hint="write e.g. `offsync put residents 3519... name=Siti`")
    replica = state.writer()
    refs = {}
    for name, path in files:
        kind = media_type or mimetypes.guess_type(path.name)[0] or DEFAULT_MEDIA_TYPE
        with path.open("rb") as f:
            refs[name] = replica.put_blob(f, kind)
        fields[name] = refs[name].field()
    change = replica.put(collection, key, fields)
    if state.json:
        emit_json(
            {
                "origin": change.origin,
                "seq": change.seq,
                "blobs": {n: {"hash": r.hash, "size": r.size} for n, r in refs.items()},
            }
        )
    else:
        for name, ref in refs.items():
            out.print(f"{name}: blob {ref.hex[:16]} ({ref.size} bytes, {ref.media_type})")
        out.print(f"{collection}/{key} written (change {head_name(change)})")


@cli.command()
@click.argument("collection")
@click.argument("key")
@click.option(
    "--save",
    "saves",
    multiple=True,
    metavar="FIELD=PATH",
    help="Write the blob FIELD refers to into PATH, checked against its hash (repeatable).",
)
@json_option
@pass_state
def get(state: State, collection: str, key: str, saves: tuple[str, ...]) -> None:
    """Show one record (exit 1 if there is none)."""
    replica = state.reader()
    value = replica.get(collection, key)
    if value is not None:
        for name, path in (_field_path(spec, "--save") for spec in saves):
            if not is_reference(value.get(name)):
                fail(f"{collection}/{key}: field {name!r} holds no blob reference")
            ref = BlobRef.from_field(value[name])
            with replica.open_blob(ref) as stream, path.open("wb") as f:
                shutil.copyfileobj(stream, f)
            if not state.json:
                out.print(f"saved {name} ({ref.size} bytes, {ref.media_type}) to {path}")
    if state.json:
        emit_json(value)
    elif value is not None:
        for name, v in value.items():
            out.print(f"{name}: {json_text(v, sort_keys=False)}")
    if value is None:
        if not state.json:
            show_error(f"{collection}/{key}: no such record")
        raise click.exceptions.Exit(EXIT_ERROR)


@cli.command()
@click.argument("collection")
@click.argument("key")
@json_option
@pass_state
def delete(state: State, collection: str, key: str) -> None:
    """Delete a record (a tombstone that travels like any change)."""
    change = state.writer().delete(collection, key)
    if state.json:
        emit_json({"deleted": change is not None})
    elif change is None:
        out.print(f"{collection}/{key}: nothing to delete")
    else:
        out.print(f"{collection}/{key} deleted (change {head_name(change)})")


@cli.command()
@click.argument("collection", required=False)
@click.option("--limit", type=int, default=0, help="Show at most this many records.")
@json_option
@pass_state
def ls(state: State, collection: str | None, limit: int) -> None:
    """List collections, or the records of one collection."""
    replica = state.reader()
    if collection is None:
        counts = replica.collections()
        if state.json:
            emit_json(counts)
            return
        table = Table("collection", "records", "policy")
        for name, n in sorted(counts.items()):
            table.add_row(name, str(n), replica.policy(name).name)
        out.print(table)
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
        table.add_row(key, json_text(value))
    out.print(table)


@cli.command()
@click.argument("collection")
@click.argument("key")
@click.option(
    "--held",
    is_flag=True,
    help="Also list the record's changes held in quarantine (not applied), with why.",
)
@json_option
@pass_state
def history(state: State, collection: str, key: str, held: bool) -> None:
    """Every version of one record this site holds, oldest first (exit 1 if none).

    Each change with its time, site, change id (ORIGIN:SEQ), op and the fields it
    wrote, intermediate offline edits included, in the order every replica that holds
    the same changes lists them. `current` marks the versions no later change
    replaced (two or more: a conflict or concurrent edits)."""
    replica = state.reader()
    entries = replica.history(collection, key, held=held)
    names = state.names(replica)
    doc = [
        {
            "change": head_name(e.id),
            "origin": e.origin,
            "site": names.get(e.origin),
            "seq": e.seq,
            "time": iso_hlc(e.hlc),
            "hlc": e.hlc,
            "op": e.op,
            "fields": e.fields,
            "parents": [head_name(p) for p in e.parents],
            "current": e.head,
            "author": e.author,
            "schema": e.schema,
            "held": e.reason,
        }
        for e in entries
    ]
    if state.json:
        emit_json(doc)
    elif entries:
        table = Table("time", "site", "change", "op", "fields", title=f"{collection}/{key}")
        for e in entries:
            mark = "  [dim](current)[/]" if e.head else ""
            if e.reason is not None:
                mark = f"  [yellow](held: {escape(e.reason)})[/]"
            shown = "-" if e.fields is None else escape(json_text(e.fields, sort_keys=False))
            table.add_row(
                when(e.hlc),
                escape(names.get(e.origin) or e.origin[:6].hex()),
                head_name(e.id),
                e.op,
                shown + mark,
            )
        out.print(table)
    if not entries:
        if not state.json:
            show_error(f"{collection}/{key}: this site holds no change of it")
        raise click.exceptions.Exit(EXIT_ERROR)
