"""Bundle files by hand: pack, inspect (header only), verify (everything), apply."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..bundle import open_bundle, read_header
from ..errors import RemoteDataError
from .app import cli, json_option, pass_state
from .exits import EXIT_REFUSED, fail
from .output import emit_json, err, iso_hlc, out, progress
from .params import peer_knowledge
from .site import State, write_atomic

BUNDLE_SUFFIX = ".ofs"

_FILES = click.Path(exists=True, path_type=Path)


def safe_name(label: str) -> str:
    """A label as a file name part that every file system takes."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:40] or "site"


def bundle_files(paths: Sequence[Path]) -> list[Path]:
    """Files named on the command line; directories stand for the bundles in them."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if q.suffix == BUNDLE_SUFFIX))
        else:
            found.append(p)
    return found


def refusal(exc: RemoteDataError) -> str:
    return f"{type(exc).__name__}: {exc}"


@cli.command()
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
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
def pack(state: State, out_dir: Path, for_peer: str | None, encrypt: bool, max_bytes: int) -> None:
    """Write bundle files into OUT: everything, or what --for PEER lacks.

    One bundle is written even when nothing is new, so this site's receipt travels.
    """
    replica = state.sealer()
    peer = state.resolve(replica, for_peer) if for_peer else None
    if encrypt and peer is None:
        fail("--encrypt needs --for PEER", hint="name the site that will open the bundles")
    since = peer_knowledge(replica, peer) if peer is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{safe_name(replica.identity.label)}-{replica.identity.short_id}"
    written: list[dict[str, Any]] = []
    with progress(state.json, "packing", None) as step:
        for i, data in enumerate(
            replica.iter_pack(
                since, max_bytes=max_bytes, recipient=peer if encrypt else None, always=True
            )
        ):
            header, _ = read_header(data)
            path = out_dir / f"{prefix}-{header.created:016x}-{i:04d}{BUNDLE_SUFFIX}"
            write_atomic(path, data)
            written.append(
                {"file": str(path), "bytes": len(data), "changes": header.ranges.count()}
            )
            step(1)
    if state.json:
        emit_json(written)
        return
    total = sum(w["changes"] for w in written)
    out.print(
        f"{len(written)} bundle(s), {total} change(s), "
        f"{sum(w['bytes'] for w in written)} bytes in {out_dir}"
    )


def describe_bundle(
    path: Path, own: bytes | None, names: Mapping[bytes, str] | None = None
) -> dict[str, Any]:
    """What ``inspect`` reports: the header, checked but never opened; ``names``: the
    labels of keys known here."""
    names = names or {}
    data = path.read_bytes()
    info: dict[str, Any] = {"file": str(path), "bytes": len(data)}
    try:
        header, body = read_header(data)
    except RemoteDataError as exc:
        info.update(valid=False, error=refusal(exc))
        return info
    info.update(
        valid=True,
        signature="valid",
        format_version=int.from_bytes(data[6:8], "big"),
        sender=header.sender,
        sender_label=names.get(header.sender),
        sender_is_this_site=header.sender == own,
        recipient=header.recipient,
        recipient_label=names.get(header.recipient) if header.recipient else None,
        encrypted=header.recipient is not None,
        created=iso_hlc(header.created),
        segments=header.segments,
        changes=header.ranges.count(),
        ranges=[
            {
                "origin": stream.origin.hex(),
                "collection": stream.collection,
                "prefix": stream.prefix,
                "intervals": [list(iv) for iv in header.ranges.get(stream)],
            }
            for stream in header.ranges.streams()
        ],
        body_bytes=len(body),
        receipts=[
            {
                "replica": r.replica,
                "label": names.get(r.replica),
                "created": iso_hlc(r.created),
                "holds": r.knowledge.count(),
            }
            for r in header.receipts
        ],
    )
    return info


@cli.command()
@click.argument("files", nargs=-1, required=True, type=_FILES)
@json_option
@pass_state
def inspect(state: State, files: tuple[Path, ...]) -> None:
    """Show bundle headers: sender, ranges, sizes, signature. Applies nothing.

    Needs no key and no passphrase: the body is neither decrypted nor decompressed.
    Exit 3 if any file is not a validly signed bundle.
    """
    own = state.own_key()
    names = state.names() if own is not None else {}
    infos = [describe_bundle(p, own, names) for p in bundle_files(files)]
    if state.json:
        emit_json(infos)
    else:
        for info in infos:
            _print_bundle(info)
    if not all(i["valid"] for i in infos):
        raise click.exceptions.Exit(EXIT_REFUSED)


def _print_bundle(info: dict[str, Any]) -> None:
    table = Table(show_header=False, title=escape(info["file"]), title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if not info["valid"]:
        table.add_row("signature", "[red]NOT VALID[/]")
        table.add_row("error", escape(info["error"]))
        out.print(table)
        return

    def named(key: bytes, label: str | None) -> str:
        return key.hex() + (f" ({escape(label)})" if label else "")

    me = " (this site)" if info["sender_is_this_site"] else ""
    table.add_row("signature", "[green]valid[/]")
    table.add_row("format", str(info["format_version"]))
    table.add_row("sender", named(info["sender"], info["sender_label"]) + me)
    table.add_row(
        "recipient",
        named(info["recipient"], info["recipient_label"])
        if info["recipient"]
        else "anyone (not sealed)",
    )
    table.add_row("created", _shown(info["created"]))
    table.add_row("changes", f"{info['changes']} in {info['segments']} segment(s)")
    table.add_row(
        "ranges",
        "\n".join(
            f"{r['origin'][:12]} {r['collection']}/{r['prefix']} "
            + ",".join(f"{a}-{b}" for a, b in r["intervals"])
            for r in info["ranges"]
        )
        or "-",
    )
    table.add_row(
        "size",
        f"{info['bytes']} bytes (body {info['body_bytes']})",
    )
    table.add_row(
        "receipts",
        "\n".join(
            f"{escape(r['label'] or r['replica'][:6].hex())} holds {r['holds']} as of"
            f" {_shown(r['created'])}"
            for r in info["receipts"]
        ),
    )
    out.print(table)


def _shown(iso: str | None) -> str:
    """An ISO time of the JSON document as the tables show times."""
    return iso.replace("T", " ").replace("Z", " UTC") if iso else "-"


@cli.command()
@click.argument("files", nargs=-1, required=True, type=_FILES)
@json_option
@pass_state
def verify(state: State, files: tuple[Path, ...]) -> None:
    """Check bundles completely (signatures of the bundle and of every segment, format,
    limits) without applying them. Bundles sealed for this site are opened with its key.

    Exit 3 if any bundle would be refused.
    """
    own = state.own_key()
    results: list[dict[str, Any]] = []
    paths = bundle_files(files)
    with progress(state.json, "verifying", len(paths)) as step:
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
        out.print(table)
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
            seg.open_changes()
    except RemoteDataError as exc:
        return {"file": str(path), "ok": False, "detail": refusal(exc)}
    return {
        "file": str(path),
        "ok": True,
        "detail": "bundle and segment signatures valid",
        "changes": header.ranges.count(),
    }


@cli.command()
@click.argument("files", nargs=-1, required=True, type=_FILES)
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
    with progress(state.json, "applying", len(paths)) as step:
        for path in paths:
            try:
                report = replica.apply(path.read_bytes())
            except RemoteDataError as exc:
                rows.append({"file": str(path), "ok": False, "error": refusal(exc)})
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
        out.print(table)
        if any(r["ok"] and r["conflicts"] for r in rows):
            out.print("Open conflicts: see `offsync conflicts`.")
    if not all(r["ok"] for r in rows):
        err.print(
            "[yellow]next:[/] refused bundles were left untouched; "
            "`offsync inspect FILE` shows what they claim to be"
        )
        raise click.exceptions.Exit(EXIT_REFUSED)
