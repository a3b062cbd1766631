"""What the commands print: rich consoles, JSON documents, times and progress bars.

Tables and messages go to stdout; progress bars, errors and hints to stderr, so that
with ``--json`` stdout holds exactly one JSON document.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console

from ..change import ChangeId
from ..clock import hlc_millis
from ..errors import UsageError
from ..scope import ANY_COLLECTION, TRUST_COLLECTION, Scope

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 120  # logs and pipes: wide enough that tables keep one line per row


def jsonable(value: Any) -> Any:
    """``value`` with bytes as hex, so that json can write it."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    """The one JSON document of a ``--json`` command, on stdout."""
    click.echo(json.dumps(jsonable(value), indent=2, sort_keys=True, ensure_ascii=False))


def json_text(value: Any, *, sort_keys: bool = True) -> str:
    """A field value or a record on one line, as in tables."""
    return json.dumps(jsonable(value), ensure_ascii=False, sort_keys=sort_keys)


def _utc(ms: int, fmt: str) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC).strftime(fmt)


def when(hlc: int) -> str:
    """An HLC timestamp as a UTC time to the second ("-" for none)."""
    return _utc(hlc_millis(hlc), "%Y-%m-%d %H:%M:%S UTC") if hlc else "-"


def ms_text(ms: int | None) -> str:
    """Milliseconds since 1970 as a UTC time to the minute ("-" for none)."""
    return "-" if ms is None else _utc(ms, "%Y-%m-%d %H:%M UTC")


#: Every time in ``--json`` output: ISO 8601, UTC, to the second.
ISO = "%Y-%m-%dT%H:%M:%SZ"


def iso_ms(ms: int | None) -> str | None:
    """Milliseconds since 1970 as an ISO 8601 UTC time for JSON (None for none)."""
    return None if ms is None else _utc(ms, ISO)


def iso_hlc(hlc: int) -> str | None:
    """An HLC timestamp as an ISO 8601 UTC time for JSON (None for none)."""
    return _utc(hlc_millis(hlc), ISO) if hlc else None


def now_ms() -> int:
    return int(_dt.datetime.now(tz=_dt.UTC).timestamp() * 1000)


def short(key: bytes, names: dict[bytes, str] | None = None) -> str:
    """A key as people read it: its label and short id where the label is known."""
    label = (names or {}).get(key)
    return f"{label} ({key[:6].hex()})" if label else key[:6].hex()


def head_name(head: ChangeId) -> str:
    """A change as operators type it back: ``ORIGIN-PREFIX:SEQ``."""
    return f"{head.origin[:6].hex()}:{head.seq}"


@contextmanager
def progress(quiet: bool, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr (only on a terminal, never when ``quiet``: with --json)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(
        *columns, console=err, transient=True, disable=quiet or not err.is_terminal
    ) as bar:
        task = bar.add_task(description, total=total)

        def step(n: int = 1) -> None:
            bar.advance(task, n)

        yield step


def scope_field(scope: Scope) -> dict[str, list[str]]:
    """A scope as a certificate's ``read`` field says it (``collection -> prefixes``,
    ``[]`` the whole collection, ``"*"`` every collection), for showing. A write scope
    of every collection (``"*"``) leaves out ``_trust``, which every certified site
    reads anyway, so it shows as ``"*"``; the prefixes every collection shares show
    under ``"*"``."""
    whole = scope | Scope.whole(TRUST_COLLECTION)
    if whole.is_everything:
        return {ANY_COLLECTION: []}
    try:
        return scope.to_read_field()
    except UsageError:
        pass
    out: dict[str, list[str]] = {}
    for collection in scope.collections():
        labels = scope.labels(collection)
        if any(labels.values()):
            out[collection] = sorted(p for p, on in labels.items() if on and p)
    others = sorted(p for p, on in scope.others.items() if on)
    if others:
        out[ANY_COLLECTION] = [p for p in others if p]
    return out


def scope_text(scope: Scope) -> str:
    """A read scope as ``--read`` takes it: ``residents=3201,3202; vaccine_lots``."""
    if scope.is_everything:
        return "everything"
    if not scope:
        return "nothing"
    field = scope_field(scope)
    return "; ".join(f"{c}={','.join(p)}" if p else c for c, p in field.items())
