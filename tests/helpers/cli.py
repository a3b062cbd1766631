"""Running the real ``offsync`` command in a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
OFFSYNC = BIN / "offsync"
PASSPHRASE = "kare-klecorejo-2021"


def command() -> list[str]:
    """The installed entry point, or the module when the script is not installed."""
    return [str(OFFSYNC)] if OFFSYNC.exists() else [sys.executable, "-m", "offsync.cli"]


#: Runs ``argv[1:]`` with SIGINT at its default action, as a terminal starts a command.
#: A shell's background job ignores SIGINT, and an ignored signal stays ignored across
#: exec: started from one, a command would never see the test's Ctrl-C.
_DEFAULT_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def as_from_a_terminal(argv: list[str]) -> list[str]:
    """``argv`` started with SIGINT at its default action (tests that send Ctrl-C)."""
    return [sys.executable, "-c", _DEFAULT_SIGINT, *argv]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFSYNC_")}
    env.update(
        OFFSYNC_PASSPHRASE=PASSPHRASE,
        OFFSYNC_INSECURE_FAST_KDF="1",  # cheap argon2id for key files: tests only
        COLUMNS="200",
        **extra,
    )
    return env


class Shell:
    """Runs ``offsync`` in one working directory; checks exit codes."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        self.env = environment(**env)

    def run(
        self, *args: str, code: int = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*command(), *args],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, (
            f"offsync {' '.join(args)}: exit {done.returncode}, wanted {code}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.run(*args, "--json", code=code).stdout)

    def init(self, name: str, *args: str) -> str:
        """Create a site directory (open mode unless ``args`` name an authority);
        returns its public key in hex."""
        if not {"--trust", "--authority", "--open"} & set(args):
            args = (*args, "--open")
        doc = self.json("init", name, "--label", name, *args)
        key: str = doc["public_key"]
        return key


class InProcess(Shell):
    """The same command, invoked in this process through click's test runner.

    Much cheaper than a subprocess (no interpreter start, no imports), for the many small
    checks of arguments, output and exit codes; the flows run the real script.
    """

    def run(
        self, *args: str, code: int = 0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        from click.testing import CliRunner

        from offsync.cli import cli

        previous = Path.cwd()
        os.chdir(self.cwd)
        try:
            unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("OFFSYNC_")}
            result = CliRunner().invoke(
                cli,
                list(args),
                env={
                    **unset,
                    **{k: v for k, v in self.env.items() if k.startswith("OFFSYNC_")},
                    **(env or {}),
                },
                catch_exceptions=False,
            )
        finally:
            os.chdir(previous)
        done = subprocess.CompletedProcess(
            ["offsync", *args], result.exit_code, result.stdout, result.stderr
        )
        assert done.returncode == code, (
            f"offsync {' '.join(args)}: exit {done.returncode}, wanted {code}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
        return done


@contextmanager
def serving(sh: Shell, site: str, *options: str) -> Iterator[tuple[str, int]]:
    """``offsync serve --port 0 [options]`` in the background; yields its URL and process
    id; stops it with SIGTERM (and fails if it does not stop)."""
    proc = subprocess.Popen(
        [*command(), "--site", site, "serve", "--port", "0", *options],
        cwd=sh.cwd,
        env=sh.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=60)
        assert ready, "offsync serve printed nothing within 60 s"
        line = proc.stdout.readline()
        assert line.startswith("serving "), line + (proc.stderr.read() if proc.stderr else "")
        yield line.split()[-1], proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("offsync serve did not stop on SIGTERM") from None
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
