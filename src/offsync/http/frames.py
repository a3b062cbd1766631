"""Pull answers: bundles in length-prefixed frames, encoded and decoded without I/O.

A pull answer is a stream of frames: a 4-byte big-endian length, then that many bytes
of one bundle. A length of ``END_OF_STREAM`` ends a complete answer; ``MORE_AVAILABLE``
ends an answer cut at the server's size limit (pull again with the grown knowledge). A
stream that stops without either was broken in transit.

``FrameDecoder`` is the reading side, in the manner of h11 and wsproto: the caller
feeds it whatever bytes arrived (``receive``) and takes events (``next_event``) until
it says it needs more; it never reads a socket, so the client and the tests drive it
alike, and a frame over the limit is refused from its length, before its bytes arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import LimitExceededError, UsageError

__all__ = [
    "END_OF_STREAM",
    "MORE_AVAILABLE",
    "BundleFrame",
    "EndOfAnswer",
    "FrameDecoder",
    "end_frame",
    "encode_frame",
]

END_OF_STREAM = 0
MORE_AVAILABLE = 0xFFFFFFFF
_LENGTH = 4


def encode_frame(bundle: bytes) -> bytes:
    """One bundle as a frame of a pull answer."""
    if not 0 < len(bundle) < MORE_AVAILABLE:
        raise UsageError("a framed bundle is 1 byte to 4 GiB - 2 long")
    return len(bundle).to_bytes(_LENGTH, "big") + bundle


def end_frame(more: bool) -> bytes:
    """The marker that ends an answer: complete, or cut short with ``more`` to pull."""
    return (MORE_AVAILABLE if more else END_OF_STREAM).to_bytes(_LENGTH, "big")


@dataclass(frozen=True, slots=True)
class BundleFrame:
    """One bundle of the answer, whole."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfAnswer:
    """The answer ended; ``more``: it was cut at the server's limit (pull again)."""

    more: bool


Event = BundleFrame | EndOfAnswer


class FrameDecoder:
    """Bundles out of the bytes of a pull answer, as they arrive.

    ``receive(data)`` buffers bytes; ``next_event()`` returns the next complete event,
    or None when it needs more bytes. After ``EndOfAnswer`` the answer is over: bytes
    fed with or after the marker are not part of it and are never looked at.
    """

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._need: int | None = None  # length of the frame being read, once known
        self.end: EndOfAnswer | None = None

    def receive(self, data: bytes) -> None:
        if self.end is not None:
            raise UsageError("the answer has ended; a decoder reads one answer")
        self._buffer += data

    def next_event(self) -> Event | None:
        if self.end is not None:
            return None
        buffer = self._buffer
        if self._need is None:
            if len(buffer) < _LENGTH:
                return None
            length = int.from_bytes(buffer[:_LENGTH], "big")
            del buffer[:_LENGTH]
            if length in (END_OF_STREAM, MORE_AVAILABLE):
                self.end = EndOfAnswer(more=length == MORE_AVAILABLE)
                return self.end
            if length > self.max_frame:
                raise LimitExceededError(
                    f"a bundle of {length} bytes, over the limit of {self.max_frame}"
                )
            self._need = length
        if len(buffer) < self._need:
            return None
        frame = BundleFrame(bytes(buffer[: self._need]))
        del buffer[: self._need]
        self._need = None
        return frame

    def events(self, data: bytes) -> Iterator[Event]:
        """Feed ``data``, then every event it completes."""
        self.receive(data)
        while (event := self.next_event()) is not None:
            yield event
