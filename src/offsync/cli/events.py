"""What a command logs (logger ``offsync.cli``): its failures, and what each sync round
did. Sites are named by their key's short id and label; never a record's key or value
(``offsync.logs``), so a failure is logged with its class and exit code, and with its
message only when that cannot repeat what was typed (a usage error may hold a NIK)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..logs import event, short_key
from .exits import EXIT_USAGE

if TYPE_CHECKING:
    from ..sync import SyncReport

__all__ = ["LOGGER", "failed", "rounds"]

LOGGER = logging.getLogger("offsync.cli")


def failed(command: str, code: int, error: str, message: str) -> None:
    """A command that ends with exit ``code`` (not 0)."""
    event(
        LOGGER,
        logging.ERROR if code != EXIT_USAGE else logging.WARNING,
        "command.failed",
        command=command,
        exit=code,
        error=error,
        reason=None if code == EXIT_USAGE else message,
    )


def rounds(reports: Sequence[SyncReport], names: Mapping[bytes, str]) -> None:
    """One event per sync round; one per bundle received (debug) and refused."""
    for r in reports:
        peer = {"peer": short_key(r.peer), "label": names.get(r.peer)} if r.peer else {}
        event(
            LOGGER,
            logging.INFO,
            "sync.round",
            **peer,
            received_bundles=len(r.received),
            applied=r.applied,
            duplicates=r.duplicates,
            quarantined=r.quarantined,
            conflicts=len(r.conflicts),
            refused=len(r.refused),
            sent_bundles=r.sent_bundles,
            sent_changes=r.sent_changes,
            sent_bytes=r.sent_bytes,
        )
        for a in r.received:
            event(
                LOGGER,
                logging.DEBUG,
                "bundle.applied",
                bundle=a.bundle_id.hex(),
                sender=short_key(a.sender),
                label=names.get(a.sender),
                applied=a.applied,
                duplicates=a.duplicates,
                quarantined=a.quarantined,
                conflicts=len(a.conflicts),
            )
        for x in r.refused:
            event(LOGGER, logging.WARNING, "bundle.refused", source=x.source, reason=x.reason)
