"""Reading what operators type: record fields, keys, peers and times."""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from .. import Replica
from ..knowledge import Knowledge
from .exits import EXIT_USAGE, CommandError, fail

if TYPE_CHECKING:
    from .site import Site

_FULL_KEY = re.compile(r"[0-9a-f]{64}")

#: Who entered a write (``--author``, else env ``OFFSYNC_AUTHOR``): a clerk id kept in
#: each change and shown by ``history``. Per login, not per site: a laptop passed
#: between clerks must not sign the next one's work with the last one's name.
author_option = click.option(
    "--author",
    envvar="OFFSYNC_AUTHOR",
    metavar="CLERK",
    help="Who enters this write: a clerk id (1-64 bytes), kept with the change and shown"
    " by `offsync history` (env OFFSYNC_AUTHOR; default: none).",
)


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


def parse_key(text: str) -> bytes:
    """A full public key in hex (64 digits)."""
    text = text.strip().lower()
    if not _FULL_KEY.fullmatch(text):
        fail(
            f"{text!r} is not a public key (64 hex digits)",
            hint="`offsync id` at that site prints its key",
        )
    return bytes.fromhex(text)


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


def key_labels(replica: Replica | None, site: Site) -> dict[bytes, str]:
    """Key -> label: this site's own, ``authority`` for the trusted authorities, the
    address book's, and the certified labels (trust mode, given the replica), which win
    over the address book."""
    names = {bytes.fromhex(a): "authority" for a in site.authorities}
    names[site.public_key] = site.label
    for label, hexkey in site.peers.items():
        names[bytes.fromhex(hexkey)] = label
    store = replica.trust_store if replica is not None else None
    if store is not None:
        for key, cert in store.certificates.items():
            if cert.label:
                names[key] = cert.label
    return names


def _labelled(replica: Replica, book: Mapping[str, str], label: str) -> set[bytes]:
    """The keys that carry ``label``: in certificates in force, or in the address book."""
    keys = {bytes.fromhex(book[label])} if label in book else set()
    store = replica.trust_store
    if store is not None:
        keys.update(k for k, cert in store.certificates.items() if cert.label == label)
    return keys


def resolve_peer(replica: Replica, text: str, book: Mapping[str, str] | None = None) -> bytes:
    """A peer named by its label (certified, or in the address book ``book``) where
    exactly one key carries it, its public key in hex, or an unambiguous prefix of the
    key of a peer heard from."""
    keys = _labelled(replica, book or {}, text.strip())
    if len(keys) == 1:
        return keys.pop()
    if keys:
        fail(
            f"the label {text!r} names more than one key: "
            + ", ".join(sorted(k[:6].hex() for k in keys)),
            hint="give the public key (or a longer prefix of it) instead",
        )
    text = text.strip().lower()
    if _FULL_KEY.fullmatch(text):
        return bytes.fromhex(text)
    if not re.fullmatch(r"[0-9a-f]{4,63}", text):
        fail(
            f"{text!r} is neither a known label nor a public key (or a hex prefix of one)",
            hint="`offsync peers` lists the labels known here and `offsync peers add LABEL"
            " KEY` adds one; `offsync id` at the peer prints its key",
        )
    known = [p for p in replica.receipts() if p.hex().startswith(text)]
    if len(known) == 1:
        return known[0]
    fail(
        f"{'no' if not known else 'more than one'} known peer starts with {text}",
        hint="give the full 64-digit public key from `offsync id` at that site",
    )


def peer_knowledge(replica: Replica, peer: bytes) -> Knowledge:
    """What ``peer`` holds, from what its receipts heard here said (nothing if none)."""
    return replica.peer_knowledge(peer).get(peer, Knowledge())
