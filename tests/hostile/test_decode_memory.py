"""What decoding untrusted msgpack may allocate: bounds, measured in a child process.

Small inputs used to decode into huge memory (issue 10, point 7): a 756-byte bundle
whose block is 8 MiB of empty arrays took +573 MB; an array header claiming 64M items
+563 MB; a 4 MiB header +274 MB before its signature was checked. Each test here hands
one decoder a hostile input in a fresh interpreter and reads that interpreter's peak
resident memory (``ru_maxrss``) before and after: the growth must stay within a bound
stated per case, a small multiple of the input plus ``SLACK``, and never reach the old
figures. These are bounds, not timings: the same input allocates the same objects on
every run.

Besides the listed attacks, ``test_worst_bytes_per_byte`` checks the figure the first
tier of ``offsync.unpack`` relies on: no pattern of msgpack bytes decodes to more than
``WORST_BYTES_PER_BYTE`` bytes of objects per byte.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from offsync import Identity
from offsync.bundle import frame_bundle
from offsync.encoding import packb
from offsync.segment import NO_PREVIOUS, Segment
from tests.helpers import ROOT
from tests.helpers.memory import BUDGET, SLACK, MiB, array_of, peak_growth
from tests.hostile.test_v3_decode_memory import block_bundle as v3_block_bundle
from tests.hostile.test_v3_decode_memory import bundle_around

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures with Linux /proc (VmHWM)"
)

MALLORY = Identity(bytes([7]) * 32, "mallory")
CENTRE = Identity(bytes([9]) * 32, "centre")


# -- hostile inputs ------------------------------------------------------------------------


def block_bundle(block: bytes) -> bytes:
    """A bundle with one segment, validly signed by MALLORY, whose block is ``block``
    compressed (zstd compresses repetitive hostile blocks to almost nothing)."""
    return v3_block_bundle(block)


APPLY_SETUP = """
from offsync import Identity, Replica
replica = Replica.open(":memory:", identity=Identity(bytes([9]) * 32, "centre"))
"""
APPLY = "replica.apply(data)"


def empty_arrays_block() -> bytes:
    """The issue's 756-byte bundle: its block is 8 MiB of empty arrays."""
    return block_bundle(array_of(8 * MiB, b"\x90"))


def many_arrays_block() -> bytes:
    """The same within every per-array limit: 8 arrays of 1M empty arrays each."""
    return block_bundle(b"\x98" + array_of(1 << 20, b"\x90") * 8)


def claimed_items_block() -> bytes:
    """An array header claiming 64M items, in a 64 MiB block of zero bytes."""
    return block_bundle(b"\xdd\x04\x00\x00\x00" + bytes(64 * MiB - 5))


def zeros_block() -> bytes:
    """63 arrays of 1M one-byte items: every array within the per-array limit."""
    return block_bundle(b"\xdc\x00\x3f" + array_of(1 << 20, b"\x00") * 63)


def nested_maps_block() -> bytes:
    """8 MiB of one-entry maps nested 500 deep, over and over: the densest pattern."""
    chain = b"\x81\xa0" * 500 + b"\x80"
    return block_bundle(
        b"\xdd" + (8 * MiB // len(chain)).to_bytes(4, "big") + chain * (8 * MiB // len(chain))
    )


def nested_body() -> bytes:
    """A 16 MiB bundle body of nested empty arrays (the issue's +1 GB): 167 arrays of
    100 000 empty arrays, each array within the segment count limit."""
    inner = b"\xdc\x00\xa7" + array_of(100_000, b"\x90") * 167
    return bundle_around([], body=inner)


def hostile_header() -> bytes:
    """A 4 MiB header of empty arrays, its signature wrong (decoded before it is checked)."""
    header = b"\x81\xa6ranges" + array_of(4 * MiB - 16, b"\x90")
    bundle = frame_bundle(MALLORY, header, packb([]))
    return bundle[:-64] + bytes(64)


def hostile_receipt() -> bytes:
    """A 4 MiB receipt whose knowledge is four million empty arrays (the issue's +242 MB)."""
    wire = array_of(4 * MiB - 128, b"\x90")
    return b"\x94\xc4\x20" + bytes(32) + b"\x01" + wire + b"\xc4\x40" + bytes(64)


def hostile_knowledge() -> bytes:
    """A 4 MiB knowledge statement: 50 000 origins, each one stream of 20 one-byte
    intervals."""
    flat = b"\xdc\x00\x28" + b"".join(packb(i) * 2 for i in range(1, 80, 4))
    stream = b"\x91\x93\xa1c\xa0" + flat  # [["c", "", intervals]]
    entries = [b"\x92\xc4\x20" + i.to_bytes(32, "big") + stream for i in range(1, 50_001)]
    return b"\xdd" + len(entries).to_bytes(4, "big") + b"".join(entries)


def hostile_segment() -> bytes:
    """An encoded segment that is 4 MiB of empty arrays (segments are six flat items)."""
    return b"\x96" + array_of(4 * MiB, b"\x90")


def hostile_key_file() -> bytes:
    """A 4 MiB key file: a map of a million one-letter keys, as many empty maps."""
    return b"\xdf" + (1 << 20).to_bytes(4, "big") + b"\xa1k\x80" * (1 << 20)


def hostile_token() -> bytes:
    """A 1 KiB token of nested empty arrays (tokens are refused above 1 KiB unread)."""
    return b"\x98" + b"\x9f" * 1000 + b"\x90" * 23


def nested_claims() -> bytes:
    """Arrays nested 1000 deep, each declaring 4096 items, none arriving: the C decoder
    allocates each declared array before its items (at most 32 KiB each here)."""
    return b"\xdc\x10\x00" * 1000


def big_valid_bundle() -> bytes:
    """A valid 16 MiB bundle: 32 segments of one change each, 512 KiB of photo."""
    from offsync import Change

    noise = random.Random(10)
    segments = []
    prev = NO_PREVIOUS
    for seq in range(1, 33):
        photo = noise.randbytes(512 * 1024)  # as incompressible as a JPEG
        change = Change(
            MALLORY.public_key, seq, seq << 16, "photos", f"p{seq}", 0, packb({"jpeg": photo})
        )
        sealed = Segment.seal(MALLORY, [change], prev, 1)
        prev = sealed.hash
        segments.append(sealed.encode())
    return bundle_around(segments)


def big_certificate() -> bytes:
    """The canonical fields of a certificate record with 100 000 key prefixes (780 KiB),
    as a replica stores them and rebuilds its trust store from."""
    from offsync.encoding import canonical_fields
    from offsync.trust import Certificate

    prefixes = tuple(f"{i:06d}" for i in range(100_000))
    return canonical_fields(Certificate(MALLORY.public_key, prefixes=prefixes).to_fields())


TRUST_SETUP = """
from offsync.encoding import decode_fields
from offsync.trust import TrustStore
key = "cert/" + bytes([7] * 32).hex()
"""
TRUST = "TrustStore.from_records([], [(key, decode_fields(data))])"


HTTP_SETUP = f"""
sys.path.insert(0, {str(ROOT)!r})
import httpx
from tests.helpers.http import LiveServer
from offsync import Identity, Replica
from offsync.bundle import hash32
from offsync.server import create_app
replica = Replica.open(":memory:", identity=Identity(bytes([9]) * 32, "centre"))
server = LiveServer(create_app(replica)).start()
client = httpx.Client()
client.get(server.url + "/")
"""
HTTP_PUT = """
answer = client.put(server.url + "/bundles/" + hash32(data).hex(), content=data)
assert answer.status_code == 422, answer.status_code
"""

REFUSED = ("LimitExceededError", "BundleFormatError", "SignatureError")

CASES: dict[str, tuple[Callable[[], bytes], str, str, tuple[str, ...], int]] = {
    # name: (input, setup, run, outcomes allowed, bound on the growth besides SLACK)
    "bundle: block of 8 MiB of empty arrays": (
        empty_arrays_block,
        APPLY_SETUP,
        APPLY,
        REFUSED,
        8 * MiB,  # the block, decompressed
    ),
    "bundle: block of 8 arrays of 1M empty arrays": (
        many_arrays_block,
        APPLY_SETUP,
        APPLY,
        REFUSED,
        8 * MiB + BUDGET,
    ),
    "bundle: array header claiming 64M items": (
        claimed_items_block,
        APPLY_SETUP,
        APPLY,
        REFUSED,
        64 * MiB,
    ),
    "bundle: 63 MiB block of 63 arrays of 1M zero bytes": (
        zeros_block,
        APPLY_SETUP,
        APPLY,
        REFUSED,
        63 * MiB + BUDGET,
    ),
    "bundle: block of 8 MiB of nested one-entry maps": (
        nested_maps_block,
        APPLY_SETUP,
        APPLY,
        REFUSED,
        8 * MiB + BUDGET,
    ),
    # "100 000 puts repeating one 600-byte value" is format 3's content coding now:
    # tests/hostile/test_v3_decode_memory.py.
    "bundle: 16 MiB body of nested empty arrays": (
        nested_body,
        APPLY_SETUP,
        APPLY,
        REFUSED,
        5 * 16 * MiB,  # the signature check copies a bundle (pynacl) ...
    ),
    "bundle: valid, 16 MiB of photos": (
        big_valid_bundle,
        APPLY_SETUP,
        APPLY,
        ("ok",),
        6 * 16 * MiB,  # ... and keeps its segments, in this in-memory store
    ),
    "bundle header: 4 MiB of empty arrays, before the signature": (
        hostile_header,
        "from offsync.bundle import read_header",
        "read_header(data)",
        REFUSED,
        2 * 4 * MiB,
    ),
    "receipt: 4 MiB of empty arrays": (
        hostile_receipt,
        "from offsync import Receipt",
        "Receipt.decode(data)",
        REFUSED,
        4 * MiB + BUDGET,
    ),
    "knowledge: 4 MiB, two million intervals": (
        hostile_knowledge,
        "from offsync import Knowledge",
        "Knowledge.from_bytes(data)",
        REFUSED,
        4 * MiB + BUDGET,
    ),
    "segment: 4 MiB of empty arrays": (
        hostile_segment,
        "from offsync.segment import Segment",
        "Segment.decode(data)",
        REFUSED,
        4 * MiB,
    ),
    "key file: 4 MiB map of empty maps": (
        hostile_key_file,
        "from offsync import Identity",
        "Identity.from_bytes(data, 'passphrase')",
        ("IdentityError",),
        4 * MiB,
    ),
    "attestation token: 1 KiB of nested arrays": (
        hostile_token,
        "from offsync.attest import read_attestation",
        "read_attestation(data)",
        REFUSED,
        0,
    ),
    "any decoder: 1000 nested arrays each declaring 4096 items": (
        nested_claims,
        "from offsync.unpack import unpack",
        "unpack(data, 'claims')",
        REFUSED,
        1000 * 4096 * 8,
    ),
    "trust records: a certificate of 100 000 prefixes": (
        big_certificate,
        TRUST_SETUP,
        TRUST,
        ("ok",),
        16 * 780 * 1024,
    ),
    "HTTP PUT of the 756-byte bundle": (
        empty_arrays_block,
        HTTP_SETUP,
        HTTP_PUT,
        ("ok",),
        8 * MiB,
    ),
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


# -- the first tier's figure -------------------------------------------------------------


def _groups(item: bytes, size: int) -> bytes:
    """``size`` bytes (about) of arrays of FAST_MAX_ITEMS - 1 copies of ``item``."""
    per = 4095
    group = b"\xdc" + per.to_bytes(2, "big") + item * per
    n = (size - 3) // len(group)
    return b"\xdc" + n.to_bytes(2, "big") + group * n


def _chains(chain: bytes, size: int) -> bytes:
    n = (size - 3) // len(chain)
    return b"\xdc" + n.to_bytes(2, "big") + chain * n


#: The densest patterns of msgpack (in objects per byte), each as large as the first
#: tier of offsync.unpack decodes without a census.
DENSE = {
    "empty arrays": lambda size: _groups(b"\x90", size),
    "empty maps": lambda size: _groups(b"\x80", size),
    "one-entry maps of an empty array": lambda size: _groups(b"\x81\xa0\x90", size),
    "one-entry maps nested 500 deep": lambda size: _chains(b"\x81\xa0" * 500 + b"\x80", size),
    "arrays nested 1000 deep": lambda size: _chains(b"\x91" * 1000 + b"\x90", size),
    "negative fixints (not cached)": lambda size: _groups(b"\xe0", size),
    "two-letter strs": lambda size: _groups(b"\xa2ab", size),
    "one-letter non-latin strs": lambda size: _groups(b"\xa2\xc4\x81", size),
}


@pytest.mark.parametrize("name", list(DENSE))
def test_no_byte_decodes_to_more_than_worst_bytes_per_byte(tmp_path: Path, name: str) -> None:
    """What lets the first tier skip the census: its largest input, of the densest
    patterns, takes at most WORST_BYTES_PER_BYTE bytes of objects per byte."""
    from offsync.unpack import FAST_MAX_ITEMS, WORST_BYTES_PER_BYTE

    assert FAST_MAX_ITEMS == 4096
    size = BUDGET // WORST_BYTES_PER_BYTE
    data = DENSE[name](size)
    assert size * 0.95 < len(data) <= size
    growth, outcome = peak_growth(
        tmp_path, data, "from offsync.unpack import unpack", "unpack(data, 'dense')"
    )
    assert outcome == "ok"
    assert growth <= WORST_BYTES_PER_BYTE * len(data), f"{growth / len(data):.0f} bytes per byte"


#: Patterns for the census's estimate: 1 MiB each, over what the first tier decodes,
#: so the estimate is what bounds them.
ESTIMATED = {
    "empty arrays": lambda size: _groups(b"\x90", size),
    "empty maps": lambda size: _groups(b"\x80", size),
    "one-entry maps nested 500 deep": lambda size: _chains(b"\x81\xa0" * 500 + b"\x80", size),
    "maps of five entries": lambda size: _groups(
        b"\x85" + b"".join(bytes([0xA1, c, 0xE0]) for c in b"abcde"), size
    ),
    "negative fixints": lambda size: _groups(b"\xe0", size),
    "uint64s": lambda size: _groups(b"\xcf" + b"\xff" * 8, size),
    "float32s": lambda size: _groups(b"\xca\x3f\x80\x00\x00", size),
    "two-letter strs": lambda size: _groups(b"\xa2ab", size),
    "astral one-letter strs": lambda size: _groups(b"\xa4\xf0\x9d\x84\x9e", size),
    "two-byte bins": lambda size: _groups(b"\xc4\x02ab", size),
}


@pytest.mark.parametrize("name", list(ESTIMATED))
def test_the_census_estimate_bounds_what_is_built(tmp_path: Path, name: str) -> None:
    """The census's estimate (plus the input's own bytes) is at least what decoding
    really takes: refusing on the estimate refuses before the limit is reached."""
    from offsync.unpack import check_cost

    data = ESTIMATED[name](MiB)
    estimate = check_cost(data, "pattern", 1 << 40)
    growth, outcome = peak_growth(
        tmp_path,
        data,
        "from offsync.limits import Limits\nfrom offsync.unpack import unpack",
        # A max_depth below the decoder's makes the census run, with a budget it passes.
        "unpack(data, 'pattern', Limits(max_decode_bytes=1 << 40), max_depth=1000)",
    )
    assert outcome == "ok"
    assert growth <= estimate + len(data), f"{growth / MiB:.0f} MiB > {estimate / MiB:.0f} MiB"
