"""Pull answers' frames: the incremental decoder, fed bytes however they arrive."""

from __future__ import annotations

import pytest

from offsync.errors import LimitExceededError, UsageError
from offsync.http.frames import (
    END_OF_STREAM,
    MORE_AVAILABLE,
    BundleFrame,
    EndOfAnswer,
    FrameDecoder,
    encode_frame,
    end_frame,
)


def answer(bundles: list[bytes], more: bool = False) -> bytes:
    return b"".join(map(encode_frame, bundles)) + end_frame(more)


def test_known_answer_bytes() -> None:
    """docs/spec.md §15.3: u32 big-endian length, then the bundle; 0 or 2**32-1 end."""
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert end_frame(more=False) == END_OF_STREAM.to_bytes(4, "big") == b"\x00\x00\x00\x00"
    assert end_frame(more=True) == MORE_AVAILABLE.to_bytes(4, "big") == b"\xff\xff\xff\xff"


def test_an_empty_bundle_cannot_be_framed() -> None:
    """Its length would read as the end of the answer."""
    with pytest.raises(UsageError):
        encode_frame(b"")


def test_it_waits_for_more_bytes_and_never_guesses() -> None:
    decoder = FrameDecoder(max_frame=100)
    data = answer([b"hello"])  # 9 bytes of frame, 4 of end marker
    seen = []
    for byte in data[:-1]:
        decoder.receive(bytes([byte]))
        seen.append(decoder.next_event())
    assert seen == [None] * 8 + [BundleFrame(b"hello")] + [None] * 3
    assert decoder.end is None  # a stream that stops here was broken in transit
    assert list(decoder.events(data[-1:])) == [EndOfAnswer(more=False)]


def test_a_frame_over_the_limit_is_refused_from_its_length() -> None:
    """Before its bytes arrive: a hostile length cannot make the client buffer 4 GiB."""
    decoder = FrameDecoder(max_frame=1000)
    decoder.receive((1001).to_bytes(4, "big"))
    with pytest.raises(LimitExceededError, match="a bundle of 1001 bytes, over the limit of 1000"):
        decoder.next_event()


def test_nothing_after_the_end_is_read() -> None:
    decoder = FrameDecoder(max_frame=100)
    events = list(decoder.events(end_frame(more=True) + encode_frame(b"trailing")))
    assert events == [EndOfAnswer(more=True)]
    assert decoder.next_event() is None
    with pytest.raises(UsageError):
        decoder.receive(b"more")
