"""Receipts: signed statements of what a replica holds.

A receipt is small, self-contained and verifiable by anyone, so relays pass on the
receipts they have received and a sub-district learns, through its district, what the
centre holds. A newer receipt (greater ``created`` HLC) from a replica replaces an older
one; knowledge only grows, so an old receipt is never wrong, only out of date.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import MAX_HLC
from .encoding import packb
from .errors import BundleFormatError, LimitExceededError, UsageError
from .identity import Identity, verify_signature
from .knowledge import Knowledge
from .limits import DEFAULT_LIMITS, Limits
from .unpack import Budget, unpack

__all__ = ["Receipt"]

RECEIPT_DOMAIN = b"offsync/receipt/v1\x00"


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
            raise UsageError("a receipt states a Knowledge")
        msg = cls._message(identity.public_key, created, knowledge)
        return cls(identity.public_key, created, knowledge, identity.sign(msg))

    def verify(self) -> None:
        verify_signature(
            self.replica, self._message(self.replica, self.created, self.knowledge), self.signature
        )

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
        # [replica, created, [[origin, [a1, b1, ...]], ...], signature]: four arrays deep.
        value = unpack(data, "receipt", limits, max_depth=4)
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
