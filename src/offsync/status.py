"""The status of a held segment: applied, or why it is held back (quarantine).

A status is a kind (an enum that control flow reads) and a detail (text for people).
Its string form, ``"<kind>: <detail>"`` or ``"applied"``, is what stores keep and what
``Replica.quarantined()`` shows, byte for byte as before the kinds were values, so
``Status.parse(str(s)) == s``. Details never name a record key or a field value
(keys are personal data: NIKs).

What each kind means for the segment's changes:

=============  =============================================================
``applied``    every change is applied
``fork``       none is applied, ever (evidence of an origin that forked)
``clock``      none is applied until the wall clock catches up
``trust``      per change: the signer's certificate or revocation decides
``validity``   per change: outside the signer's certificate's validity period
``scope``      per change: outside the collections or prefixes it may write
``validator``  per change: the deployment's validator for the collection refused
``schema``     per change: written under a schema version newer than this replica's
               (format 3, docs/spec.md §10.2; ``offsync.schemas``)
=============  =============================================================

``error_class`` maps a status to the error that refusing such data raises (one table,
``ERRORS``). This module is sans-IO.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import (
    ExpiredCertificateError,
    ForkError,
    RemoteDataError,
    RevokedKeyError,
    SchemaVersionError,
    ScopeError,
    StorageError,
    UnknownSignerError,
    UsageError,
)

__all__ = [
    "APPLIED",
    "CLOCK_AHEAD",
    "ERRORS",
    "FORK_AT_SAME_SEQS",
    "Kind",
    "Status",
    "error_class",
]


class Kind(enum.Enum):
    """What a status says about a segment's changes (see the module's table)."""

    APPLIED = "applied"
    FORK = "fork"
    CLOCK = "clock"
    TRUST = "trust"
    VALIDITY = "validity"
    SCOPE = "scope"
    VALIDATOR = "validator"
    SCHEMA = "schema"


#: Kinds under which no change of the segment is applied, whatever each change says.
_WHOLE = frozenset({Kind.FORK, Kind.CLOCK})


@dataclass(frozen=True, slots=True)
class Status:
    """A segment's status: its kind and, unless applied, the detail of why it is held."""

    kind: Kind
    detail: str = ""

    def __post_init__(self) -> None:
        if (self.kind is Kind.APPLIED) != (not self.detail):
            raise UsageError("a status has a detail exactly when it is not 'applied'")

    def __str__(self) -> str:
        if self.kind is Kind.APPLIED:
            return Kind.APPLIED.value
        return f"{self.kind.value}: {self.detail}"

    @property
    def applied(self) -> bool:
        return self.kind is Kind.APPLIED

    @property
    def whole(self) -> bool:
        """Held back whole (fork, clock): no change of it applies, however each is judged;
        otherwise (trust and the rest) each change is admitted or refused on its own."""
        return self.kind in _WHOLE

    @classmethod
    def parse(cls, text: str) -> Status:
        """The status whose string form is ``text`` (as a store keeps it)."""
        known = _PARSED.get(text)
        if known is not None:
            return known
        name, sep, detail = text.partition(": ")
        try:
            kind = Kind(name)
            status = cls(kind, detail) if sep or kind is Kind.APPLIED else None
        except ValueError:
            status = None
        if status is None or str(status) != text:
            raise StorageError(
                f"the store holds a segment status this offsync does not know: {text!r}"
            )
        if len(_PARSED) < _PARSED_MAX:
            _PARSED[text] = status
        return status


APPLIED = Status(Kind.APPLIED)
CLOCK_AHEAD = Status(Kind.CLOCK, "timestamp too far in the future")
FORK_AT_SAME_SEQS = Status(Kind.FORK, "a different segment with the same seqs is held")

#: Parsed statuses by text: a store holds few distinct ones, read once per segment.
_PARSED: dict[str, Status] = {"applied": APPLIED}
_PARSED_MAX = 4096

#: The error that refusing data with a status raises: by (kind, detail), then by
#: (kind, None) for every detail of the kind. Applied data raises nothing.
ERRORS: dict[tuple[Kind, str | None], type[RemoteDataError]] = {
    (Kind.TRUST, "unknown signer"): UnknownSignerError,
    (Kind.TRUST, "key revoked"): RevokedKeyError,
    (Kind.TRUST, "key replaced by a newer key"): RevokedKeyError,
    (Kind.TRUST, None): ScopeError,  # "not an authority": writing what only authorities may
    (Kind.VALIDITY, None): ExpiredCertificateError,
    (Kind.SCOPE, None): ScopeError,
    (Kind.VALIDATOR, None): RemoteDataError,
    (Kind.FORK, None): ForkError,
    (Kind.CLOCK, None): RemoteDataError,
    (Kind.SCHEMA, None): SchemaVersionError,
}


def error_class(status: Status) -> type[RemoteDataError] | None:
    """The error class for refusing data held with ``status`` (None when applied)."""
    if status.applied:
        return None
    return ERRORS.get((status.kind, status.detail)) or ERRORS[status.kind, None]
