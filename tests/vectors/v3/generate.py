"""Write the format-3 known-answer and invalid vectors in this folder.

Run: ``.venv/bin/python tests/vectors/v3/generate.py``. Everything is derived from
fixed seeds, secrets, HLC values and inputs, so running it again gives the same files
byte for byte (a test checks that). Blocks are zstd raw frames (docs/spec.md §6.2),
so no byte depends on a compressor; the one sealed body uses a fixed ephemeral key.
JSON holds bytes as lowercase hex; inside field inputs a bytes value is written
``{"$bytes": hex}`` and a float that JSON cannot hold ``{"$float": "nan" | "inf" |
"-inf" | "-0.0"}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings

from offsync.attest import ATTEST_DOMAIN, issue_attestation, to_text
from offsync.bundle import build_bundle, frame_bundle
from offsync.change import DELETE, ERASE, PUT, Change, ChangeId, canonical_fields
from offsync.clock import make_hlc
from offsync.columns import encode_block, encode_redacted_block
from offsync.compression import raw_frame
from offsync.encoding import packb
from offsync.identity import Identity
from offsync.knowledge import Knowledge
from offsync.receipt import RECEIPT_DOMAIN, Receipt, statement_for
from offsync.scope import Partition, PartitionRule, Scope, Stream
from offsync.segment import (
    NO_PREVIOUS,
    RedactedSegment,
    Segment,
    commitment_of,
    hash32,
    partition_hash,
    row_hashes,
    salts_of,
)

HERE = Path(__file__).parent

SEEDS = {
    "site_a": bytes(range(32)),
    "site_b": bytes(range(32, 64)),
    "centre": b"\x42" * 32,
}
MILLIS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
RESIDENTS = Partition("residents", "351901")
DOSES = Partition("doses", "351901")
RULE = PartitionRule({"residents": 6, "doses": 6})
#: Fixed segment secrets (real ones are random).
SECRETS = [bytes(range(100 + 32 * i, 132 + 32 * i)) for i in range(4)]
EPHEMERAL_SECRET = bytes(range(200, 232))  # the sealed body's ephemeral X25519 key


def ids() -> dict[str, Identity]:
    return {name: Identity(seed, name) for name, seed in SEEDS.items()}


A, B, C = ids()["site_a"], ids()["site_b"], ids()["centre"]


def tagged(value: Any) -> Any:
    """JSON field inputs to values: ``{"$bytes": hex}``, ``{"$float": ...}``."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tagged(v) for v in value]
    return value


def hexes(k: Knowledge) -> list[Any]:
    return [[o.hex(), parts] for o, parts in k.to_wire()]


# -- integers, floats, strings, HLCs --------------------------------------------------------

FIELD_CASES: list[tuple[str, dict[str, Any]]] = [
    ("empty", {}),
    ("keys given unsorted", {"village": "Kare", "name": "Siti", "dob": "1990-01-01"}),
    (
        "integers: shortest form, unsigned for non-negative",
        {
            "a": 0,
            "b": 127,
            "c": 128,
            "d": 255,
            "e": 256,
            "f": 65535,
            "g": 65536,
            "h": 4294967296,
            "i": 18446744073709551615,
            "j": -1,
            "k": -32,
            "l": -33,
            "m": -128,
            "n": -129,
            "o": -32769,
            "p": -2147483649,
            "q": -9223372036854775808,
        },
    ),
    ("floats are float64", {"x": 1.5, "y": -0.25, "z": 1e300}),
    (
        "NaN is the one quiet NaN; -0.0 and infinities stay",
        {
            "nan": {"$float": "nan"},
            "negzero": {"$float": "-0.0"},
            "zero": 0.0,
            "inf": {"$float": "inf"},
            "minf": {"$float": "-inf"},
        },
    ),
    ("bool, nil, bytes", {"t": True, "f": False, "nil": None, "raw": {"$bytes": "00ff10"}}),
    ("nested, sorted at every depth", {"b": {"z": [1, {"q": 2, "p": 1}], "a": []}, "a": "x"}),
    ("non-ASCII text and keys, not normalised", {"nama": "Ñoño 日本", "é": "e\u0301"}),
    (
        "sorted by UTF-8 bytes (code points), not by UTF-16 or locale",
        {"\uff5e": 1, "\U0001f600": 2, "Z": 3, "a": 4},
    ),
    ("str8 from 32 bytes, str16 from 256", {"s31": "x" * 31, "s32": "x" * 32, "s256": "y" * 256}),
    ("bin8 for short bytes", {"b": {"$bytes": "ab" * 40}}),
]


def basics() -> dict[str, Any]:
    hlcs = [(0, 0), (1, 0), (MILLIS, 0), (MILLIS, 65535), ((1 << 47) - 1, 65535)]
    nan_with_payload = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    return {
        "description": (
            "HLC values (the largest valid is 2^63 - 1), canonical field maps (§1, §5.1),"
            " and the NaN rule: a NaN with a payload is written as the one quiet NaN"
        ),
        "hlc": [{"millis": m, "logical": n, "hlc": make_hlc(m, n)} for m, n in hlcs],
        "fields": [
            {"name": name, "input": value, "canonical": canonical_fields(tagged(value)).hex()}
            for name, value in FIELD_CASES
        ],
        "nan_payload": {
            "input_float64": "7ff8000000000001",
            "canonical": canonical_fields({"v": nan_with_payload}).hex(),
        },
    }


# -- changes, blocks, segments ----------------------------------------------------------------

ROWS: list[tuple[int, str, int, dict[str, Any] | None, list[tuple[str, int]], int, str | None]] = [
    # (hlc offset ms, key, op, fields, parents (site, seq), schema, author)
    (
        0,
        "3519010101900001",
        PUT,
        {"address": {"rt": "003", "village": "Kare"}, "name": "Siti Aminah"},
        [],
        2,
        "clerk-1",
    ),
    (
        1,
        "3519010101900002",
        PUT,
        {"address": {"rt": "004", "village": "Mejayan"}, "name": "Budi Santoso"},
        [],
        2,
        "clerk-2",
    ),
    (
        2,
        "3519010101900003",
        PUT,
        {"address": {"rt": "003", "village": "Kare"}, "name": "Dewi Lestari"},
        [],
        2,
        "clerk-1",
    ),
    (
        3,
        "3519010101900004",
        PUT,
        {"address": {"rt": "005", "village": "Mejayan"}, "name": "Agus"},
        [],
        2,
        None,
    ),
    (4, "3519010101900002", DELETE, None, [("site_a", 2)], 2, "clerk-2"),
    (
        5,
        "3519010101900001",
        PUT,
        {"note": "moved"},
        [("site_a", 1), ("site_b", 7)],
        2,
        "clerk-1",
    ),
    (9, "3519010101900003", ERASE, {"reason": "court order 12/2024"}, [("site_a", 3)], 0, None),
]
#: Segment 1 of the residents stream holds changes 1-5, segment 2 holds 6-7.
SPLIT = 5


def the_changes() -> list[Change]:
    out = []
    for i, (dt, key, op, fields, parents, schema, author) in enumerate(ROWS):
        out.append(
            Change(
                A.public_key,
                i + 1,
                make_hlc(MILLIS + dt, i),
                RESIDENTS.collection,
                key,
                op,
                None if fields is None else canonical_fields(fields),
                tuple(sorted(ChangeId(ids()[s].public_key, q) for s, q in parents)),
                RESIDENTS.prefix,
                schema,
                author,
            )
        )
    return out


def the_doses() -> list[Change]:
    return [
        Change(
            A.public_key,
            i + 1,
            make_hlc(MILLIS + 20 + i, 0),
            DOSES.collection,
            f"3519010101900001/{i + 1}",
            PUT,
            canonical_fields({"dose": i + 1, "vaccine": "CoronaVac"}),
            (),
            DOSES.prefix,
            0,
            "vaksinator-7",
        )
        for i in range(2)
    ]


def the_segments() -> list[Segment]:
    """Residents 1-5 and 6-7 (chained), then doses 1-2: raw frames, fixed secrets."""
    chs = the_changes()
    first = Segment.seal(A, chs[:SPLIT], NO_PREVIOUS, None, secret=SECRETS[0])
    second = Segment.seal(A, chs[SPLIT:], first.hash, None, secret=SECRETS[1])
    doses = Segment.seal(A, the_doses(), NO_PREVIOUS, None, secret=SECRETS[2])
    return [first, second, doses]


def change_json(c: Change, row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "seq": c.seq,
        "hlc": c.hlc,
        "collection": c.collection,
        "prefix": c.prefix,
        "key": c.key,
        "op": c.op,
        "fields": row[3],
        "fields_encoded": None if c.fields is None else c.fields.hex(),
        "parents": [[p.origin.hex(), p.seq] for p in c.parents],
        "schema": c.schema,
        "author": c.author,
    }


def changes() -> dict[str, Any]:
    chs = the_changes()
    runs = []
    for run, secret in ((chs[:SPLIT], SECRETS[0]), (chs[SPLIT:], SECRETS[1])):
        plain, skeleton = encode_block(run, RESIDENTS, secret)
        salts = salts_of(secret, len(run))
        v = row_hashes(salts, [c.fields for c in run])
        runs.append(
            {
                "first_seq": run[0].seq,
                "secret": secret.hex(),
                "block_plain": plain.hex(),
                "skeleton": skeleton.hex(),
                "salts": salts.hex(),
                "row_hashes": [h.hex() for h in v],
                "commitment": commitment_of(skeleton, v).hex(),
            }
        )
    return {
        "description": (
            "seven changes of site_a in the stream (residents, 351901), and the columns"
            " two segments carry them in (1-5 and 6-7): block, skeleton, salts,"
            " per-change hashes v_i and commitment (§5.2, §6.3)"
        ),
        "origin_seed": SEEDS["site_a"].hex(),
        "origin": A.public_key.hex(),
        "partition": list(RESIDENTS),
        "changes": [change_json(c, row) for c, row in zip(chs, ROWS, strict=True)],
        "segments": runs,
    }


def segment_json(s: Segment) -> dict[str, Any]:
    return {
        "origin": s.origin.hex(),
        "partition": list(s.partition),
        "partition_hash": partition_hash(s.partition).hex(),
        "first_seq": s.first_seq,
        "last_seq": s.last_seq,
        "prev_hash": s.prev_hash.hex(),
        "block": s.block.hex(),
        "block_hash": hash32(s.block).hex(),
        "commitment": s.commitment.hex(),
        "signing_message": s.signing_message.hex(),
        "signature": s.signature.hex(),
        "hash": s.hash.hex(),
        "encoded": s.encode().hex(),
    }


def segments() -> dict[str, Any]:
    return {
        "description": (
            "site_a's segments: residents 1-5 and 6-7 (the second chains to the first)"
            " and doses 1-2 (another stream, its own chain); blocks are raw frames"
        ),
        "origin_seed": SEEDS["site_a"].hex(),
        "segments": [segment_json(s) for s in the_segments()],
    }


def the_redactions() -> tuple[RedactedSegment, RedactedSegment]:
    """Erase Dewi's put (row 2) of residents 1-5, then also Siti's (row 0)."""
    first = the_segments()[0]
    once = first.redact([2], level=None)
    return once, once.redact([0], level=None)


def redacted() -> dict[str, Any]:
    first = the_segments()[0]
    chs = the_changes()[:SPLIT]
    out = []
    for r in the_redactions():
        gone = set(r.erased)
        plain = encode_redacted_block(
            encode_block(chs, RESIDENTS, SECRETS[0])[1],
            [None if i in gone else c.fields for i, c in enumerate(chs)],
        )
        out.append(
            {
                "erased": list(r.erased),
                "rblock_plain": plain.hex(),
                "rblock": r.rblock.hex(),
                "salts": r.salts.hex(),
                "hashes": r.hashes.hex(),
                "hash": r.hash.hex(),
                "encoded": r.encode().hex(),
            }
        )
    return {
        "description": (
            "the redacted forms of residents 1-5 (§6.4): first erasing row 2 (seq 3, the"
            " record the erase order names), then rows 0 and 2; same hash as the whole"
            " segment, the erased values and their salts appear nowhere"
        ),
        "segment": first.encode().hex(),
        "redactions": out,
    }


# -- knowledge, receipts, bundles -------------------------------------------------------------


def the_knowledge() -> Knowledge:
    a, b = A.public_key, B.public_key
    return Knowledge(
        {
            Stream(a, RESIDENTS): [(1, 7)],
            Stream(a, DOSES): [(1, 2)],
            Stream(a, Partition("residents", "351902")): [(1, 3), (5, 9)],
            Stream(b, RESIDENTS): [(1, 12)],
            Stream(b, Partition("_trust", "")): [(1, 1)],
            Stream(b, Partition("vaccine_lots", "")): [(2, 4)],
        }
    )


def knowledge() -> dict[str, Any]:
    k = the_knowledge()
    return {
        "description": (
            "knowledge of several streams per origin (§7.1), its encoding, and its group"
            " digests for G = 0 and G = 4 (§7.2)"
        ),
        "knowledge": hexes(k),
        "encoded": k.to_bytes().hex(),
        "group_digests": {
            str(g): [[c, p, d.hex()] for c, p, d in k.group_digests(g)] for g in (0, 4)
        },
    }


def the_receipt() -> Receipt:
    """site_b's full knowledge, signed."""
    return Receipt.issue(B, make_hlc(MILLIS + 60_000, 2), the_knowledge())


def the_partial() -> Receipt:
    """What site_b states to site_a, which reads district 351902 and relays for nobody."""
    stated = statement_for(
        the_knowledge(), reader=A.public_key, scope=Scope({"residents": ["351902"]})
    )
    return Receipt.issue(B, make_hlc(MILLIS + 60_000, 3), stated)


def receipts() -> dict[str, Any]:
    out = []
    for name, r in (("whole", the_receipt()), ("partial, for site_a", the_partial())):
        out.append(
            {
                "name": name,
                "replica": r.replica.hex(),
                "created": r.created,
                "knowledge": hexes(r.knowledge),
                "signing_message": (
                    RECEIPT_DOMAIN + packb([r.replica, r.created, r.knowledge.to_wire()])
                ).hex(),
                "signature": r.signature.hex(),
                "encoded": r.encode().hex(),
            }
        )
    return {
        "description": (
            "site_b's receipt of its whole knowledge, and the partial receipt it issues to"
            " site_a (§8): site_a's own streams and the streams of its read scope"
            " {residents: [351902]}"
        ),
        "replica_seed": SEEDS["site_b"].hex(),
        "receipts": out,
    }


def _bundle_parts() -> tuple[list[bytes], Knowledge, list[Receipt], int]:
    segs = the_segments()
    ranges = Knowledge()
    for s in segs:
        ranges = ranges.with_range(s.stream, s.first_seq, s.last_seq)
    carried = Knowledge.of(Stream(A.public_key, RESIDENTS), 1, 7) | Knowledge.of(
        Stream(A.public_key, DOSES), 1, 2
    )
    own = Receipt.issue(B, make_hlc(MILLIS + 61_000, 0), carried)
    subject = Receipt.issue(
        C, make_hlc(MILLIS + 30_000, 0), Knowledge.of(Stream(A.public_key, RESIDENTS), 1, 5)
    )
    return [s.encode() for s in segs], ranges, [own, subject], make_hlc(MILLIS + 61_000, 0)


def the_bundle() -> bytes:
    """site_b relays site_a's three segments to the centre, relaying for site_a."""
    encoded, ranges, receipts_, created = _bundle_parts()
    return build_bundle(
        B,
        encoded,
        ranges=ranges,
        receipts=receipts_,
        created=created,
        relays_for=[A.public_key],
    )


def sealed_box(plain: bytes, recipient: bytes, ephemeral_secret: bytes) -> bytes:
    """libsodium's crypto_box_seal with a given ephemeral key: ``epk ‖ box``, the nonce
    being BLAKE2b-192(epk ‖ recipient's X25519 key)."""
    rpk = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(recipient)
    epk = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
    nonce = hashlib.blake2b(epk + rpk, digest_size=24).digest()
    return epk + nacl.bindings.crypto_box_easy(plain, nonce, rpk, ephemeral_secret)


def the_sealed_bundle() -> bytes:
    encoded, ranges, receipts_, created = _bundle_parts()
    plain = packb(encoded)
    header = {
        "created": created,
        "ranges": ranges.to_wire(),
        "receipts": [r.encode() for r in receipts_],
        "recipient": C.public_key,
        "relays_for": [A.public_key],
        "segments": len(encoded),
        "sender": B.public_key,
    }
    return frame_bundle(B, packb(header), sealed_box(plain, C.public_key, EPHEMERAL_SECRET))


def bundles() -> dict[str, Any]:
    data, sealed = the_bundle(), the_sealed_bundle()
    encoded, ranges, receipts_, created = _bundle_parts()
    hlen = int.from_bytes(data[8:12], "big")
    shlen = int.from_bytes(sealed[8:12], "big")
    return {
        "description": (
            "site_b relays site_a's segments to the centre (version 00 03, relays_for"
            " [site_a], its own receipt then a subject receipt of the centre), in the"
            " clear and sealed to the centre with a fixed ephemeral X25519 secret"
        ),
        "sender_seed": SEEDS["site_b"].hex(),
        "header": {
            "created": created,
            "ranges": hexes(ranges),
            "receipts": [r.encode().hex() for r in receipts_],
            "recipient": None,
            "relays_for": [A.public_key.hex()],
            "segments": len(encoded),
            "sender": B.public_key.hex(),
        },
        "header_encoded": data[12 : 12 + hlen].hex(),
        "body": packb(encoded).hex(),
        "bundle": data.hex(),
        "bundle_id": hash32(data).hex(),
        "sealed": {
            "recipient_seed": SEEDS["centre"].hex(),
            "ephemeral_secret": EPHEMERAL_SECRET.hex(),
            "header_encoded": sealed[12 : 12 + shlen].hex(),
            "bundle": sealed.hex(),
            "bundle_id": hash32(sealed).hex(),
        },
    }


# -- tokens, partitions, scopes, frames -----------------------------------------------------


def tokens() -> dict[str, Any]:
    change = the_changes()[1]
    token = issue_attestation(A, change)
    body = msgpack.unpackb(token)[:-1]
    return {
        "description": "an attestation token of version 2 (§14) for site_a's change 2",
        "origin_seed": SEEDS["site_a"].hex(),
        "token": token.hex(),
        "signing_message": (ATTEST_DOMAIN + packb(body)).hex(),
        "fields_digest": body[7].hex(),
        "text": to_text(token),
        "delivered_by": {
            "receipt": Receipt.issue(
                C, make_hlc(MILLIS + 90_000, 0), Knowledge.of(Stream(A.public_key, RESIDENTS), 1, 2)
            )
            .encode()
            .hex(),
            "centre": C.public_key.hex(),
            "delivered": True,
        },
    }


def partitions() -> dict[str, Any]:
    records = [
        ("residents", "3519010101900001"),
        ("residents", "35"),
        ("doses", "3519010101900001/2"),
        ("vaccine_lots", "CV-2021-001"),
        ("_trust", "cert/" + "00" * 32),
        ("residents", "3519\u00e9\u00e9\u00e9\u00e9"),
    ]
    scope = Scope({"residents": ["3519", "3520"], "vaccine_lots": []})
    probes = [
        Partition("residents", "351901"),
        Partition("residents", "352001"),
        Partition("residents", "35"),
        Partition("residents", "361901"),
        Partition("vaccine_lots", ""),
        Partition("doses", "351901"),
    ]
    return {
        "description": (
            "the partition rule {residents: 6, doses: 6} (§4: code points, _trust always"
            " one partition), scope membership, and certificate read fields (§13.3)"
        ),
        "rule": dict(RULE.lengths),
        "records": [[c, k, list(RULE.partition_of(c, k))] for c, k in records],
        "scope_read_field": scope.to_read_field(),
        "scope_read_field_encoded": packb(scope.to_read_field()).hex(),
        "membership": [[list(p), p in scope] for p in probes],
        "everything_read_field": packb(Scope.everything().to_read_field()).hex(),
    }


def frames() -> dict[str, Any]:
    big = bytes(i % 251 for i in range(131_073))
    frame = raw_frame(big)
    return {
        "description": (
            "raw frames (§6.2): empty data, five bytes, and 131 073 bytes (two raw blocks;"
            " the data is i mod 251 for i in 0..131072, given by its hash)"
        ),
        "empty": raw_frame(b"").hex(),
        "five": {"data": b"hello".hex(), "frame": raw_frame(b"hello").hex()},
        "two_blocks": {
            "data_blake2b": hash32(big).hex(),
            "frame_blake2b": hash32(frame).hex(),
            "frame_length": len(frame),
            "frame_head": frame[:16].hex(),
            "second_block_header": frame[13 + 131_072 + 3 : 13 + 131_072 + 6].hex(),
        },
    }


# -- invalid vectors --------------------------------------------------------------------------

Case = dict[str, Any]
BASE_SECRET = SECRETS[3]


def base_block() -> list[Any]:
    """All seven changes as one block (the mutations below start from its value)."""
    plain, _ = encode_block(the_changes(), RESIDENTS, BASE_SECRET)
    block: list[Any] = msgpack.unpackb(plain, raw=False)
    return block


def block_case(
    name: str, section: str, error: str, mutate: Callable[[list[Any]], Any], **context: Any
) -> Case:
    value = base_block()
    result = mutate(value)
    data = result if isinstance(result, bytes) else packb(value)
    return {
        "name": name,
        "section": section,
        "kind": "block",
        "error": error,
        "input": data.hex(),
        "context": {
            "origin": A.public_key.hex(),
            "partition": context.pop("partition", list(RESIDENTS)),
            "first_seq": 1,
            **context,
        },
    }


def tiny_block(key: str, prefix: str = "") -> bytes:
    """One put in a partition of prefix ``prefix``, as the columns would carry it."""
    return packb(
        [
            [[MILLIS << 16], [0], [key], [0], [[]], [0], [], [None]],
            [[["v"]], [0], [[[None, [1]]]]],
            BASE_SECRET,
        ]
    )


def _set(path: tuple[int, ...], item: Any) -> Callable[[list[Any]], None]:
    def go(v: list[Any]) -> None:
        target = v
        for i in path[:-1]:
            target = target[i]
        target[path[-1]] = item

    return go


SK, CT = 0, 1  # skeleton, content
HLC, KP, KS, OP, PARENTS, SCHEMA, AUTHORS, AUTHOR = range(8)
SHAPES, SHAPE, VALUES = range(3)


def _replace_bytes(old: bytes, new: bytes) -> Callable[[list[Any]], bytes]:
    def go(v: list[Any]) -> bytes:
        data = packb(v)
        assert data.count(old) == 1, old
        return data.replace(old, new)

    return go


def _nested(depth: int) -> Callable[[list[Any]], bytes]:
    def go(v: list[Any]) -> bytes:
        v[CT][VALUES][1][0][1][0] = "NESTED"
        deep = b"\x91" * (depth - 1) + b"\x90"
        return packb(v).replace(packb("NESTED"), deep)

    return go


def _long_op(v: list[Any]) -> bytes:
    """The op column with its first 0 written as uint 8 (``cc 00``)."""
    ops = packb(v[SK][OP])
    return _replace_bytes(ops + b"\x97\x90", ops[:1] + b"\xcc" + ops[1:] + b"\x97\x90")(v)


def _shape_17(v: list[Any]) -> None:
    shape: list[Any] = ["note"]
    for _ in range(16):
        shape = [["n", shape]]
    v[CT][SHAPES][1] = shape


def _parents(n: int) -> list[list[Any]]:
    return [[B.public_key, i + 1] for i in range(n)]


def block_cases() -> list[Case]:
    a = A.public_key
    village = [["Kare", "Mejayan"], bytes([0, 1, 0, 1])]
    return [
        block_case("block: integer not shortest", "5.3.1", "BundleFormatError", _long_op),
        block_case(
            "block: extension type",
            "5.3.1",
            "BundleFormatError",
            _replace_bytes(b"\xc4\x20" + BASE_SECRET, b"\xd4\x01\x00"),
        ),
        block_case(
            "block: invalid UTF-8",
            "5.3.1",
            "BundleFormatError",
            _replace_bytes(b"\xabSiti Aminah", b"\xabSiti Amin\xffh"),
        ),
        block_case("block: nested over 1024", "5.3.1", "LimitExceededError", _nested(1030)),
        block_case("block: two parts", "5.3.2", "BundleFormatError", lambda v: packb(v[:2])),
        block_case("block: short secret", "5.3.2", "BundleFormatError", _set((2,), bytes(31))),
        block_case(
            "block: skeleton of 7 columns",
            "5.3.2",
            "BundleFormatError",
            lambda v: v[SK].pop(),
        ),
        block_case(
            "block: no change",
            "5.3.3",
            "BundleFormatError",
            lambda v: packb([[[]] * 6 + [[], []], [[], [], []], BASE_SECRET]),
        ),
        block_case(
            "block: op column too short", "5.3.3", "BundleFormatError", lambda v: v[SK][OP].pop()
        ),
        block_case(
            "block: bool in an int column",
            "5.3.3",
            "BundleFormatError",
            _set((SK, SCHEMA, 0), True),
        ),
        block_case(
            "block: hlc over 2^63", "5.3.4", "BundleFormatError", _set((SK, HLC, 0), 1 << 63)
        ),
        block_case("block: negative hlc", "5.3.4", "BundleFormatError", _set((SK, HLC, 0), -5)),
        block_case(
            "block: first key prefix not 0",
            "5.3.5",
            "BundleFormatError",
            lambda v: (v[SK][KP].__setitem__(0, 1), v[SK][KS].__setitem__(0, "519010101900001")),
        ),
        block_case(
            "block: key prefix too long", "5.3.5", "BundleFormatError", _set((SK, KP, 1), 17)
        ),
        block_case(
            "block: key prefix not the longest",
            "5.3.5",
            "BundleFormatError",
            lambda v: (v[SK][KP].__setitem__(1, 14), v[SK][KS].__setitem__(1, "02")),
        ),
        block_case(
            "block: empty key",
            "5.3.5",
            "BundleFormatError",
            lambda v: tiny_block(""),
            partition=["vaccine_lots", ""],
        ),
        block_case(
            "block: key over 512 bytes",
            "5.3.5",
            "LimitExceededError",
            lambda v: tiny_block("x" * 513),
            partition=["vaccine_lots", ""],
        ),
        block_case(
            "block: key outside the partition",
            "5.3.5",
            "BundleFormatError",
            lambda v: None,
            partition=["residents", "351902"],
        ),
        block_case("block: op 3", "5.3.6", "BundleFormatError", _set((SK, OP, 0), 3)),
        block_case(
            "block: delete with a shape", "5.3.6", "BundleFormatError", _set((SK, OP, 0), DELETE)
        ),
        block_case(
            "block: put without a shape", "5.3.6", "BundleFormatError", _set((SK, OP, 4), PUT)
        ),
        block_case(
            "block: erase order without a reason",
            "5.3.6",
            "BundleFormatError",
            _set((SK, OP, 5), ERASE),
        ),
        block_case(
            "block: schema 2^32", "5.3.7", "BundleFormatError", _set((SK, SCHEMA, 0), 1 << 32)
        ),
        block_case("block: empty author", "5.3.8", "BundleFormatError", _set((SK, AUTHORS, 0), "")),
        block_case(
            "block: author over 64 bytes",
            "5.3.8",
            "LimitExceededError",
            _set((SK, AUTHORS, 0), "c" * 65),
        ),
        block_case(
            "block: author index outside", "5.3.8", "BundleFormatError", _set((SK, AUTHOR, 3), 2)
        ),
        block_case(
            "block: unused author",
            "5.3.8",
            "BundleFormatError",
            lambda v: v[SK][AUTHORS].append("clerk-3"),
        ),
        block_case(
            "block: author twice", "5.3.8", "BundleFormatError", _set((SK, AUTHORS, 1), "clerk-1")
        ),
        block_case(
            "block: authors out of order",
            "5.3.8",
            "BundleFormatError",
            lambda v: (
                v[SK].__setitem__(AUTHORS, ["clerk-2", "clerk-1"]),
                v[SK].__setitem__(
                    AUTHOR, [1 - x if x is not None else None for x in v[SK][AUTHOR]]
                ),
            ),
        ),
        block_case(
            "block: parents unsorted",
            "5.3.9",
            "BundleFormatError",
            lambda v: v[SK][PARENTS][5].reverse(),
        ),
        block_case(
            "block: parent from the future",
            "5.3.9",
            "BundleFormatError",
            _set((SK, PARENTS, 0), [[a, 5]]),
        ),
        block_case(
            "block: 65 parents", "5.3.9", "LimitExceededError", _set((SK, PARENTS, 3), _parents(65))
        ),
        block_case(
            "block: parent origin of 31 bytes",
            "5.3.9",
            "BundleFormatError",
            _set((SK, PARENTS, 3), [[bytes(31), 1]]),
        ),
        block_case(
            "block: shape names unsorted",
            "5.3.10",
            "BundleFormatError",
            lambda v: v[CT][SHAPES][0].reverse(),
        ),
        block_case("block: shape nested 17 deep", "5.3.10", "BundleFormatError", _shape_17),
        block_case(
            "block: shape index outside", "5.3.10", "BundleFormatError", _set((CT, SHAPE, 5), 3)
        ),
        block_case(
            "block: unused shape",
            "5.3.10",
            "BundleFormatError",
            lambda v: (v[CT][SHAPES].append(["zzz"]), v[CT][VALUES].append([[None, []]])),
        ),
        block_case(
            "block: shapes out of order",
            "5.3.10",
            "BundleFormatError",
            lambda v: (
                v[CT][SHAPES].reverse(),
                v[CT][VALUES].reverse(),
                v[CT].__setitem__(SHAPE, [2, 2, 2, 2, None, 1, 0]),
            ),
        ),
        block_case(
            "block: shape twice",
            "5.3.10",
            "BundleFormatError",
            _set((CT, SHAPES, 2), ["note"]),
        ),
        block_case(
            "block: map as a leaf",
            "5.3.10",
            "BundleFormatError",
            _set((CT, VALUES, 1, 0, 1, 0), {}),
        ),
        block_case(
            "block: missing column", "5.3.11", "BundleFormatError", lambda v: v[CT][VALUES][0].pop()
        ),
        block_case(
            "block: short plain column",
            "5.3.11",
            "BundleFormatError",
            lambda v: v[CT][VALUES][0][0][1].pop(),
        ),
        block_case(
            "block: index outside table",
            "5.3.11",
            "BundleFormatError",
            _set((CT, VALUES, 0, 1), [village[0], bytes([0, 1, 0, 2])]),
        ),
        block_case(
            "block: table out of order",
            "5.3.11",
            "BundleFormatError",
            _set((CT, VALUES, 0, 1), [["Mejayan", "Kare"], bytes([1, 0, 1, 0])]),
        ),
        block_case(
            "block: unused table value",
            "5.3.11",
            "BundleFormatError",
            _set((CT, VALUES, 0, 1), [village[0], bytes([0, 0, 0, 0])]),
        ),
        block_case(
            "block: table over half the rows",
            "5.3.11",
            "BundleFormatError",
            _set((CT, VALUES, 0, 0), [["003", "004", "005"], bytes([0, 1, 0, 2])]),
        ),
        block_case(
            "block: table of ints",
            "5.3.11",
            "BundleFormatError",
            _set((CT, VALUES, 0, 1), [[1, 2], bytes([0, 1, 0, 1])]),
        ),
        block_case(
            "block: plain column of repeats",
            "5.3.11",
            "BundleFormatError",
            _set((CT, VALUES, 0, 1), [None, ["Kare", "Mejayan", "Kare", "Mejayan"]]),
        ),
        block_case(
            "block: NaN with a payload",
            "5.3.12",
            "BundleFormatError",
            _replace_bytes(packb("moved"), bytes.fromhex("cb7ff8000000000001")),
        ),
        block_case(
            "block: fields over max_fields_bytes",
            "5.3.12",
            "LimitExceededError",
            _set((CT, VALUES, 1, 0, 1, 0), "x" * 100),
            limits={"max_fields_bytes": 64},
        ),
    ]


def frame_case(name: str, error: str, frame: bytes) -> Case:
    return {"name": name, "section": "6.2", "kind": "frame", "error": error, "input": frame.hex()}


def frame_cases() -> list[Case]:
    plain = packb(base_block())
    good = raw_frame(plain)
    size = len(plain).to_bytes(8, "little")
    body = good[13:]  # the raw blocks
    return [
        frame_case("frame: no magic", "BundleFormatError", b"\x28\xb5\x2f\xfe" + good[4:]),
        # Not single-segment, no content size: a window descriptor of 1 MiB instead.
        frame_case("frame: no content size", "BundleFormatError", good[:4] + b"\x00\x50" + body),
        frame_case("frame: dictionary", "BundleFormatError", good[:4] + b"\xe1\x00" + size + body),
        frame_case("frame: trailing byte", "BundleFormatError", good + b"\x00"),
        frame_case(
            "frame: reserved block type",
            "BundleFormatError",
            good[:13] + bytes([good[13] | 0x06]) + good[14:],
        ),
        frame_case(
            "frame: bad checksum", "BundleFormatError", good[:4] + b"\xe4" + size + body + bytes(4)
        ),
        frame_case(
            "frame: content shorter than declared",
            "BundleFormatError",
            good[:5] + (len(plain) + 1).to_bytes(8, "little") + body,
        ),
        frame_case(
            "frame: declared 65 MiB",
            "LimitExceededError",
            good[:5] + (65 << 20).to_bytes(8, "little") + body,
        ),
        # Not single-segment: a content size and a window of 16 MiB (2^24).
        frame_case(
            "frame: window of 16 MiB", "LimitExceededError", good[:4] + b"\xc0\x70" + size + body
        ),
    ]


def segment_case(name: str, section: str, error: str, data: bytes) -> Case:
    return {
        "name": name,
        "section": section,
        "kind": "segment",
        "error": error,
        "input": data.hex(),
    }


def _resign(items: list[Any], count: int | None = None) -> bytes:
    """A segment of ``items`` (the wire list) signed by site_a as it stands."""
    origin, collection, prefix, first, last, prev, block, commitment = items[:8]
    msg = b"".join(
        (
            b"offsync/segment/v3\x00",
            origin,
            hash32(packb([collection, prefix])),
            first.to_bytes(8, "big"),
            last.to_bytes(8, "big"),
            hash32(block),
            commitment,
            prev,
        )
    )
    return packb([*items[:8], A.sign(msg)])


def segment_cases() -> list[Case]:
    seg = the_segments()[0]
    wire = seg.to_wire()

    def with_(index: int, value: Any, sign: bool = True) -> bytes:
        items = list(wire)
        items[index] = value
        return _resign(items) if sign else packb(items)

    later = the_segments()[1].to_wire()
    return [
        segment_case("segment: 8 items", "6.5", "BundleFormatError", packb(wire[:8])),
        segment_case("segment: empty collection", "6.5", "BundleFormatError", with_(1, "")),
        segment_case(
            "segment: collection over 64 bytes", "6.5", "LimitExceededError", with_(1, "c" * 65)
        ),
        segment_case("segment: first_seq 0", "6.5", "BundleFormatError", with_(3, 0)),
        segment_case(
            "segment: last before first",
            "6.5",
            "BundleFormatError",
            _resign([*later[:3], 6, 5, *later[5:8]]),
        ),
        segment_case(
            "segment: first with a predecessor", "6.5", "BundleFormatError", with_(5, b"\x01" * 32)
        ),
        segment_case(
            "segment: later without a predecessor",
            "6.5",
            "BundleFormatError",
            _resign([*later[:5], NO_PREVIOUS, *later[6:8]]),
        ),
        segment_case(
            "segment: non-canonical",
            "6.5",
            "BundleFormatError",
            _replace_bytes(b"\x01\x05\xc4\x20", b"\xcc\x01\x05\xc4\x20")(wire),
        ),
        segment_case(
            "segment: bad signature",
            "6.5",
            "SignatureError",
            packb([*wire[:8], wire[8][:-1] + bytes([wire[8][-1] ^ 1])]),
        ),
        segment_case(
            "segment: partition changed", "6.5", "SignatureError", with_(2, "351902", False)
        ),
        segment_case(
            "segment: commitment changed", "6.5", "SignatureError", with_(7, bytes(32), False)
        ),
        segment_case(
            "segment: count differs from block",
            "5.3.3",
            "BundleFormatError",
            _resign([*wire[:4], 6, *wire[5:8]]),
        ),
    ]


def _redacted_wire(erased: list[int], *, keep_shape: bool = False) -> list[Any]:
    """The redacted form of residents 1-5 erasing ``erased`` (any rows), made by hand."""
    seg = the_segments()[0]
    chs = the_changes()[:SPLIT]
    skeleton = encode_block(chs, RESIDENTS, SECRETS[0])[1]
    salts = salts_of(SECRETS[0], len(chs))
    v = row_hashes(salts, [c.fields for c in chs])
    gone = set(erased)
    fields = [c.fields if keep_shape or i not in gone else None for i, c in enumerate(chs)]
    rblock = raw_frame(encode_redacted_block(skeleton, fields))
    kept = b"".join(salts[16 * i : 16 * i + 16] for i in range(len(chs)) if i not in gone)
    return [
        *seg.to_wire()[:6],
        hash32(seg.block),
        seg.commitment,
        seg.signature,
        [rblock, sorted(erased), kept, b"".join(v[i] for i in sorted(erased))],
    ]


def redacted_cases() -> list[Case]:
    good = the_redactions()[1].to_wire()  # rows 0 and 2 erased

    def red(index: int, value: Any) -> bytes:
        items = [*good[:9], list(good[9])]
        items[9][index] = value
        return packb(items)

    def flip(data: bytes, at: int = 0) -> bytes:
        return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]

    kept_altered = _redacted_wire([0, 2])
    chs = the_changes()[:SPLIT]
    altered = list(chs)
    altered[1] = altered[1]._replace(
        fields=canonical_fields({**chs[1].values(), "name": "Budi Santosa"})
    )
    skeleton = encode_block(chs, RESIDENTS, SECRETS[0])[1]
    kept_altered[9][0] = raw_frame(
        encode_redacted_block(
            skeleton, [None if i in (0, 2) else c.fields for i, c in enumerate(altered)]
        )
    )
    # A hostile origin signs 6 seqs over a block of 5 changes; its redaction erases row 5.
    chs5 = the_changes()[:SPLIT]
    plain5, skeleton5 = encode_block(chs5, RESIDENTS, SECRETS[0])
    salts5 = salts_of(SECRETS[0], 6)
    past = _resign([*the_segments()[0].to_wire()[:4], 6, NO_PREVIOUS, raw_frame(plain5), bytes(32)])
    past_wire = msgpack.unpackb(past)
    past_redacted = packb(
        [
            *past_wire[:6],
            hash32(past_wire[6]),
            past_wire[7],
            past_wire[8],
            [
                raw_frame(encode_redacted_block(skeleton5, [c.fields for c in chs5])),
                [5],
                salts5[:80],
                bytes(32),
            ],
        ]
    )
    return [
        segment_case(
            "redacted: erased row past the block", "6.4", "BundleFormatError", past_redacted
        ),
        segment_case(
            "redacted: redaction of 3 items",
            "6.4",
            "BundleFormatError",
            packb([*good[:9], good[9][:3]]),
        ),
        segment_case(
            "redacted: nothing erased",
            "6.4",
            "BundleFormatError",
            packb([*good[:9], [good[9][0], [], salts_of(SECRETS[0], SPLIT), b""]]),
        ),
        segment_case("redacted: erased unsorted", "6.4", "BundleFormatError", red(1, [2, 0])),
        segment_case("redacted: erased out of range", "6.4", "BundleFormatError", red(1, [0, 5])),
        segment_case("redacted: short salts", "6.4", "BundleFormatError", red(2, good[9][2][:-16])),
        segment_case(
            "redacted: delete erased", "6.4", "BundleFormatError", packb(_redacted_wire([2, 4]))
        ),
        segment_case(
            "redacted: erased row with a shape",
            "6.4",
            "BundleFormatError",
            packb(_redacted_wire([2], keep_shape=True)),
        ),
        segment_case(
            "redacted: hash altered", "6.4", "SignatureError", red(3, flip(good[9][3], 5))
        ),
        segment_case("redacted: kept value altered", "6.4", "SignatureError", packb(kept_altered)),
        segment_case(
            "redacted: salt altered", "6.4", "SignatureError", red(2, flip(good[9][2], 7))
        ),
    ]


def knowledge_case(name: str, error: str, wire: Any, raw: bytes | None = None) -> Case:
    data = packb(wire) if raw is None else raw
    return {
        "name": name,
        "section": "7.1",
        "kind": "knowledge",
        "error": error,
        "input": data.hex(),
    }


def knowledge_cases() -> list[Case]:
    a, b = sorted([A.public_key, B.public_key])
    p = ["residents", "351901"]
    return [
        knowledge_case(
            "knowledge: origins unsorted",
            "BundleFormatError",
            [[b, [[*p, [1, 2]]]], [a, [[*p, [1, 2]]]]],
        ),
        knowledge_case("knowledge: origin without partitions", "BundleFormatError", [[a, []]]),
        knowledge_case(
            "knowledge: partitions unsorted",
            "BundleFormatError",
            [[a, [["residents", "351902", [1, 2]], [*p, [1, 2]]]]],
        ),
        knowledge_case(
            "knowledge: adjacent intervals", "BundleFormatError", [[a, [[*p, [1, 5, 6, 9]]]]]
        ),
        knowledge_case("knowledge: reversed interval", "BundleFormatError", [[a, [[*p, [5, 1]]]]]),
        knowledge_case("knowledge: seq 0", "BundleFormatError", [[a, [[*p, [0, 3]]]]]),
        knowledge_case("knowledge: odd intervals", "BundleFormatError", [[a, [[*p, [1, 2, 3]]]]]),
        knowledge_case(
            "knowledge: empty collection", "BundleFormatError", [[a, [["", "", [1, 2]]]]]
        ),
        knowledge_case("knowledge: six deep", "BundleFormatError", [[a, [[*p, [[1], 2]]]]]),
    ]


def receipt_cases() -> list[Case]:
    k = Knowledge.of(Stream(A.public_key, RESIDENTS), 1, 5)
    good = Receipt.issue(B, 77, k).encode()
    old = [B.public_key, 77, k.to_wire()]
    old_sig = B.sign(b"offsync/receipt/v1\x00" + packb(old))

    def case(name: str, error: str, data: bytes) -> Case:
        return {
            "name": name,
            "section": "8.1",
            "kind": "receipt",
            "error": error,
            "input": data.hex(),
        }

    return [
        case("receipt: created 2^63", "BundleFormatError", Receipt.issue(B, 1 << 63, k).encode()),
        case("receipt: 5 items", "BundleFormatError", packb([*old, B.sign(b"x"), b""])),
        case("receipt: bad signature", "SignatureError", good[:-1] + bytes([good[-1] ^ 1])),
        case("receipt: old domain", "SignatureError", packb([*old, old_sig])),
    ]


def bundle_case(
    name: str, section: str, error: str, data: bytes, opener: str | None = None
) -> Case:
    return {
        "name": name,
        "section": section,
        "kind": "bundle",
        "error": error,
        "input": data.hex(),
        "context": {"opener_seed": None if opener is None else SEEDS[opener].hex()},
    }


def bundle_cases() -> list[Case]:
    encoded, ranges, receipts_, created = _bundle_parts()
    good = the_bundle()

    def header(**changes: Any) -> dict[str, Any]:
        base = {
            "created": created,
            "ranges": ranges.to_wire(),
            "receipts": [r.encode() for r in receipts_],
            "recipient": None,
            "relays_for": [A.public_key],
            "segments": len(encoded),
            "sender": B.public_key,
        }
        base.update(changes)
        return {k: v for k, v in sorted(base.items()) if v is not ...}

    def framed(body: list[bytes] = encoded, **changes: Any) -> bytes:
        return frame_bundle(B, packb(header(**changes)), packb(body))

    twice = [encoded[0], encoded[0]]
    one = Knowledge.of(Stream(A.public_key, RESIDENTS), 1, 5).to_wire()
    relays = sorted([A.public_key, C.public_key])
    sealed_to_centre = the_sealed_bundle()
    return [
        bundle_case(
            "bundle: version 2", "9.3.1", "BundleFormatError", good[:6] + b"\x00\x02" + good[8:]
        ),
        bundle_case("bundle: trailing byte", "9.3.1", "BundleFormatError", good + b"\x00"),
        bundle_case(
            "bundle: bad signature", "9.3.2", "SignatureError", good[:-1] + bytes([good[-1] ^ 1])
        ),
        bundle_case(
            "bundle: header without relays_for",
            "9.3.3",
            "BundleFormatError",
            framed(relays_for=...),
        ),
        bundle_case(
            "bundle: relays_for unsorted",
            "9.3.3",
            "BundleFormatError",
            framed(relays_for=relays[::-1]),
        ),
        bundle_case(
            "bundle: relays_for names the sender",
            "9.3.3",
            "BundleFormatError",
            framed(relays_for=sorted([A.public_key, B.public_key])),
        ),
        bundle_case("bundle: no receipt", "9.3.3", "BundleFormatError", framed(receipts=[])),
        bundle_case(
            "bundle: first receipt not the sender's",
            "9.3.3",
            "BundleFormatError",
            framed(receipts=[r.encode() for r in receipts_[::-1]]),
        ),
        bundle_case(
            "bundle: receipt twice",
            "9.3.3",
            "BundleFormatError",
            framed(receipts=[receipts_[0].encode()] * 2),
        ),
        bundle_case("bundle: ranges differ", "9.3.5", "BundleFormatError", framed(ranges=one)),
        bundle_case(
            "bundle: overlapping segments",
            "9.3.5",
            "BundleFormatError",
            framed(twice, ranges=one, segments=2),
        ),
        bundle_case(
            "bundle: segment count differs", "9.3.5", "BundleFormatError", framed(segments=2)
        ),
        bundle_case(
            "bundle: sealed for another", "9.3.4", "DecryptionError", sealed_to_centre, "site_a"
        ),
    ]


def token_v1(site: Identity, seq: int, hlc: int, collection: str, key: str, fields: Any) -> bytes:
    """A version-1 token (format 2's: §13 of format 2's spec), whose code is gone:
    ``[1, origin, seq, hlc, collection, key, fields_digest, signature]``."""
    digest = hashlib.blake2b(fields or b"", digest_size=16, person=b"offsync/attest").digest()
    body = [1, site.public_key, seq, hlc, collection, key, digest]
    return packb([*body, site.sign(b"offsync/attest/v1\x00" + packb(body))])


def token_cases() -> list[Case]:
    change = the_changes()[1]
    good = issue_attestation(A, change)
    v1 = token_v1(A, 2, change.hlc, change.collection, change.key, change.fields)
    body = msgpack.unpackb(good)[:-1]
    body[6] = "351902"
    outside = packb([*body, A.sign(ATTEST_DOMAIN + packb(body))])
    long_body = msgpack.unpackb(good)[:-1]
    long_body[5] = "3519010101900002" + "x" * 900
    over = packb([*long_body, A.sign(ATTEST_DOMAIN + packb(long_body))])
    assert len(good) % 3, "the text's last character has unused bits"
    text = to_text(good)
    last = text[-1]
    # A character with the same 6-bit value's high bits but a non-zero unused low bit.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    nudged = text[:-1] + alphabet[alphabet.index(last) | 1]

    def case(name: str, section: str, error: str, data: bytes | str, kind: str = "token") -> Case:
        value = data.hex() if isinstance(data, bytes) else data
        return {"name": name, "section": section, "kind": kind, "error": error, "input": value}

    return [
        case("token: version 1", "14.2", "BundleFormatError", v1),
        case("token: key outside prefix", "14.2", "BundleFormatError", outside),
        case("token: over 1024 bytes", "14.2", "LimitExceededError", over),
        case("token: bad signature", "14.2", "SignatureError", good[:-1] + bytes([good[-1] ^ 1])),
        case("token text: padding", "14.1", "BundleFormatError", text + "=", "token text"),
        case("token text: OFS1", "14.1", "BundleFormatError", "OFS1:" + text[5:], "token text"),
        case("token text: non-canonical", "14.1", "BundleFormatError", nudged, "token text"),
    ]


def read_scope_cases() -> list[Case]:
    def case(name: str, value: Any, rule: dict[str, int] | None = None) -> Case:
        return {
            "name": name,
            "section": "13.3",
            "kind": "read scope",
            "error": "BundleFormatError",
            "input": packb(value).hex(),
            "context": {"rule": rule},
        }

    return [
        case("read scope: empty prefix", {"residents": [""]}),
        case("read scope: unsorted", {"residents": ["3520", "3519"]}),
        case("read scope: star with others", {"*": [], "residents": ["35"]}),
        case("read scope: longer than L", {"residents": ["3519010"]}, dict(RULE.lengths)),
    ]


def invalid() -> dict[str, Any]:
    cases = [
        *block_cases(),
        *frame_cases(),
        *segment_cases(),
        *redacted_cases(),
        *knowledge_cases(),
        *receipt_cases(),
        *bundle_cases(),
        *token_cases(),
        *read_scope_cases(),
    ]
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names), "vector names are unique"
    return {
        "description": (
            "inputs every decoder MUST refuse, each with the error class and the section of"
            " docs/spec.md that refuses it (Appendix A lists them); kinds: block (a"
            " decompressed block, with its segment's origin, partition and first_seq),"
            " frame, segment (parse, verify, open), knowledge, receipt, bundle (open,"
            " then every segment), token, token text, read scope (msgpack of a"
            " certificate's read field, with the partition rule when it applies)"
        ),
        "cases": cases,
    }


FILES: dict[str, Callable[[], dict[str, Any]]] = {
    "basics.json": basics,
    "partitions.json": partitions,
    "frames.json": frames,
    "changes.json": changes,
    "segments.json": segments,
    "redacted.json": redacted,
    "knowledge.json": knowledge,
    "receipts.json": receipts,
    "bundles.json": bundles,
    "tokens.json": tokens,
    "invalid.json": invalid,
}


def _json_default(value: Any) -> Any:
    raise TypeError(f"not JSON: {value!r}")


def render(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, default=_json_default) + "\n"


def main() -> int:
    for name, make in FILES.items():
        (HERE / name).write_text(render(make()), encoding="utf-8")
        print(f"wrote {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    assert math.isnan(float("nan"))
    raise SystemExit(main())
