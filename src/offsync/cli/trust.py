"""Who may write what: authorities, certificates, revocations; and attestations, the
signed tokens on provisional cards that anyone can check offline."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from .. import Replica
from ..attest import attest as make_token
from ..attest import delivered, from_text, read_attestation, to_text, verify_attestation
from ..errors import UsageError
from ..readable import read_scope_of
from ..scope import ANY_COLLECTION, Partition, Scope
from ..trust import after_held, issue_certificate, revoke
from .app import Group, cli, json_option, pass_state
from .exits import fail
from .output import (
    emit_json,
    head_name,
    iso_ms,
    ms_text,
    now_ms,
    out,
    scope_field,
    scope_text,
    short,
)
from .params import parse_fields, parse_key, parse_time, peer_knowledge
from .site import State


def _require_authority(state: State) -> Replica:
    site = state.site
    if site.public_key.hex() not in site.authorities:
        fail(
            f"{site.label} is not an authority: other sites would refuse what it issues",
            hint="issue certificates at the authority site (created with `offsync init "
            "--authority`), or add this key to its own trust with `offsync trust import`",
        )
    return state.writer()


def parse_read(specs: tuple[str, ...]) -> Scope | None:
    """``--read`` values as a read scope: items separated by ``;`` (or given again),
    each ``COLLECTION=PREFIX,PREFIX`` (those key prefixes), ``COLLECTION`` (the whole
    collection) or ``*`` (everything). None when none is given (the write scope)."""
    if not specs:
        return None
    named: dict[str, list[str]] = {}
    for spec in specs:
        for item in (i.strip() for i in spec.split(";")):
            if not item:
                continue
            if item == ANY_COLLECTION:
                return Scope.everything()
            collection, sep, rest = item.partition("=")
            collection = collection.strip()
            prefixes = [p.strip() for p in rest.split(",") if p.strip()] if sep else []
            if not collection or (sep and not prefixes):
                fail(
                    f"cannot read --read {item!r}",
                    hint='write --read "residents=3201,3202;doses=3201;vaccine_lots"',
                )
            if collection in named and (not named[collection] or not prefixes):
                named[collection] = []  # the whole collection
            else:
                named[collection] = [*named.get(collection, []), *prefixes]
    try:
        return Scope(named)
    except UsageError as exc:
        fail(f"--read: {exc}")


def parse_after(specs: tuple[str, ...]) -> dict[Partition, int]:
    """``--after COLLECTION[/PREFIX]=SEQ`` values: per stream, the last seq kept."""
    out: dict[Partition, int] = {}
    for spec in specs:
        stream, sep, seq = spec.rpartition("=")
        collection, _, prefix = stream.partition("/")
        if not sep or not collection or not seq.strip().isdigit():
            fail(
                f"cannot read --after {spec!r}",
                hint="write --after residents/3201=12 (a stream's collection/prefix and the"
                " last seq kept; residents=12 for a collection of one partition)",
            )
        try:
            out[Partition(collection, prefix)] = int(seq)
        except UsageError as exc:
            fail(f"--after {spec!r}: {exc}")
    return out


@cli.group(cls=Group)
def trust() -> None:
    """Authorities, certificates and revocations (who may write and read what)."""


@trust.command("import")
@click.argument("key")
@json_option
@pass_state
def trust_import(state: State, key: str) -> None:
    """Trust an authority KEY (hex): the root of trust, exchanged out of band.

    From then on this site applies only changes of sites that an authority certified;
    the rest is held in quarantine and re-examined when certificates arrive.
    """
    site = state.site
    hexkey = parse_key(key).hex()
    added = hexkey not in site.authorities
    if added:
        site.authorities.append(hexkey)
        site.save()
    replica = state.replica()  # opening re-examines what is held under the new trust
    if state.json:
        emit_json({"authorities": site.authorities, "added": added})
    else:
        out.print(
            f"{'Now trusting' if added else 'Already trusted'}: authority {hexkey}; "
            f"{len(replica.quarantined())} quarantined segment(s) after re-examination"
        )


@trust.command("list")
@json_option
@pass_state
def trust_list(state: State) -> None:
    """Show the authorities, the certificates and the revocations in force."""
    replica = state.reader()
    store = replica.trust_store
    doc: dict[str, Any] = {
        "mode": "open" if store is None else "certified",
        "authorities": state.site.authorities,
        "certificates": [],
        "revocations": [],
        "problems": [],
    }
    if store is not None:
        doc["certificates"] = [
            {
                "site": c.site,
                "label": c.label,
                "collections": list(c.collections),
                "prefixes": list(c.prefixes),
                "valid_from": iso_ms(c.valid_from or None),
                "valid_until": iso_ms(c.valid_until),
                "replaces": c.replaces,
                "read": scope_field(c.read_scope),
            }
            for c in store.certificates.values()
        ]
        doc["revocations"] = [
            {
                "site": r.site,
                "effective": iso_ms(r.effective_ms),
                "after": None
                if r.after is None
                else [[p.collection, p.prefix, seq] for p, seq in r.after.items()],
                "reason": r.reason,
            }
            for r in store.revocations.values()
        ]
        doc["problems"] = list(store.problems)
    if state.json:
        emit_json(doc)
        return
    if store is None:
        out.print(
            "Open mode: no authority is trusted, so any validly signed site may write. "
            "`offsync trust import KEY` trusts an authority."
        )
        return
    out.print("Authorities: " + ", ".join(a[:16] for a in doc["authorities"]))
    table = Table(
        "site",
        "label",
        "collections",
        "key prefixes",
        "reads",
        "valid",
        "replaces",
        title="Certificates",
        title_justify="left",
    )
    for c in store.certificates.values():
        table.add_row(
            c.site.hex()[:16],
            escape(c.label),
            escape(",".join(c.collections)),
            escape(",".join(c.prefixes) or "any"),
            escape(scope_text(c.read_scope)),
            f"{ms_text(c.valid_from or None)} .. {ms_text(c.valid_until)}",
            c.replaces.hex()[:16] if c.replaces else "",
        )
    out.print(table)
    names = state.names(replica)
    for r in store.revocations.values():
        after = ""
        if r.after is not None:
            kept = ", ".join(f"{p.collection}/{p.prefix}<={n}" for p, n in r.after.items())
            after = f" keeping {kept or 'none of its changes'}"
        since = f" from {ms_text(r.effective_ms)}" if r.effective_ms is not None else ""
        out.print(
            f"[red]revoked[/] {escape(short(r.site, names))}{after}{since}: {escape(r.reason)}"
        )
    for problem in doc["problems"]:
        out.print(f"[yellow]ignored[/] {escape(problem)}")


@trust.command("issue")
@click.argument("site_key", metavar="SITE")
@click.option("--label", default="", help="The site's name, shown to operators.")
@click.option("--collection", "collections", multiple=True, help="May write (default: all).")
@click.option("--prefix", "prefixes", multiple=True, help="Key prefix it may write (region).")
@click.option(
    "--read",
    "read_specs",
    multiple=True,
    metavar="SCOPE",
    help='What it may read: "residents=3201,3202;doses=3201" (collection=key prefixes;'
    ' a collection alone: all of it; "*": everything). Default: what it may write.'
    " _trust and the reference collections are read by every certified site.",
)
@click.option("--valid-from", default="0", help="now, a date, or ms (default: always).")
@click.option("--valid-until", default=None, help="now, a date, or ms (default: no end).")
@click.option("--replaces", default=None, metavar="KEY", help="The key this one rotates.")
@json_option
@pass_state
def trust_issue(
    state: State,
    site_key: str,
    label: str,
    collections: tuple[str, ...],
    prefixes: tuple[str, ...],
    read_specs: tuple[str, ...],
    valid_from: str,
    valid_until: str | None,
    replaces: str | None,
) -> None:
    """Certify SITE (its key in hex): what it may write and read, and when. Run at the
    authority (``trust certify`` is the same command).

    The certificate is an ordinary change: it reaches sites by the same roads as data.
    Issuing again for the same key replaces its certificate (renewal, new scope).
    """
    replica = _require_authority(state)
    read = parse_read(read_specs)
    if read is not None:
        try:
            read.validate(replica.rule)
        except UsageError as exc:
            fail(f"--read: {exc}", hint="a read prefix is at most the partition rule's length")
    options: dict[str, Any] = {
        "read": read,
        "label": label,
        "prefixes": prefixes,
        "valid_from": parse_time(valid_from),
        "valid_until": parse_time(valid_until) if valid_until else None,
        "replaces": parse_key(replaces) if replaces else None,
    }
    if collections:
        options["collections"] = collections
    change = issue_certificate(replica, parse_key(site_key), **options)
    if state.json:
        emit_json({"origin": change.origin, "seq": change.seq})
    else:
        out.print(
            f"Certificate for {site_key[:16]} written (change {head_name(change)}); "
            "deliver it like any change (sync, disk export, pack)"
        )


trust.add_command(trust_issue, "certify")


@trust.command("revoke")
@click.argument("site_key", metavar="SITE")
@click.option(
    "--after",
    "after_specs",
    multiple=True,
    metavar="STREAM=SEQ",
    help="Keep its changes of this stream up to SEQ: residents/3201=12 (repeatable); every"
    " stream not named is refused whole.",
)
@click.option(
    "--after-held",
    "held_here",
    is_flag=True,
    help="Keep exactly what this site holds of SITE now, per stream (run it at the centre's"
    " authority after a sync).",
)
@click.option(
    "--after-held-by",
    metavar="PEER",
    help="Keep exactly what PEER (a centre) holds of SITE, as its receipts heard here say.",
)
@click.option("--after-seq", type=int, hidden=True)
@click.option("--effective", help="Refuse its changes stamped from then: now, a date, or ms.")
@click.option("--reason", default="", help="Why (recorded with the revocation).")
@json_option
@pass_state
def trust_revoke(
    state: State,
    site_key: str,
    after_specs: tuple[str, ...],
    held_here: bool,
    after_held_by: str | None,
    after_seq: int | None,
    effective: str | None,
    reason: str,
) -> None:
    """Revoke SITE's key (lost disk, stolen laptop). Run at the authority.

    --after, --after-held or --after-held-by pin the revocation to what the centre
    already holds, per stream (format 3 numbers each stream on its own); a thief
    cannot backdate around it. --effective refuses changes stamped from a time on.
    """
    if after_seq is not None:
        fail(
            "--after-seq is gone: format 3 numbers each stream on its own",
            hint="use --after-held-by CENTRE (what the centre holds of the key, per stream),"
            " --after-held, or --after residents/3201=12",
        )
    given = sum((bool(after_specs), held_here, after_held_by is not None))
    if given > 1:
        fail("give one of --after, --after-held and --after-held-by")
    if not given and effective is None:
        fail(
            "a revocation needs --after-held-by CENTRE, --after-held, --after or --effective",
            hint="`offsync status` at the centre shows how much of that site it holds",
        )
    replica = _require_authority(state)
    key = parse_key(site_key)
    after: dict[Partition, int] | None = None
    if after_specs:
        after = parse_after(after_specs)
    elif held_here:
        after = after_held(replica.knowledge(), key)
    elif after_held_by is not None:
        peer = state.resolve(replica, after_held_by)
        after = after_held(peer_knowledge(replica, peer), key)
    change = revoke(
        replica,
        key,
        after=after,
        effective_ms=parse_time(effective) if effective else None,
        reason=reason,
    )
    if state.json:
        emit_json(
            {
                "origin": change.origin,
                "seq": change.seq,
                "after": None
                if after is None
                else [[p.collection, p.prefix, n] for p, n in sorted(after.items())],
            }
        )
    else:
        kept = "" if after is None else f", keeping {sum(after.values())} change(s) held"
        out.print(f"Revocation of {site_key[:16]} written (change {head_name(change)}){kept}")


@trust.command("show")
@click.argument("site_key", metavar="SITE")
@json_option
@pass_state
def trust_show(state: State, site_key: str) -> None:
    """What SITE may write and read here now: its certificate, its revocation, and the
    read scope every server and courier stop of this deployment offers it (its
    certificate's, plus _trust and the reference collections)."""
    replica = state.reader()
    key = state.resolve(replica, site_key)
    store = replica.trust_store
    now = now_ms()
    reads = read_scope_of(store, key, now, replica.reference)
    cert = None if store is None else store.certificates.get(key)
    rev = None if store is None else store.revocations.get(key)
    doc: dict[str, Any] = {
        "site": key,
        "mode": "open" if store is None else "certified",
        "authority": store is not None and key in store.authorities,
        "certificate": None
        if cert is None
        else {
            "label": cert.label,
            "collections": list(cert.collections),
            "prefixes": list(cert.prefixes),
            "read": scope_field(cert.read_scope),
            "valid_from": iso_ms(cert.valid_from or None),
            "valid_until": iso_ms(cert.valid_until),
        },
        "revoked": rev is not None,
        "reads": scope_text(reads),
        "reference": list(replica.reference),
    }
    if state.json:
        emit_json(doc)
        return
    names = state.names(replica)
    out.print(f"site {escape(short(key, names))}: {key.hex()}")
    if store is None:
        out.print("open mode: every key reads everything here")
        return
    if doc["authority"]:
        out.print("an authority: reads everything")
    elif cert is None:
        out.print("[red]no certificate[/]: reads nothing")
    else:
        writes = ",".join(cert.prefixes) or "any key"
        out.print(f"writes {escape(','.join(cert.collections))} ({escape(writes)})")
        out.print(f"certificate reads {escape(scope_text(cert.read_scope))}")
    if rev is not None:
        out.print(f"[red]revoked[/]: {escape(rev.reason)}")
    out.print(f"reads here now: {escape(doc['reads'])}")


@cli.group(cls=Group)
def attest() -> None:
    """Signed tokens for provisional cards: "this site recorded this", checkable offline."""


@attest.command("issue")
@click.argument("collection")
@click.argument("key")
@json_option
@pass_state
def attest_issue(state: State, collection: str, key: str) -> None:
    """A token for this site's latest change of COLLECTION/KEY (print it as a QR code)."""
    token = make_token(state.replica(), collection, key)
    att = read_attestation(token)
    if state.json:
        emit_json({"token": to_text(token), "origin": att.origin, "seq": att.seq})
    else:
        click.echo(to_text(token))


@attest.command("check")
@click.argument("token")
@click.option("--centre", metavar="PEER", help="Also say whether this centre holds it.")
@click.option("--fields", "fields_json", metavar="JSON", help="The fields on the card.")
@json_option
@pass_state
def attest_check(state: State, token: str, centre: str | None, fields_json: str | None) -> None:
    """Verify a token against this site's trust store (offline); exit 3 if it fails.

    With --fields, the fields printed on the card must be the attested ones. With
    --centre, the centre's newest receipt heard here says whether it holds the change.
    """
    replica = state.replica()
    raw = from_text(token.strip())
    fields = parse_fields((), fields_json) if fields_json else None
    att = verify_attestation(raw, replica.trust_store, fields=fields)
    doc: dict[str, Any] = {
        "valid": True,
        "origin": att.origin,
        "seq": att.seq,
        "collection": att.collection,
        "key": att.key,
        "recorded": iso_ms(att.recorded_ms),
        "trust_checked": replica.trust_store is not None,
        "fields_checked": fields is not None,
    }
    if centre:
        key = state.resolve(replica, centre)
        receipt = replica.receipts().get(key)
        doc["at_centre"] = receipt is not None and delivered(raw, receipt, centre=key)
    if state.json:
        emit_json(doc)
        return
    out.print(
        f"[green]valid[/]: {escape(att.collection)}/{escape(att.key)} recorded by"
        f" {escape(short(att.origin, state.names(replica)))} (change {att.seq}) at"
        f" {ms_text(att.recorded_ms)}"
    )
    if not doc["trust_checked"]:
        out.print("[yellow]note:[/] open mode: the signature is checked, not the certificate")
    if "at_centre" in doc:
        out.print("reached the centre" if doc["at_centre"] else "not yet known at the centre")
