"""Pins the public names of ``offsync``: adding or removing one is a deliberate act.

To add a name: add it to ``offsync.__all__`` and to ``PUBLIC`` below (both sorted).
"""

from __future__ import annotations

import offsync

# One sorted list (the order ``sorted()`` gives: upper case before lower case).
PUBLIC = [
    "ApplyReport",
    "Attestation",
    "Bundle",
    "BundleHeader",
    "Certificate",
    "Change",
    "ChangeId",
    "Conflict",
    "FORMAT_VERSION",
    "HistoryEntry",
    "Identity",
    "Knowledge",
    "Limits",
    "OffsyncError",
    "Partition",
    "PartitionRule",
    "PublicIdentity",
    "Quarantined",
    "QuarantinedChange",
    "Receipt",
    "Replica",
    "Revocation",
    "Schema",
    "Schemas",
    "Scope",
    "SeqClaim",
    "Stream",
    "SyncReport",
    "TrustStore",
    "__version__",
    "attest",
    "delivered",
    "issue_certificate",
    "open_bundle",
    "policies",
    "read_header",
    "revoke",
    "sync",
    "verify_attestation",
]


def test_pinned_list_is_sorted() -> None:
    assert sorted(PUBLIC) == PUBLIC


def test_all_is_pinned() -> None:
    assert sorted(offsync.__all__) == PUBLIC
    assert len(set(offsync.__all__)) == len(offsync.__all__), "duplicate names in __all__"


def test_every_name_is_importable() -> None:
    namespace: dict[str, object] = {}
    exec("from offsync import *", namespace)
    for name in PUBLIC:
        assert getattr(offsync, name) is not None
        assert name in namespace or name.startswith("_")


def test_errors_share_one_root() -> None:
    from offsync import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), offsync.OffsyncError)
