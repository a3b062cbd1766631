"""Key files on disk: the file around a site's sealed identity.

The key file's *format* belongs to the sans-IO core: ``Identity.to_bytes`` seals the
seed with a key stretched from the passphrase and ``Identity.from_bytes`` opens it
(bytes in, bytes out; docs/spec.md, §2.1 "Key files"). This module only moves those bytes
to and from a file, so that the core touches no file: written atomically (a temporary
file, fsync, rename) and readable by its owner only.

``Identity.save`` and ``Identity.load`` are the documented way for applications; they
import this module when called, so importing the core does not load it.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["KEY_FILE_MODE", "read_key_file", "write_key_file"]

#: Permissions of a key file: readable and writable by its owner only.
KEY_FILE_MODE = 0o600


def write_key_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Put a sealed key file's bytes at ``path``: written under ``<name>.tmp`` with mode
    0600, fsynced, then renamed over ``path``, so a crash leaves the old file or the
    new one, never half of one."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the key file at ``path`` (``OSError`` if it cannot be read); open
    them with ``Identity.from_bytes``."""
    return Path(path).read_bytes()
