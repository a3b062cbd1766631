"""The ``offsync`` group: global options, ``--json``, and library errors as exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import OffsyncError
from ..logs import FORMATS, LEVELS, install
from . import events
from .exits import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
    classify,
    from_os_error,
    show_error,
)
from .site import State

F = TypeVar("F", bound=Callable[..., Any])


class Group(click.Group):
    """A group that turns library errors into messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            try:
                return super().invoke(ctx)
            except OffsyncError as exc:
                raise classify(exc) from exc
            except OSError as exc:
                raise from_os_error(exc) from exc
        except (CommandError, click.exceptions.Exit) as exc:
            # Logged here, while the command's log handler is still installed; once,
            # by the innermost group (``disk import``).
            if exc.exit_code and not getattr(exc, "offsync_logged", False):
                exc.offsync_logged = True  # type: ignore[union-attr]
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                message = exc.message if isinstance(exc, CommandError) else ""
                events.failed(_command(ctx), exc.exit_code, type(cause).__name__, message)
            raise

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's ``main``, with every error in one shape (``show_error``: click's own
        usage errors too) and Ctrl-C as exit 130 with one line, not 1 and "Aborted!"."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            show_error(exc.format_message(), _usage_hint(exc.ctx))
            sys.exit(exc.exit_code)
        except CommandError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            show_error(exc.format_message())
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt, EOFError) as exc:
            if isinstance(exc, EOFError) or isinstance(exc.__cause__, EOFError):
                show_error("the input ended before the prompt was answered")
                sys.exit(EXIT_USAGE)
            show_error("interrupted (Ctrl-C)")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(result if isinstance(result, int) else 0)


def _command(ctx: click.Context) -> str:
    """The command being run (``sync``, ``disk import``), without the program's name."""
    words = ctx.command_path.split()[1:]
    if ctx.invoked_subcommand:
        words.append(ctx.invoked_subcommand)
    return " ".join(words)


def _usage_hint(ctx: click.Context | None) -> str:
    path = ctx.command_path if ctx is not None else "offsync"
    return f"`{path} --help` shows the usage"


def state_of(ctx: click.Context) -> State:
    obj = ctx.find_object(State)
    assert obj is not None
    return obj


def json_option(fn: F) -> F:
    """``--json`` on every command (also accepted before the command name)."""

    def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            state_of(ctx).json = True

    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=False,
        callback=set_json,
        help="Print one JSON document on stdout (for scripts).",
    )(fn)


pass_state = click.make_pass_decorator(State)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-s",
    "--site",
    "site_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="OFFSYNC_SITE",
    default=".",
    show_default=True,
    help="The site directory (env OFFSYNC_SITE).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    envvar="OFFSYNC_PASSPHRASE_FILE",
    help="Read the key passphrase from this file (else env OFFSYNC_PASSPHRASE, else a prompt).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON output for scripts.")
@click.option(
    "--log-format",
    type=click.Choice(FORMATS, case_sensitive=False),
    envvar="OFFSYNC_LOG_FORMAT",
    help="Log events as text or JSON lines (env OFFSYNC_LOG_FORMAT) [default: text].",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    envvar="OFFSYNC_LOG_LEVEL",
    help="Least level logged (env OFFSYNC_LOG_LEVEL) [default: info]. Without a log "
    "option only `serve` logs.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="OFFSYNC_LOG_FILE",
    help="Append log events to this file instead of stderr (env OFFSYNC_LOG_FILE).",
)
@click.version_option(package_name="offsync")
@click.pass_context
def cli(
    ctx: click.Context,
    site_dir: Path,
    passphrase_file: Path | None,
    as_json: bool,
    log_format: str | None,
    log_level: str | None,
    log_file: Path | None,
) -> None:
    """offsync: keep a registry site working offline and deliver its changes later.

    Exit codes: 0 done, 1 local failure, 2 usage, 3 refused input, 4 transport failure,
    130 interrupted.

    Log events (what was synced with whom, refusals, failures; never a record's key or
    value) go to stderr, or to --log-file (docs/operations.md, "Logs").
    """
    state = State(site_dir, passphrase_file, as_json, log_format, log_level, log_file)
    ctx.obj = state
    if log_format or log_level or log_file:
        # Without a log option a command logs nothing: its messages say it all.
        state.log_undo = install(log_format or "text", log_level or "info", file=log_file)
        state.cleanups.append(state.log_undo)

    def close() -> None:
        for cleanup in reversed(state.cleanups):
            cleanup()

    ctx.call_on_close(close)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``offsync`` script."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="offsync")


@cli.command(
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def demo(args: tuple[str, ...]) -> None:
    """Run the field demo (centre, district, three offices; see `offsync demo --help`)."""
    from ..demo import main as demo_main

    raise click.exceptions.Exit(demo_main(list(args)))
