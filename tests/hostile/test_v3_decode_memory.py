"""What the format-3 decoders may allocate on hostile input, measured in a child process.

The same method and bounds as tests/hostile/test_decode_memory.py (format 2): each case hands
one decoder a hostile input in a fresh interpreter and reads that interpreter's peak
resident memory; the growth must stay within a bound stated per case plus ``SLACK``.
The new shapes are here: stream-keyed knowledge (an entry per partition), receipts
and headers holding it, a redacted segment's redaction (an array of erased rows), a
block whose skeleton has the new columns, and tokens of version 2.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from offsync.bundle import frame_bundle
from offsync.change import PUT, Change
from offsync.encoding import packb
from offsync.identity import Identity
from offsync.knowledge import Knowledge
from offsync.receipt import Receipt
from offsync.scope import Partition, Stream
from offsync.segment import NO_PREVIOUS, Segment, decode_segment
from tests.helpers.memory import BUDGET, SLACK, MiB, array_of, peak_growth

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures with Linux /proc (VmHWM)"
)

MALLORY = Identity(bytes([7]) * 32, "mallory")
P = Partition("c", "")


def _frame(data: bytes) -> bytes:
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=20, write_content_size=True
    )
    return zstandard.ZstdCompressor(compression_params=params).compress(data)


def bundle_around(segments: list[bytes], *, body: bytes | None = None) -> bytes:
    """A format-3 bundle validly signed by MALLORY around any segments (or any body)."""
    ranges = Knowledge()
    for raw in segments:
        seg = decode_segment(raw)
        ranges = ranges.with_range(seg.stream, seg.first_seq, seg.last_seq)
    header = {
        "created": 1,
        "ranges": ranges.to_wire(),
        "receipts": [Receipt.issue(MALLORY, 1, Knowledge()).encode()],
        "recipient": None,
        "relays_for": [],
        "segments": len(segments),
        "sender": MALLORY.public_key,
    }
    return frame_bundle(MALLORY, packb(header), packb(segments) if body is None else body)


def block_bundle(block: bytes, count: int = 1) -> bytes:
    segment = Segment.seal_block(MALLORY, P, 1, count, _frame(block), bytes(32), NO_PREVIOUS)
    return bundle_around([segment.encode()])


OPEN = """
from offsync.bundle import open_bundle
"""
OPEN_RUN = """
for segment in open_bundle(data).segments:
    segment.verify()
    segment.open_changes()
"""


def empty_arrays_block() -> bytes:
    """A bundle whose block is 8 MiB of empty arrays (756 bytes on the wire)."""
    return block_bundle(array_of(8 * MiB, b"\x90"))


def repeating_block() -> bytes:
    """100 000 puts of one 600-byte value, canonically dictionary-coded: within what
    rebuilt maps may repeat (64 MiB), over half of max_decode_bytes."""
    n = 100_000
    block = packb(
        [
            [
                [1] + [0] * (n - 1),
                [0] + [1] * (n - 1),
                ["k"] + [""] * (n - 1),
                [0] * n,
                [[]] * n,
                [0] * n,
                [],
                [None] * n,
            ],
            [[["name"]], [0] * n, [[[["x" * 600], bytes(n)]]]],
            bytes(32),
        ]
    )
    return block_bundle(block, n)


def nested_maps_block() -> bytes:
    """A block whose one column holds 8 MiB of one-entry maps nested 500 deep."""
    chain = b"\x81\xa0" * 500 + b"\x80"
    count = 8 * MiB // len(chain)
    return block_bundle(b"\xdd" + count.to_bytes(4, "big") + chain * count)


def hostile_knowledge() -> bytes:
    """4 MiB of stream entries: 40 000 origins of 5 one-interval partitions each."""
    parts = b"\x95" + b"".join(
        b"\x93\xa1c\xa1" + bytes([48 + i]) + b"\x92\x01\x01" for i in range(5)
    )
    entries = [b"\x92\xc4\x20" + i.to_bytes(32, "big") + parts for i in range(1, 40_001)]
    return b"\xdd" + len(entries).to_bytes(4, "big") + b"".join(entries)


def hostile_receipt() -> bytes:
    """A 4 MiB receipt whose knowledge is four million empty arrays."""
    wire = array_of(4 * MiB - 128, b"\x90")
    return b"\x94\xc4\x20" + bytes(32) + b"\x01" + wire + b"\xc4\x40" + bytes(64)


def hostile_redaction() -> bytes:
    """A redacted segment whose erased rows are four million fixints."""
    head = packb([MALLORY.public_key, "c", "", 1, 5, NO_PREVIOUS, bytes(32), bytes(32), bytes(64)])
    erased = array_of(4 * MiB, b"\x01")
    return b"\x9a" + head[1:] + b"\x94\xc4\x00" + erased + b"\xc4\x00\xc4\x00"


def hostile_header() -> bytes:
    """A 4 MiB header of empty arrays, its signature wrong (decoded before it is checked)."""
    header = b"\x81\xa6ranges" + array_of(4 * MiB - 16, b"\x90")
    return frame_bundle(MALLORY, header, packb([]))[:-64] + bytes(64)


def hostile_token() -> bytes:
    return b"\x99" + b"\x9f" * 1000 + b"\x90" * 23


def big_valid_bundle() -> bytes:
    """A valid 16 MiB format-3 bundle: 32 photos, each the first segment of its own
    stream (partition ("photos", "p<n>"))."""
    noise = random.Random(10)
    segments = []
    for n in range(1, 33):
        photo = noise.randbytes(512 * 1024)  # as incompressible as a JPEG
        change = Change(
            MALLORY.public_key,
            1,
            n << 16,
            "photos",
            f"p{n}",
            PUT,
            packb({"jpeg": photo}),
            (),
            f"p{n}",
        )
        segments.append(Segment.seal(MALLORY, [change], NO_PREVIOUS, 1).encode())
    return bundle_around(segments)


REFUSED = ("LimitExceededError", "BundleFormatError", "SignatureError")

CASES: dict[str, tuple[Callable[[], bytes], str, str, tuple[str, ...], int]] = {
    "v3 bundle: block of 8 MiB of empty arrays": (
        empty_arrays_block,
        OPEN,
        OPEN_RUN,
        REFUSED,
        8 * MiB,
    ),
    "v3 bundle: 100 000 puts repeating one 600-byte value": (
        repeating_block,
        OPEN,
        OPEN_RUN,
        REFUSED,
        BUDGET // 2,
    ),
    "v3 bundle: block of 8 MiB of nested one-entry maps": (
        nested_maps_block,
        OPEN,
        OPEN_RUN,
        REFUSED,
        8 * MiB + BUDGET,
    ),
    "v3 knowledge: 4 MiB of stream entries": (
        hostile_knowledge,
        "from offsync.knowledge import Knowledge",
        "Knowledge.from_bytes(data)",
        REFUSED,
        4 * MiB + BUDGET,
    ),
    "v3 receipt: 4 MiB of empty arrays": (
        hostile_receipt,
        "from offsync.receipt import Receipt",
        "Receipt.decode(data)",
        REFUSED,
        4 * MiB + BUDGET,
    ),
    "v3 redacted segment: 4 million erased rows": (
        hostile_redaction,
        "from offsync.segment import decode_segment",
        "decode_segment(data)",
        REFUSED,
        4 * MiB,
    ),
    "v3 bundle header: 4 MiB of empty arrays, before the signature": (
        hostile_header,
        "from offsync.bundle import read_header",
        "read_header(data)",
        REFUSED,
        2 * 4 * MiB,
    ),
    "v3 token: 1 KiB of nested arrays": (
        hostile_token,
        "from offsync.attest import read_attestation",
        "read_attestation(data)",
        REFUSED,
        0,
    ),
    "v3 bundle: valid, 16 MiB of photos": (big_valid_bundle, OPEN, OPEN_RUN, ("ok",), 5 * 16 * MiB),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_refused_within_its_memory_bound(tmp_path: Path, name: str) -> None:
    build, setup, run, outcomes, bound = CASES[name]
    data = build()
    growth, outcome = peak_growth(tmp_path, data, setup, run)
    assert outcome.startswith(outcomes), outcome
    assert growth <= bound + SLACK, (
        f"{name}: {len(data)} bytes grew the decoder by {growth / MiB:.0f} MiB, "
        f"over {(bound + SLACK) / MiB:.0f} MiB"
    )


def test_the_hostile_inputs_are_what_they_say() -> None:
    """Each input reaches the decoder it targets (not refused earlier for another
    reason): the knowledge entries are well-formed streams, the redaction a real
    redacted form, the repeating block canonical up to its memory bound."""
    from offsync.columns import decode_block
    from offsync.errors import LimitExceededError
    from offsync.limits import Limits

    wide = Limits(max_decode_bytes=1 << 34)
    assert Knowledge.from_bytes(hostile_knowledge(), wide).stream_count() == 200_000
    with pytest.raises(LimitExceededError, match="max_decode_bytes"):
        Knowledge.from_bytes(hostile_knowledge())
    repeating = zstandard.ZstdDecompressor().decompress(
        decode_segment(_segments_of(repeating_block())[0]).block  # type: ignore[union-attr]
    )
    with pytest.raises(LimitExceededError, match="half of max_decode_bytes"):
        decode_block(repeating, MALLORY.public_key, P, 1)
    assert len(decode_block(repeating, MALLORY.public_key, P, 1, wide).changes) == 100_000
    assert Stream(MALLORY.public_key, P)


def _segments_of(bundle: bytes) -> list[bytes]:
    from offsync.bundle import read_header
    from offsync.unpack import unpack

    _, body = read_header(bundle)
    return unpack(body, "body")  # type: ignore[no-any-return]
