"""The centres a site delivers to: ``offsync centres``, and ``offsync sync`` with several.

A deployment may run several centres that sync with each other as peers (docs/scale.md,
"Several centres"). ``site.json`` lists them in order (``offsync centres add URL
--key KEY``); ``offsync sync`` with no target, or with several URLs, runs one round
with the first that answers (``offsync.sync.sync_any``), the one that answered last
time first, and says which one took it. A centre added without its key is pinned to
the key of its first signed answer (trust on first use, said on screen); give the key
when you have it from the deployment's configuration. Receipts of any listed centre
count for ``offsync status``'s "delivered to a centre"; in trust mode only while the
centre's key is certified.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..errors import UsageError
from ..sync import prefer_last
from ..transports import Location, parse_location
from .app import Group, cli, json_option, pass_state, state_of
from .exits import fail
from .output import emit_json, err, out
from .site import State, write_atomic

#: The file (in the site directory) that remembers the centre that answered last.
LAST_FILE = "centres-last.json"


@dataclass(frozen=True, slots=True)
class Centre:
    """A centre to try: its address and, when known, its key."""

    where: Location
    key: bytes | None
    #: Listed in site.json (its key may be pinned there at first contact).
    listed: bool


def centre_keys(state: State) -> list[bytes]:
    """The keys of the listed centres that are known (given, or pinned)."""
    return [bytes.fromhex(c["key"]) for c in state.site.centres if c["key"]]


def last_answered(state: State) -> str | None:
    """The URL of the centre that took the last round, if remembered."""
    try:
        doc = json.loads((state.site.path / LAST_FILE).read_text())
    except (OSError, ValueError):
        return None
    last = doc.get("last") if isinstance(doc, dict) else None
    return last if isinstance(last, str) else None


def remember(state: State, centre: Centre, key: bytes | None) -> None:
    """Remember the centre that answered; pin a listed centre's key at first contact."""
    url = centre.where.address.rstrip("/")
    write_atomic(state.site.path / LAST_FILE, (json.dumps({"last": url}) + "\n").encode())
    if not centre.listed or centre.key is not None or key is None:
        return
    site = state.site
    for entry in site.centres:
        if entry["url"] == url and entry["key"] is None:
            entry["key"] = key.hex()
            site.save()
            err.print(
                f"[yellow]note:[/] {escape(url)} answered as {key.hex()}; that key is now "
                "pinned for it in site.json (check it against the deployment's list)"
            )


def chosen(state: State, targets: Sequence[str], server_key: bytes | None) -> list[Centre]:
    """The centres to try, in order: the targets given (all http), or the listed ones
    with the one that answered last first."""
    listed = {c["url"]: c["key"] for c in state.site.centres}
    if not targets:
        if not listed:
            fail(
                "no target given and no centre listed",
                hint="give http://HOST:PORT or a folder, or list the centres with "
                "`offsync centres add URL --key KEY`",
            )
        urls = list(listed)
        targets = [urls[i] for i in prefer_last(urls, last_answered(state))]
    if len(targets) > 1 and server_key is not None:
        fail(
            "--server-key names one server, and several were given",
            hint="give each centre's key with `offsync centres add URL --key KEY`",
        )
    centres = []
    for target in targets:
        try:
            where = parse_location(target)
        except UsageError as exc:
            fail(str(exc), hint="give http://HOST:PORT or the path of the shared folder")
        if len(targets) > 1 and where.kind != "http":
            fail(f"{target} is not an http(s) URL", hint="several targets are centres' URLs")
        address = where.address.rstrip("/")
        key = listed.get(address)
        centres.append(
            Centre(where, server_key or (bytes.fromhex(key) if key else None), address in listed)
        )
    return centres


@cli.group(cls=Group, invoke_without_command=True)
@json_option
@click.pass_context
def centres(ctx: click.Context) -> None:
    """The centres this site delivers to, in order (`offsync centres add URL`)."""
    if ctx.invoked_subcommand is not None:
        return
    state = state_of(ctx)
    listed = state.site.centres
    last = last_answered(state)
    if state.json:
        emit_json([{**c, "answered_last": c["url"] == last} for c in listed])
        return
    if not listed:
        out.print("No centre listed: `offsync centres add URL --key KEY` adds one.")
        return
    table = Table("url", "public key", "last", title="Centres", title_justify="left")
    for c in listed:
        table.add_row(
            escape(c["url"]),
            c["key"] or "(pinned at first contact)",
            "answered last" if c["url"] == last else "",
        )
    out.print(table)


@centres.command("add")
@click.argument("url")
@click.option(
    "--key", metavar="KEY", help="The centre's public key (hex, or a label of the address book)."
)
@json_option
@pass_state
def centres_add(state: State, url: str, key: str | None) -> None:
    """List the centre at URL (after those listed: the order is the order tried).

    Without --key, the key of its first signed answer is pinned (trust on first use).
    Needs no passphrase.
    """
    try:
        where = parse_location(url, "http")
    except UsageError as exc:
        fail(str(exc), hint="a centre is http://HOST:PORT or https://HOST")
    hexkey = None
    if key is not None:
        from .params import parse_key

        hexkey = state.site.peers[key] if key in state.site.peers else parse_key(key).hex()
    site = state.site
    if any(c["url"] == where.address.rstrip("/") for c in site.centres):
        fail(
            f"{where.address} is listed already",
            hint="`offsync centres remove URL` first to change its key or place",
        )
    address = where.address.rstrip("/")
    site.centres.append({"url": address, "key": hexkey})
    state.saved(site.centres, f"{escape(address)} listed as centre {len(site.centres)}")


@centres.command("remove")
@click.argument("url")
@json_option
@pass_state
def centres_remove(state: State, url: str) -> None:
    """Take the centre at URL off the list."""
    site = state.site
    kept = [c for c in site.centres if c["url"] != url.rstrip("/") and c["url"] != url]
    if len(kept) == len(site.centres):
        fail(f"no centre is listed at {url}", hint="`offsync centres` shows the list")
    site.centres = kept
    state.saved(site.centres, f"{escape(url)} is no longer listed")


def took_document(where: str, failures: Sequence[Any]) -> dict[str, Any]:
    """What ``--json`` says about the failover: who took the round, who failed first."""
    return {
        "centre": where,
        "failed_centres": [
            {"centre": f.where, "error": f.error, "reason": f.reason} for f in failures
        ],
    }
