"""The address book: labels for peers' keys, kept in the site's ``site.json``.

In trust mode the certificates name every site; in open mode nothing does, so operators
give the keys they deal with a label here. ``status`` and the reports show the labels
beside the short ids, and every option that takes a peer (``--to``, ``--for``,
``--peer``, ``--server-key``, ``--centre``) accepts a label that names exactly one key.
"""

from __future__ import annotations

import re

import click
from rich.markup import escape
from rich.table import Table

from .app import Group, cli, json_option, pass_state, state_of
from .exits import fail
from .output import emit_json, out
from .params import parse_key
from .site import State

#: Labels that read as a key or a prefix of one are refused: `--to abcd` must stay clear.
_HEXLIKE = re.compile(r"[0-9a-fA-F]{4,64}")


@cli.group(cls=Group, invoke_without_command=True)
@json_option
@click.pass_context
def peers(ctx: click.Context) -> None:
    """The address book: labels for peers' keys (`offsync peers add LABEL KEY`)."""
    if ctx.invoked_subcommand is not None:
        return
    state = state_of(ctx)
    book = state.site.peers
    if state.json:
        emit_json(book)
        return
    if not book:
        out.print("The address book is empty: `offsync peers add LABEL KEY` adds a peer.")
        return
    table = Table("label", "public key", title="Address book", title_justify="left")
    for label, key in sorted(book.items()):
        table.add_row(escape(label), key)
    out.print(table)


@peers.command("add")
@click.argument("label")
@click.argument("key")
@json_option
@pass_state
def peers_add(state: State, label: str, key: str) -> None:
    """Give the peer with public KEY (64 hex digits, from `offsync id` there) a LABEL.

    A key has one label in the book; adding another replaces it. Needs no passphrase.
    """
    label = label.strip()
    if not label or _HEXLIKE.fullmatch(label):
        fail(
            f"{label!r} cannot be a label: it would read as a key",
            hint="choose a name with letters outside a-f, e.g. kab-madiun",
        )
    hexkey = parse_key(key).hex()
    site = state.site
    if hexkey == site.public_key.hex():
        fail("that is this site's own key", hint="its label is in site.json already")
    taken = site.peers.get(label)
    if taken is not None and taken != hexkey:
        fail(
            f"the label {label!r} is already given to {taken[:12]}",
            hint="`offsync peers remove LABEL` first, or choose another label",
        )
    site.peers = {k: v for k, v in site.peers.items() if v != hexkey}
    site.peers[label] = hexkey
    state.saved(site.peers, f"{escape(label)} is {hexkey}")


@peers.command("remove")
@click.argument("label")
@json_option
@pass_state
def peers_remove(state: State, label: str) -> None:
    """Take LABEL out of the address book."""
    site = state.site
    if label not in site.peers:
        fail(f"no peer is labelled {label!r} here", hint="`offsync peers` lists the book")
    del site.peers[label]
    state.saved(site.peers, f"{escape(label)} removed from the address book")
