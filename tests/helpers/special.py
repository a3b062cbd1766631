"""Special files planted on a shared folder or a courier disk, for the transport tests.

A FIFO opened for reading blocks until a writer comes; ``/dev/zero`` never ends. Tests
that read such entries run under ``no_hang``: if the code under test blocks, the alarm
interrupts the blocked call and the test fails instead of hanging the suite.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

#: POSIX only: FIFOs, symbolic links to devices and SIGALRM.
posix_only = pytest.mark.skipif(
    not hasattr(os, "mkfifo") or not hasattr(signal, "SIGALRM") or not Path("/dev/zero").exists(),
    reason="FIFOs, /dev/zero and SIGALRM are POSIX",
)

#: Seconds before a blocked read counts as hung: far beyond any round of these tests.
HANG_SECONDS = 60


@contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"still blocked after {seconds} s: a read that never ends")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def bundle_like_name() -> str:
    """A name a reader takes for a bundle: 32 hex digits and ``.ofb``."""
    return secrets.token_hex(16) + ".ofb"


def plant(directory: Path, names: list[str], elsewhere: Path) -> dict[str, Path]:
    """Under ``names[0..2]`` in ``directory``: a FIFO, a link to /dev/zero and a link to a
    FIFO (made in ``elsewhere``), dated in 2001 so a reader meets them first."""
    directory.mkdir(parents=True, exist_ok=True)
    elsewhere.mkdir(parents=True, exist_ok=True)
    fifo, zero, to_fifo = (directory / n for n in names)
    os.mkfifo(fifo)
    os.symlink("/dev/zero", zero)
    target = elsewhere / f"pipe-{secrets.token_hex(4)}"
    os.mkfifo(target)
    os.symlink(target, to_fifo)
    for path in (fifo, zero, to_fifo):
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    return {"fifo": fifo, "zero": zero, "to_fifo": to_fifo}


def device(path: Path) -> bool:
    """A character device like /dev/zero at ``path``, where this process may make one
    (root with CAP_MKNOD); False where it may not (the link to /dev/zero stands in)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except (OSError, AttributeError):
        return False
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return True
