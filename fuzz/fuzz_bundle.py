"""Coverage-guided fuzzing of everything a replica decodes from peers.

Run on demand (needs ``pip install atheris``, the ``fuzz`` extra)::

    python fuzz/fuzz_bundle.py -max_total_time=600 fuzz/corpus
    python fuzz/fuzz_bundle.py --make-corpus fuzz/corpus   # seed inputs first

The first byte of an input picks what the rest is fed to, so the fuzzer also reaches
the decoders behind the bundle signature (a random input almost never carries a valid
signature):

    0  raw bundle bytes                      -> Replica.apply
    1  a bundle body (array of segments)     -> wrapped in a validly signed bundle
    2  one encoded segment                   -> wrapped in a validly signed bundle
    3  the changes of a segment (columns,    -> compressed, sealed by the fuzzer's key,
       before compression)                      bundled
    4  a receipt                             -> Receipt.decode
    5  a knowledge statement                 -> Knowledge.from_bytes
    6  a segment block: a count byte, then   -> sealed as it is (count changes) by the
       the zstd frame                           fuzzer's key, bundled

Modes 3 and 6 reach the decoders behind a segment's signature: the columns (mode 3),
and the bounded zstd opening of a block (mode 6: bombs, windows, trailing bytes).

The invariant (``check``): an input either applies, or raises an ``offsync.errors``
``RemoteDataError`` and leaves the replica's visible state exactly as it was. Any
other exception is a bug. (What decoding may allocate is bounded by ``offsync.unpack``;
``tests/hostile/test_decode_memory.py`` measures it, which a fuzzer cannot.) ``tests/hostile/test_fuzz.py`` runs ``check`` under hypothesis,
and a short atheris run when atheris is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and "--make-corpus" not in sys.argv:
    # Coverage feedback from offsync's own code (instrumenting everything is slow).
    import atheris

    with atheris.instrument_imports(include=["offsync"]):
        import offsync.replica  # noqa: F401

import msgpack

from offsync import Identity, Knowledge, Limits, Receipt, Replica
from offsync.bundle import frame_bundle
from offsync.columns import decode_block
from offsync.compression import compress, decompress
from offsync.encoding import packb
from offsync.errors import RemoteDataError
from offsync.scope import Partition
from offsync.segment import NO_PREVIOUS, Segment, commitment_of, row_hashes, salts_of
from offsync.unpack import unpack

FUZZER = Identity(bytes([0xF0]) * 32, "fuzzer")
T0 = 1_700_000_000_000
LIMITS = Limits(max_block_bytes=1 << 20, max_segments=1000, max_segment_changes=1000)
MODES = 7
#: The partition of hand-sealed blocks (modes 3 and 6): the seed writer's one stream.
PARTITION = Partition("residents")


def _wrap(body: bytes, segments: int, ranges: Knowledge) -> bytes:
    header = packb(
        {
            "created": 1,
            "ranges": ranges.to_wire(),
            "receipts": [Receipt.issue(FUZZER, 1, Knowledge()).encode()],
            "recipient": None,
            "relays_for": [],
            "segments": segments,
            "sender": FUZZER.public_key,
        }
    )
    return frame_bundle(FUZZER, header, body)


def _ranges_of(raw_segments: list[bytes]) -> Knowledge:
    carried = Knowledge()
    for raw in raw_segments:
        try:
            seg = Segment.decode(raw, LIMITS)
        except RemoteDataError:
            continue
        carried = carried.with_range(seg.stream, seg.first_seq, seg.last_seq)
    return carried


def to_bundle(mode: int, data: bytes) -> bytes | None:
    """The bundle that input ``mode``/``data`` stands for (None: not a bundle mode)."""
    if mode == 0:
        return data
    if mode == 1:
        try:  # the harness reads fuzz input through the same bounded decoder
            items = unpack(data, "fuzz body", LIMITS, max_depth=1)
            raw = [x for x in items if type(x) is bytes] if type(items) is list else []
            count = len(items) if type(items) is list else 0
        except RemoteDataError:
            raw, count = [], 0
        return _wrap(data, count, _ranges_of(raw))
    if mode == 2:
        return _wrap(packb([data]), 1, _ranges_of([data]))
    if mode == 3:
        try:  # as many changes as the skeleton's first column (the HLCs) has items
            items = unpack(data, "fuzz columns", LIMITS)
            skeleton = items[0] if type(items) is list and items else None
            hlcs = skeleton[0] if type(skeleton) is list and skeleton else None
            count = len(hlcs) if type(hlcs) is list and hlcs else 1
        except RemoteDataError:
            count = 1
        return _sealed(compress(data, 3), count)
    if mode == 6:
        return _sealed(data[1:], data[0] or 1) if data else None
    return None


def _commitment(block: bytes) -> bytes:
    """The commitment a block's changes need (§6.3), so that a valid block applies;
    zeros for one that does not decode (it is refused before the commitment counts)."""
    try:
        plain = decompress(block, LIMITS.max_block_bytes, LIMITS, "fuzz block")
        decoded = decode_block(plain, FUZZER.public_key, PARTITION, 1, LIMITS)
    except RemoteDataError:
        return bytes(32)
    if decoded.secret is None:
        return bytes(32)
    fields = [c.fields for c in decoded.changes]
    hashes = row_hashes(salts_of(decoded.secret, len(fields)), fields)
    return commitment_of(packb(decoded.skeleton), hashes)


def _sealed(block: bytes, count: int) -> bytes:
    seg = Segment.seal_block(
        FUZZER, PARTITION, 1, count, block, _commitment(block), NO_PREVIOUS
    ).encode()
    return _wrap(packb([seg]), 1, _ranges_of([seg]))


class Target:
    """A replica holding a little data, fed one input at a time."""

    def __init__(self) -> None:
        self.replica = Replica.open(
            ":memory:", identity=Identity(bytes([0xCE]) * 32), limits=LIMITS, wall=lambda: T0
        )
        seed = Replica.open(":memory:", identity=Identity(bytes([0x5E]) * 32), wall=lambda: T0)
        seed.put("residents", "3519000000000000", {"name": "already here"})
        for b in seed.pack():
            self.replica.apply(b)

    def check(self, data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0] % MODES, data[1:]
        before = self.replica.state_digest()
        try:
            if mode == 4:
                Receipt.decode(rest, LIMITS)
            elif mode == 5:
                Knowledge.from_bytes(rest, LIMITS)
            else:
                bundle = to_bundle(mode, rest)
                if bundle is not None:  # None: mode 6 without even a count byte
                    self.replica.apply(bundle)
        except RemoteDataError:
            if self.replica.state_digest() != before:
                raise AssertionError("a refused input changed the replica") from None


def seeds() -> list[bytes]:
    """Valid inputs for every mode, to start the fuzzer from."""
    writer = Replica.open(":memory:", identity=Identity(bytes([0x5F]) * 32), wall=lambda: T0)
    writer.put("residents", "3519000000000001", {"name": "Siti", "born": 1990})
    writer.put("residents", "3519000000000002", {"vaccine": "x", "at": 1.5, "ok": True})
    writer.delete("residents", "3519000000000001")
    (bundle,) = writer.pack()
    body_at = 12 + int.from_bytes(bundle[8:12], "big") + 4
    body = bundle[body_at:-64]  # not compressed: an array of encoded segments
    segment = msgpack.unpackb(body)[0]
    sealed = Segment.decode(segment)
    columns = decompress(sealed.block, LIMITS.max_block_bytes, LIMITS, "seed block")
    return [
        b"\x00" + bundle,
        b"\x01" + body,
        b"\x02" + segment,
        b"\x03" + columns,
        b"\x04" + writer.receipt().encode(),
        b"\x05" + writer.knowledge().to_bytes(),
        b"\x06" + bytes([sealed.count]) + sealed.block,
    ]


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-corpus":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(seeds()):
            (out / f"seed-{i}").write_bytes(s)
        return
    import atheris

    target = Target()

    def one_input(data: bytes) -> None:
        target.check(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
