"""offsync: keep registries working when the network does not.

The protocol core (``encoding``, ``clock``, ``identity``, ``knowledge``, ``change``,
``segment``, ``bundle``, ``receipt``, ``policies``, ``limits``, ``errors``, ``trust``,
``attest``, ``httpwire``, ``status``, ``schemas``, ``segindex``, the planners in ``plan``
and the byte-level modules of ``offsync.http``) is sans-IO: it turns bytes into values and values into bytes and decides merges, what to
apply, seal and send, and never touches a file, socket or database. ``Replica`` runs
its plans against a store; transports, the HTTP server and the command line sit around
that.
"""

from . import policies
from .attest import Attestation, attest, delivered, verify_attestation
from .bundle import FORMAT_VERSION, Bundle, BundleHeader, open_bundle, read_header
from .change import Change, ChangeId
from .errors import OffsyncError
from .identity import Identity, PublicIdentity
from .knowledge import Knowledge
from .limits import Limits
from .receipt import Receipt
from .replica import (
    ApplyReport,
    Conflict,
    HistoryEntry,
    Quarantined,
    QuarantinedChange,
    Replica,
    SeqClaim,
)
from .schemas import Schema, Schemas
from .scope import Partition, PartitionRule, Scope, Stream
from .sync import SyncReport, sync
from .trust import Certificate, Revocation, TrustStore, issue_certificate, revoke

__version__ = "0.1.0"

__all__ = [
    "FORMAT_VERSION",
    "ApplyReport",
    "Attestation",
    "Bundle",
    "BundleHeader",
    "Certificate",
    "Change",
    "ChangeId",
    "Conflict",
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
