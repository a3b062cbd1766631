"""Receipts of format 3: signed, partial statements of what a replica holds.

A receipt says "I hold at least this": its issuer restricts it to what its reader
needs (the reader's own streams, the sites it relays for, its scope), so what travels
about knowledge is bounded by the receiver, not by the size of the deployment
(docs/spec.md §8). Knowledge only grows, so every receipt ever verified from a
replica stays true: a reader may take the union of all it holds from one issuer.
Anyone can verify a receipt, so relays carry them back to the sites behind them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .clock import MAX_HLC
from .encoding import packb
from .errors import BundleFormatError, LimitExceededError, UsageError
from .identity import Identity, verify_signature
from .knowledge import Knowledge
from .limits import DEFAULT_LIMITS, Limits
from .scope import Scope, Stream
from .unpack import Budget, unpack

__all__ = ["RECEIPT_DOMAIN", "Receipt", "statement_for"]

RECEIPT_DOMAIN = b"offsync/receipt/v3\x00"


@dataclass(frozen=True, slots=True)
class Receipt:
    replica: bytes
    created: int
    knowledge: Knowledge
    signature: bytes

    @staticmethod
    def _message(replica: bytes, created: int, knowledge: Knowledge) -> bytes:
        return RECEIPT_DOMAIN + packb([replica, created, knowledge.to_wire()])

    @classmethod
    def issue(cls, identity: Identity, created: int, knowledge: Knowledge) -> Receipt:
        # Not checked against 2^63 here: tests make such receipts to check decoders.
        if type(created) is not int or not 0 <= created < 1 << 64:
            raise UsageError("a receipt's created is an HLC, an unsigned 64-bit int")
        if not isinstance(knowledge, Knowledge):
            raise UsageError("a receipt states a v3 Knowledge")
        msg = cls._message(identity.public_key, created, knowledge)
        return cls(identity.public_key, created, knowledge, identity.sign(msg))

    def verify(self) -> None:
        verify_signature(
            self.replica, self._message(self.replica, self.created, self.knowledge), self.signature
        )

    def covers(self, stream: Stream, first: int, last: int) -> bool:
        """Whether this receipt states its issuer holds seqs ``first..last`` of ``stream``."""
        return self.knowledge.contains_range(stream, first, last)

    def encode(self) -> bytes:
        return packb([self.replica, self.created, self.knowledge.to_wire(), self.signature])

    @classmethod
    def decode(
        cls,
        data: bytes,
        limits: Limits = DEFAULT_LIMITS,
        *,
        verify: bool = True,
        budget: Budget | None = None,
    ) -> Receipt:
        """Parse and verify a receipt (untrusted input). ``verify=False`` is for receipts
        read back from a replica's own store, which were verified before they were kept.
        The knowledge it holds is charged to ``budget`` (see ``Knowledge.from_wire``)."""
        if type(data) is not bytes:
            raise BundleFormatError("a receipt is bytes")
        if len(data) > limits.max_header_bytes:
            raise LimitExceededError("receipt too large")
        # [replica, created, knowledge (five arrays deep), signature]: six arrays deep.
        value = unpack(data, "receipt", limits, max_depth=6)
        if type(value) is not list or len(value) != 4:
            raise BundleFormatError("a receipt is an array of 4 items")
        replica, created, wire, sig = value
        if not (
            type(replica) is bytes
            and len(replica) == 32
            and type(created) is int
            and 0 <= created <= MAX_HLC
            and type(sig) is bytes
            and len(sig) == 64
        ):
            raise BundleFormatError("receipt fields have the wrong types (created: [0, 2^63))")
        receipt = cls(replica, created, Knowledge.from_wire(wire, limits, budget), sig)
        if receipt.encode() != data:
            raise BundleFormatError("receipt is not canonically encoded")
        if verify:
            receipt.verify()
        return receipt


def statement_for(
    knowledge: Knowledge,
    *,
    reader: bytes,
    relays_for: Iterable[bytes] = (),
    scope: Scope | None = None,
    carried: Knowledge | None = None,
) -> Knowledge:
    """What of ``knowledge`` a receipt for ``reader`` states (docs/spec.md §8.2):
    the streams of the reader and of the sites it relays for, the streams of the
    reader's read ``scope`` unless that is everything (a centre learns the rest from
    the segments themselves), and the streams ``carried`` in the same bundle."""
    stated = knowledge.restrict_origins([reader, *relays_for])
    if scope is not None and not scope.is_everything:
        stated |= knowledge.restrict(scope)
    if carried:
        stated |= knowledge.only_streams(carried.streams())
    return stated
