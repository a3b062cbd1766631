"""Write the known-answer vectors in this folder (run: python tests/vectors/generate.py).

Everything is derived from fixed seeds, HLC values and inputs, so running this again
with the same offsync gives the same files byte for byte. Segment blocks here are zstd
frames of raw (stored) blocks (``compression.raw_frame``), so no byte depends on a zstd
library's compressor. JSON holds bytes as hex strings; inside field inputs a bytes
value is written ``{"$bytes": hex}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import msgpack
import nacl.bindings
import nacl.pwhash
import nacl.secret

from offsync.attest import ATTEST_DOMAIN, fields_digest, issue_attestation, to_text
from offsync.bundle import build_bundle, frame_bundle, open_bundle, read_header
from offsync.change import DELETE, PUT, Change, ChangeId, encode_changes
from offsync.clock import MAX_HLC, make_hlc
from offsync.compression import raw_frame
from offsync.encoding import canonical_fields, packb
from offsync.http.bodies import encode_pull_request
from offsync.http.frames import encode_frame, end_frame
from offsync.http.signing import Challenges, challenge_key, request_message, sign_request
from offsync.identity import Identity
from offsync.knowledge import Knowledge
from offsync.receipt import RECEIPT_DOMAIN, Receipt
from offsync.segment import NO_PREVIOUS, Segment, hash32

HERE = Path(__file__).parent

SEEDS = {
    "site_a": bytes(range(32)),
    "site_b": bytes(range(32, 64)),
    "centre": b"\x42" * 32,
}
MILLIS = 1_700_000_000_000  # 2023-11-14T22:13:20Z

FIELD_CASES: list[tuple[str, dict[str, Any]]] = [
    ("empty", {}),
    ("one string", {"name": "Siti Aminah"}),
    ("keys given unsorted", {"village": "Kare", "name": "Siti", "dob": "1990-01-01"}),
    (
        "integers: every width",
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
            "m": -129,
            "n": -32769,
            "o": -2147483649,
            "p": -9223372036854775808,
        },
    ),
    ("floats are float64", {"x": 1.5, "y": -0.25, "z": 1e300}),
    ("bool, nil, bytes", {"t": True, "f": False, "nil": None, "raw": {"$bytes": "00ff10"}}),
    ("nested, sorted at every depth", {"b": {"z": [1, {"q": 2, "p": 1}], "a": []}, "a": "x"}),
    ("non-ASCII text and keys", {"nama": "Ñoño 日本", "é": "ü"}),
    (
        "sorted by code point, not by UTF-16 or locale",
        {"\uff5e": 1, "\U0001f600": 2, "Z": 3, "a": 4},
    ),
    ("long string (str16)", {"s": "x" * 300}),
]


def decode_tagged(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: decode_tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tagged(v) for v in value]
    return value


def knowledge_json(k: Knowledge) -> list[Any]:
    return [[o.hex(), flat] for o, flat in k.to_wire()]


def ids() -> dict[str, Identity]:
    return {name: Identity(seed, name) for name, seed in SEEDS.items()}


def identities() -> dict[str, Any]:
    message = b"offsync test vector"
    return {
        "description": "ed25519 identities from fixed seeds; x25519 keys derived from them",
        "message": message.hex(),
        "identities": [
            {
                "name": name,
                "seed": ident_seed.hex(),
                "ed25519_public": ident.public_key.hex(),
                "x25519_public": ident.public.box_public_key.hex(),
                "signature": ident.sign(message).hex(),
            }
            for (name, ident_seed), ident in zip(SEEDS.items(), ids().values(), strict=True)
        ],
    }


def hlc_values() -> dict[str, Any]:
    cases = [(0, 0), (1, 0), (MILLIS, 0), (MILLIS, 1), (MILLIS, 65535), ((1 << 48) - 1, 65535)]
    return {
        "description": "HLC = milliseconds << 16 | logical counter, as an unsigned 64-bit integer",
        "values": [{"millis": m, "logical": n, "hlc": make_hlc(m, n)} for m, n in cases],
    }


def fields() -> dict[str, Any]:
    return {
        "description": "canonical encoding of record fields (encoding.canonical_fields)",
        "cases": [
            {
                "name": name,
                "input": value,
                "canonical": canonical_fields(decode_tagged(value)).hex(),
            }
            for name, value in FIELD_CASES
        ],
    }


def the_changes() -> list[Change]:
    a, b = ids()["site_a"].public_key, ids()["site_b"].public_key
    rows: list[tuple[int, int, str, str, int, dict[str, Any] | None, list[ChangeId]]] = [
        (
            MILLIS,
            0,
            "residents",
            "3519010101900001",
            PUT,
            {"address": {"rt": "003", "village": "Kare"}, "name": "Siti Aminah"},
            [],
        ),
        (
            MILLIS,
            1,
            "residents",
            "3519010101900002",
            PUT,
            {"address": {"rt": "004", "village": "Kare"}, "name": "Budi Santoso"},
            [],
        ),
        (MILLIS, 2, "residents", "3519010101900001", PUT, {"village": "Mejayan"}, [ChangeId(a, 1)]),
        (
            MILLIS + 5,
            0,
            "doses",
            "3519010101900001/1",
            PUT,
            {"lot": {"$bytes": "c0ffee"}, "vaccine": "Sinovac"},
            [],
        ),
        (
            MILLIS + 9,
            3,
            "residents",
            "3519010101900002",
            DELETE,
            None,
            [ChangeId(a, 2), ChangeId(b, 7)],
        ),
    ]
    return [
        Change(
            a,
            i + 1,
            make_hlc(m, n),
            collection,
            key,
            op,
            None if f is None else canonical_fields(decode_tagged(f)),
            tuple(sorted(parents)),
        )
        for i, (m, n, collection, key, op, f, parents) in enumerate(rows)
    ]


#: The changes of site_a's first segment (1-4) and second (5).
SPLIT = 4


def changes() -> dict[str, Any]:
    chs = the_changes()
    inputs = [
        (MILLIS, 0, {"address": {"rt": "003", "village": "Kare"}, "name": "Siti Aminah"}),
        (MILLIS, 1, {"address": {"rt": "004", "village": "Kare"}, "name": "Budi Santoso"}),
        (MILLIS, 2, {"village": "Mejayan"}),
        (MILLIS + 5, 0, {"lot": {"$bytes": "c0ffee"}, "vaccine": "Sinovac"}),
        (MILLIS + 9, 3, None),
    ]
    return {
        "description": (
            "five changes of site_a and the columns a segment carries them in"
            " (change.encode_changes; seqs 1-4 and 5 form the two segments of segments.json)"
        ),
        "origin_seed": SEEDS["site_a"].hex(),
        "origin": chs[0].origin.hex(),
        "first_seq": 1,
        "changes": [
            {
                "seq": c.seq,
                "hlc_millis": m,
                "hlc_logical": n,
                "hlc": c.hlc,
                "collection": c.collection,
                "key": c.key,
                "op": c.op,
                "fields": f,
                "fields_encoded": None if c.fields is None else c.fields.hex(),
                "parents": [[p.origin.hex(), p.seq] for p in c.parents],
            }
            for c, (m, n, f) in zip(chs, inputs, strict=True)
        ],
        "encoded_1_4": encode_changes(chs[:SPLIT]).hex(),
        "encoded_5": encode_changes(chs[SPLIT:]).hex(),
    }


def the_segments() -> list[Segment]:
    a = ids()["site_a"]
    chs = the_changes()
    first = Segment.seal_block(a, 1, SPLIT, raw_frame(encode_changes(chs[:SPLIT])), NO_PREVIOUS)
    rest = len(chs) - SPLIT
    second = Segment.seal_block(
        a, SPLIT + 1, rest, raw_frame(encode_changes(chs[SPLIT:])), first.hash
    )
    return [first, second]


def segments() -> dict[str, Any]:
    return {
        "description": (
            "two chained segments of site_a's changes 1-4 and 5 (segment.Segment), their"
            " blocks zstd frames of raw blocks"
        ),
        "origin_seed": SEEDS["site_a"].hex(),
        "segments": [
            {
                "origin": s.origin.hex(),
                "first_seq": s.first_seq,
                "last_seq": s.last_seq,
                "prev_hash": s.prev_hash.hex(),
                "changes": encode_changes(s.open_changes()).hex(),
                "block": s.block.hex(),
                "block_hash": hash32(s.block).hex(),
                "signing_message": s.signing_message.hex(),
                "signature": s.signature.hex(),
                "hash": s.hash.hex(),
                "encoded": s.encode().hex(),
            }
            for s in the_segments()
        ],
    }


def the_receipt() -> Receipt:
    b = ids()["site_b"]
    k = Knowledge({ids()["site_a"].public_key: [(1, 5)], b.public_key: [(1, 7), (9, 12)]})
    return Receipt.issue(b, make_hlc(MILLIS + 60_000, 2), k)


def receipt() -> dict[str, Any]:
    r = the_receipt()
    return {
        "description": "site_b's signed statement of what it holds (receipt.Receipt)",
        "replica_seed": SEEDS["site_b"].hex(),
        "replica": r.replica.hex(),
        "created": r.created,
        "knowledge": knowledge_json(r.knowledge),
        "knowledge_encoded": r.knowledge.to_bytes().hex(),
        "signing_message": (
            RECEIPT_DOMAIN + packb([r.replica, r.created, r.knowledge.to_wire()])
        ).hex(),
        "signature": r.signature.hex(),
        "encoded": r.encode().hex(),
    }


def the_bundle() -> bytes:
    """site_b relays site_a's two segments to anyone, with its own receipt first."""
    b = ids()["site_b"]
    segs = the_segments()
    created = make_hlc(MILLIS + 61_000, 0)
    own = Receipt.issue(b, created, the_receipt().knowledge)
    passed = Receipt.issue(
        ids()["site_a"], make_hlc(MILLIS + 10, 0), Knowledge.of(segs[0].origin, 1, 5)
    )
    return build_bundle(
        b,
        [s.encode() for s in segs],
        ranges=Knowledge.of(segs[0].origin, 1, 5),
        receipts=[own, passed],
        created=created,
    )


def bundle_header() -> dict[str, Any]:
    header, _ = read_header(the_bundle())
    return {
        "description": "the msgpack header map of bundle.json's bundle (bundle.BundleHeader)",
        "sender_seed": SEEDS["site_b"].hex(),
        "header": {
            "created": header.created,
            "ranges": knowledge_json(header.ranges),
            "receipts": [r.encode().hex() for r in header.receipts],
            "recipient": None,
            "segments": header.segments,
            "sender": header.sender.hex(),
        },
        "encoded": packb(header.to_wire()).hex(),
    }


def bundle() -> dict[str, Any]:
    data = the_bundle()
    opened = open_bundle(data)
    hlen = int.from_bytes(data[8:12], "big")
    body = packb([s.encode() for s in opened.segments])
    return {
        "description": "a whole unencrypted bundle: site_b relays site_a's changes 1-5",
        "sender_seed": SEEDS["site_b"].hex(),
        "bundle": data.hex(),
        "bundle_id": opened.id.hex(),
        "header": data[12 : 12 + hlen].hex(),
        "body": body.hex(),
        "segments": [s.encode().hex() for s in opened.segments],
        "signature": data[-64:].hex(),
    }


# -- the vectors added with issue 16 (docs/spec.md §11): every other contract ---------


def tagged_json(value: Any) -> Any:
    """A value as vector JSON: bytes as ``{"$bytes": hex}``, the floats JSON cannot
    hold as ``{"$float": "nan" | "inf" | "-inf" | "-0.0"}``."""
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, float) and (
        math.isnan(value) or math.isinf(value) or (value == 0 and math.copysign(1, value) < 0)
    ):
        name = "nan" if math.isnan(value) else repr(value)
        return {"$float": {"-0.0": "-0.0", "inf": "inf", "-inf": "-inf"}.get(name, name)}
    if isinstance(value, dict):
        return {k: tagged_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tagged_json(v) for v in value]
    return value


INTEGERS = [
    0, 127, 128, 255, 256, 65535, 65536, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63,
    (1 << 64) - 1, -1, -32, -33, -128, -129, -32768, -32769, -(1 << 31), -(1 << 31) - 1,
    -(1 << 63),
]  # fmt: skip


def _int_forms(v: int) -> list[bytes]:
    """Every msgpack form that holds ``v`` (the canonical one among them)."""
    forms = []
    if 0 <= v <= 127 or -32 <= v < 0:
        forms.append(struct.pack(">b", v) if v < 0 else bytes([v]))
    for marker, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
        if 0 <= v < 1 << (8 * width):
            forms.append(bytes([marker]) + v.to_bytes(width, "big"))
    for marker, width in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        if -(1 << (8 * width - 1)) <= v < 1 << (8 * width - 1):
            forms.append(bytes([marker]) + v.to_bytes(width, "big", signed=True))
    return forms


FLOATS: list[tuple[str, float, list[str]]] = [
    ("1.5", 1.5, ["ca3fc00000"]),
    ("-0.0 (not 0.0)", -0.0, []),
    ("0.0", 0.0, ["ca00000000"]),
    ("infinity", math.inf, ["ca7f800000"]),
    ("minus infinity", -math.inf, []),
    (
        "NaN: the one quiet NaN",
        math.nan,
        ["cb7ff8000000000001", "cbfff8000000000000", "ca7fc00000"],
    ),
    ("smallest subnormal", 5e-324, []),
    ("1e300", 1e300, []),
]


def _text_case(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "text": text, "utf8": text.encode().hex(), "encoded": packb(text).hex()}


def edge_cases() -> dict[str, Any]:
    ints = []
    for v in INTEGERS:
        forms = _int_forms(v)
        canonical = packb(v)
        assert canonical in forms
        ints.append(
            {
                "value": v,
                "encoded": canonical.hex(),
                "other_forms": [f.hex() for f in forms if f != canonical],
            }
        )
    floats = [
        {"name": name, "value": tagged_json(v), "encoded": packb(v).hex(), "other_forms": other}
        for name, v, other in FLOATS
    ]
    texts = [
        _text_case("empty", ""),
        _text_case("fixstr of 31 bytes", "a" * 31),
        _text_case("str8 of 32 bytes (d9)", "a" * 32),
        _text_case("str8 of 255 bytes", "a" * 255),
        _text_case("str16 of 256 bytes (da)", "a" * 256),
        _text_case("é precomposed (NFC)", "\u00e9"),
        _text_case("é decomposed (NFD): another string", "e\u0301"),
        _text_case("astral code point", "\U0001f600"),
    ]
    binaries = [
        {"name": n, "value": b.hex(), "encoded": packb(b).hex()}
        for n, b in (
            ("empty", b""),
            ("bin8 of 255", b"\x07" * 255),
            ("bin16 of 256", b"\x07" * 256),
        )
    ]
    return {
        "description": (
            "canonical msgpack (docs/spec.md §1): each integer's one valid form among"
            " the forms msgpack has for it (256: cd0100, never d10100), floats as float64"
            " with one NaN and -0.0 kept, str and bin length headers, strings not"
            " normalised; the valid HLC range (§3); an empty nested map's one reading (§4.2)"
        ),
        "integers": ints,
        "floats": floats,
        "strings": texts,
        "not_utf8": [
            {"name": "a surrogate (U+D800 as ed a0 80)", "encoded": "a3eda080"},
            {"name": "an overlong /", "encoded": "a2c0af"},
            {"name": "above U+10FFFF", "encoded": "a4f4908080"},
        ],
        "binaries": binaries,
        "hlc": {
            "smallest": 0,
            "largest": MAX_HLC,
            "largest_millis": MAX_HLC >> 16,
            "largest_logical": MAX_HLC & 0xFFFF,
            "largest_encoded": packb(MAX_HLC).hex(),
            "first_invalid": MAX_HLC + 1,
            "first_invalid_encoded": packb(MAX_HLC + 1).hex(),
        },
        "empty_nested_map": {
            "fields": {"a": {}, "b": 1},
            "fields_encoded": canonical_fields({"a": {}, "b": 1}).hex(),
            "shape": [["a", []], "b"],
            "columns": encode_changes(
                [
                    Change(
                        ids()["site_a"].public_key,
                        1,
                        make_hlc(MILLIS, 0),
                        "c",
                        "k",
                        PUT,
                        canonical_fields({"a": {}, "b": 1}),
                        (),
                    )
                ]
            ).hex(),
        },
    }


#: Frames of the columns of changes 1-4 made once by python-zstandard 0.23 (zstd
#: 1.5.7), kept as constants: a compressor's output may differ between versions,
#: every decoder must open these.
COMPRESSED_LEVEL_3 = (
    "28b52ffd20fa8d0700e28e3936506ddba0141b6520a1b5ad72c389428ebd667d9b7a6c4a0d7b4b4041"
    "79a5d51df1bb5ac4c287f512c53ab4196e571ba7fe7983dadf291acc900c0354a2e3d22010a2881c1f1b"
    "cfd68410783c5c342ca2918d008e227d9f354d5333b3ae9dbcbc5fa46453bebcffef8c980e75c1cbfbb3"
    "852decce49b21442e18233afed244816b393c5ef779f7cf59a1a50fe83183b4c8cddefdfb60974d7f55a"
    "8a9a99875955f7b976e605d5cdac2a9b79d8f5798ceb45e9f4fe3759f0919c0127638c31236346226030"
    "b4a552710ddd5de38a2d1ac2d8add4e27a553c4909808b2074770ec868028eb42702008a49a50adc1e"
)
COMPRESSED_LEVEL_19_CHECKSUM = (
    "28b52ffd24fa6d0700420d342f60770ee17694c9577ca1dc2e8d1f864ea9906c368134c541b0865c58"
    "dda52dd53332df07c4307e20d8be887d109101a6c7ba9443fecc1215824904ca6a97d02ab921689b44cb"
    "00cbb9066ae07bfd699ae9c87788dbad81d773ecc1193d399deb9f631f4b8ec36f674e4485c17c6b20df"
    "2e7798b216f0d2249694ce6f304090f4eba328c0b336d57c5b2c7814497f6a0de6257dc1a2b83ba7921c"
    "7def9acc199ffed1ab185d75a15ef071c1c7753056a9a150b069da751fb3a9975ce7dd35897add4e6061"
    "9e67adc5d862202f9686020a0830370f60406ed27ef9724e76cc6748637eef588ecf47f3093da2d6f7"
)


def rle_frame(byte: int, count: int) -> bytes:
    """A frame of ``count`` copies of ``byte`` as one RLE block (type 1)."""
    header = (count << 3 | 1 << 1 | 1).to_bytes(3, "little")
    return b"\x28\xb5\x2f\xfd\xe0" + count.to_bytes(8, "little") + header + bytes([byte])


def compressed_blocks() -> dict[str, Any]:
    a = ids()["site_a"]
    columns = encode_changes(the_changes()[:SPLIT])
    frames = [
        ("zstd level 3: one compressed block (type 2)", bytes.fromhex(COMPRESSED_LEVEL_3)),
        (
            "zstd level 19 with a content checksum: one compressed block",
            bytes.fromhex(COMPRESSED_LEVEL_19_CHECKSUM),
        ),
        ("the raw frame of the same columns (segments.json)", raw_frame(columns)),
    ]
    sealed = Segment.seal_block(a, 1, SPLIT, frames[1][1], NO_PREVIOUS)
    return {
        "description": (
            "blocks that are not raw frames (docs/spec.md §5.1): changes 1-4's columns"
            " compressed by zstd (fixed bytes), an RLE block, and the segment sealed with"
            " the level-19 frame (its signature and hash differ from the raw frame's)"
        ),
        "columns": columns.hex(),
        "frames": [
            {"name": name, "frame": frame.hex(), "block_hash": hash32(frame).hex()}
            for name, frame in frames
        ],
        "rle": {"frame": rle_frame(0x90, 300).hex(), "content": (b"\x90" * 300).hex()},
        "segment": {
            "origin_seed": SEEDS["site_a"].hex(),
            "first_seq": 1,
            "last_seq": SPLIT,
            "prev_hash": NO_PREVIOUS.hex(),
            "signing_message": sealed.signing_message.hex(),
            "signature": sealed.signature.hex(),
            "hash": sealed.hash.hex(),
            "encoded": sealed.encode().hex(),
        },
    }


EPHEMERAL_SECRET = bytes(range(200, 232))  # the sealed body's ephemeral X25519 key


def sealed_box(plain: bytes, recipient: bytes, ephemeral_secret: bytes) -> bytes:
    """libsodium's crypto_box_seal with a given ephemeral key: ``epk ‖ box``, the nonce
    being BLAKE2b-192(epk ‖ recipient's X25519 key)."""
    rpk = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(recipient)
    epk = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
    nonce = hashlib.blake2b(epk + rpk, digest_size=24).digest()
    return epk + nacl.bindings.crypto_box_easy(plain, nonce, rpk, ephemeral_secret)


def the_sealed_bundle() -> bytes:
    """bundle.json's bundle, sealed to the centre."""
    b, centre = ids()["site_b"], ids()["centre"]
    header, _ = read_header(the_bundle())
    wire = header.to_wire()
    wire["recipient"] = centre.public_key
    plain = packb([s.encode() for s in the_segments()])
    return frame_bundle(b, packb(wire), sealed_box(plain, centre.public_key, EPHEMERAL_SECRET))


def sealed_bundle() -> dict[str, Any]:
    data = the_sealed_bundle()
    hlen = int.from_bytes(data[8:12], "big")
    body_at = 16 + hlen
    centre = ids()["centre"]
    epk = nacl.bindings.crypto_scalarmult_base(EPHEMERAL_SECRET)
    return {
        "description": (
            "bundle.json's bundle sealed to the centre (docs/spec.md §7.2): libsodium"
            " crypto_box_seal with the ephemeral X25519 secret fixed for the vector"
        ),
        "sender_seed": SEEDS["site_b"].hex(),
        "recipient_seed": SEEDS["centre"].hex(),
        "recipient_x25519": centre.public.box_public_key.hex(),
        "ephemeral_secret": EPHEMERAL_SECRET.hex(),
        "ephemeral_public": epk.hex(),
        "nonce": hashlib.blake2b(epk + centre.public.box_public_key, digest_size=24).digest().hex(),
        "plain_body": packb([s.encode() for s in the_segments()]).hex(),
        "header": data[12 : 12 + hlen].hex(),
        "body": data[body_at : len(data) - 64].hex(),
        "bundle": data.hex(),
        "bundle_id": hash32(data).hex(),
    }


KEYFILE_PASSPHRASE = "kunci Ñoño 日本"
KEYFILE_SALT = bytes(range(16))
KEYFILE_NONCE = bytes(range(100, 124))
KEYFILE_OPSLIMIT = 2
KEYFILE_MEMLIMIT = 65536


def the_key_file() -> tuple[bytes, bytes, bytes]:
    """site_a's key file with a fixed salt and nonce, the derived key and the box."""
    a = ids()["site_a"]
    key = nacl.pwhash.argon2id.kdf(
        32,
        KEYFILE_PASSPHRASE.encode(),
        KEYFILE_SALT,
        opslimit=KEYFILE_OPSLIMIT,
        memlimit=KEYFILE_MEMLIMIT,
    )
    box = bytes(nacl.secret.SecretBox(key).encrypt(SEEDS["site_a"], KEYFILE_NONCE))
    doc = {
        "box": box,
        "format": "offsync-identity",
        "kdf": "argon2id",
        "label": "site_a",
        "memlimit": KEYFILE_MEMLIMIT,
        "opslimit": KEYFILE_OPSLIMIT,
        "public_key": a.public_key,
        "salt": KEYFILE_SALT,
        "version": 1,
    }
    return packb(doc), key, box


def keyfile() -> dict[str, Any]:
    data, key, box = the_key_file()
    return {
        "description": (
            "site_a's key file (docs/spec.md §2.1): argon2id (libsodium crypto_pwhash,"
            " ALG_ARGON2ID13) of the passphrase's UTF-8 bytes, then an XSalsa20-Poly1305"
            " secretbox of the seed; salt and nonce fixed, small argon2id costs"
        ),
        "seed": SEEDS["site_a"].hex(),
        "passphrase": KEYFILE_PASSPHRASE,
        "passphrase_utf8": KEYFILE_PASSPHRASE.encode().hex(),
        "salt": KEYFILE_SALT.hex(),
        "opslimit": KEYFILE_OPSLIMIT,
        "memlimit": KEYFILE_MEMLIMIT,
        "derived_key": key.hex(),
        "nonce": KEYFILE_NONCE.hex(),
        "box": box.hex(),
        "public_key": ids()["site_a"].public_key.hex(),
        "encoded": data.hex(),
    }


def _state_records() -> list[tuple[str, str, bytes]]:
    """The visible records after bundle.json's changes, in (collection, key) order."""
    return [
        ("doses", "3519010101900001/1", the_changes()[3].fields or b""),
        (
            "residents",
            "3519010101900001",
            canonical_fields(
                {
                    "address": {"rt": "003", "village": "Kare"},
                    "name": "Siti Aminah",
                    "village": "Mejayan",
                }
            ),
        ),
    ]


def state_digest() -> dict[str, Any]:
    domain = b"offsync/state/v1\x00"
    items = [packb([c, k, f]) for c, k, f in _state_records()]
    return {
        "description": (
            "the state digest (docs/spec.md §8) of the visible records that bundle.json's"
            " changes leave (residents ...002 is deleted): BLAKE2b-256 of the domain and"
            " each msgpack([collection, key, fields as bin]) in (collection, key) order"
        ),
        "domain": domain.hex(),
        "records": [
            {"collection": c, "key": k, "fields_encoded": f.hex(), "item": i.hex()}
            for (c, k, f), i in zip(_state_records(), items, strict=True)
        ],
        "digest": hash32(domain + b"".join(items)).hex(),
        "empty_digest": hash32(domain).hex(),
    }


def attestations() -> dict[str, Any]:
    a = ids()["site_a"]
    out = []
    for change in (the_changes()[0], the_changes()[4]):
        token = issue_attestation(a, change)
        digest = fields_digest(change.fields)
        body = [1, change.origin, change.seq, change.hlc, change.collection, change.key, digest]
        out.append(
            {
                "seq": change.seq,
                "fields_encoded": None if change.fields is None else change.fields.hex(),
                "fields_digest": digest.hex(),
                "signing_message": (ATTEST_DOMAIN + packb(body)).hex(),
                "token": token.hex(),
                "text": to_text(token),
            }
        )
    return {
        "description": (
            "attestation tokens of version 1 (docs/spec.md §13) for site_a's change 1 (a"
            " put) and 5 (a delete: the digest of empty input), with their OFS1: texts"
        ),
        "origin_seed": SEEDS["site_a"].hex(),
        "tokens": out,
    }


HTTP_CHALLENGE_RANDOM = bytes(range(16))
HTTP_LIFETIME_MS = 300_000


def http() -> dict[str, Any]:
    centre, a = ids()["centre"], ids()["site_a"]
    issued = MILLIS + 120_000
    key = challenge_key(centre)
    challenge = Challenges(key, centre.public_key, HTTP_LIFETIME_MS).issue(
        issued, HTTP_CHALLENGE_RANDOM
    )
    knowledge = Knowledge({a.public_key: [(1, 3)], ids()["site_b"].public_key: [(1, 7)]})
    body = encode_pull_request(knowledge, 1 << 20, True)
    bundle = the_bundle()
    return {
        "description": (
            "HTTP (docs/spec.md §14): a challenge of the centre (informative form: issued"
            " ms, random, MAC), site_a's pull request body, the signing message and"
            " headers, and pull answers framed (a bundle then end, a bundle then more)"
        ),
        "server_seed": SEEDS["centre"].hex(),
        "site_seed": SEEDS["site_a"].hex(),
        "challenge": {
            "key": key.hex(),
            "issued_ms": issued,
            "random": HTTP_CHALLENGE_RANDOM.hex(),
            "challenge": challenge.hex(),
        },
        "pull_request": {
            "knowledge": knowledge_json(knowledge),
            "max_bytes": 1 << 20,
            "encrypt": True,
            "body": body.hex(),
            "body_hash": hash32(body).hex(),
            "signing_message": request_message(
                centre.public_key, "pull", a.public_key, challenge, body
            ).hex(),
            "headers": sign_request(a, centre.public_key, "pull", body, challenge),
        },
        "answers": {
            "bundle": bundle.hex(),
            "complete": (encode_frame(bundle) + end_frame(False)).hex(),
            "cut": (encode_frame(bundle) + end_frame(True)).hex(),
        },
    }


def disk_manifest() -> dict[str, Any]:
    b, centre = ids()["site_b"], ids()["centre"]
    bundle = the_bundle()
    bid = hash32(bundle).hex()
    doc: dict[str, Any] = {
        "format": "offsync-disk/1",
        "sender": b.public_key.hex(),
        "recipient": centre.public_key.hex(),
        "generation": 1,
        "bundles": [{"file": f"{bid[:32]}.ofb", "size": len(bundle), "blake2b": bid}],
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return {
        "description": (
            "a removable-disk manifest (docs/spec.md §15.2): site_b's bundle.json bundle"
            " for the centre, the canonical JSON its checksum is computed over, the"
            " checksum, and the file's path and text as offsync writes it"
        ),
        "bundle_id": bid,
        "manifest": doc,
        "canonical_json": canonical,
        "checksum": hash32(canonical.encode()).hex(),
        "path": (
            f"OFFSYNC/to-{centre.public_key.hex()[:32]}/from-{b.public_key.hex()[:32]}-00000001.man"
        ),
        "bundle_path": f"OFFSYNC/to-{centre.public_key.hex()[:32]}/{bid[:32]}.ofb",
        "file": json.dumps({**doc, "checksum": hash32(canonical.encode()).hex()}, indent=1),
    }


# -- invalid vectors (docs/spec.md Appendix A): what every decoder MUST refuse ---------

Case = dict[str, Any]


def _case(
    name: str, section: str, kind: str, error: str, data: bytes | str, **context: Any
) -> Case:
    out: Case = {
        "name": name,
        "section": section,
        "kind": kind,
        "error": error,
        "input": data if isinstance(data, str) else data.hex(),
    }
    if context:
        out["context"] = context
    return out


def _base_columns() -> list[Any]:
    """Changes 1-4's columns, decoded: what the block vectors mutate."""
    return list(msgpack.unpackb(encode_changes(the_changes()[:SPLIT]), raw=False))


def _with(column: int, value: Any) -> bytes:
    cols = _base_columns()
    cols[column] = value
    return packb(cols)


def _patched(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, (old, data)
    return data.replace(old, new)


def _one_put(value: bytes = b"\x01", **columns: Any) -> bytes:
    """One put ``{"v": value}`` of key ``k`` in collection ``c`` at seq 1 of site_a,
    with any column replaced, and the value's bytes spliced in as they are."""
    marker = "MARKER-VALUE"
    cols: list[Any] = [
        [MILLIS << 16],
        ["c"],
        [0],
        [0],
        ["k"],
        [["v"]],
        [0],
        [[[None, [marker]]]],
        [[]],
    ]
    names = [
        "hlc",
        "collections",
        "collection",
        "key_prefix",
        "key_suffix",
        "shapes",
        "shape",
        "values",
        "parents",
    ]
    for name, column in columns.items():
        cols[names.index(name)] = column
    data = packb(cols)
    return _patched(data, packb(marker), value) if packb(marker) in data else data


def _rows(values: list[Any], column: list[Any]) -> bytes:
    """Puts ``{"v": ...}`` of keys k0, k1, ... with ``column`` as their one value column."""
    n = len(values)
    keys = [f"k{i}" for i in range(n)]
    return packb(
        [[MILLIS << 16] + [1] * (n - 1), ["c"], [0] * n, [0] + [1] * (n - 1),
         [keys[0]] + [k[1:] for k in keys[1:]], [["v"]], [0] * n, [[column]], [[]] * n]
    )  # fmt: skip


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def invalid_blocks() -> list[Case]:
    a = ids()["site_a"].public_key
    b = ids()["site_b"].public_key
    ctx = {"origin": a.hex(), "first_seq": 1}
    base = encode_changes(the_changes()[:SPLIT])
    cols = _base_columns()
    BFE, LEE = "BundleFormatError", "LimitExceededError"

    def block(name: str, section: str, data: bytes, error: str = BFE, **more: Any) -> Case:
        return _case(name, section, "block", error, data, **ctx, **more)

    shapes, values = cols[5], cols[7]
    deep_shape: Any = ["v"]
    for _ in range(16):
        deep_shape = [["a", deep_shape]]
    return [
        block("block: integer not shortest", "4.3.1", _patched(base, b"\x94\x00\x00\x00\x01", b"\x94\xcc\x00\x00\x00\x01")),
        block("block: 256 in its signed form", "4.3.1", _one_put(b"\xd1\x01\x00")),
        block("block: float32", "4.3.1", _one_put(bytes.fromhex("ca3fc00000"))),
        block("block: extension type", "4.3.1", _one_put(bytes.fromhex("d40100"))),
        block("block: timestamp", "4.3.1", _one_put(bytes.fromhex("d6ff00000000"))),
        block("block: invalid UTF-8", "4.3.1", _one_put(bytes.fromhex("a3eda080"))),
        block("block: map keys unsorted", "4.3.1", _one_put(bytes.fromhex("82a162c0a161c0"))),
        block("block: nested over 1024", "4.3.1", _one_put(b"\x91" * 1030 + b"\xc0"), LEE),
        block("block: 8 columns", "4.3.2", packb(cols[:8])),
        block("block: no change", "4.3.3", packb([[], [], [], [], [], [], [], [], []])),
        block("block: collection column too short", "4.3.3", _with(2, [0, 0, 1])),
        block("block: bool in an int column", "4.3.3", _with(3, [0, True, 15, 0])),
        block("block: hlc 2^63", "4.3.4", _with(0, [1 << 63, 0, 0, 0])),
        block("block: hlc 2^64 - 1 (hlc.json's last case)", "4.3.4", _with(0, [(1 << 64) - 1, 0, 0, 0])),
        block("block: negative hlc", "4.3.4", _with(0, [-1, 1, 1, 1])),
        block("block: empty collection", "4.3.5", _with(1, ["", "doses"])),
        block("block: collection over 64 bytes", "4.3.5", _with(1, ["residents", "d" * 65]), LEE),
        block("block: collection twice", "4.3.5", _with(1, ["residents", "residents"])),
        block("block: collection index outside", "4.3.5", _with(2, [0, 0, 0, 2])),
        block("block: unused collection", "4.3.5", _with(1, ["residents", "doses", "extra"])),
        block("block: collections out of order", "4.3.5", packb([*cols[:1], ["doses", "residents"], [1, 1, 1, 0], *cols[3:]])),
        block("block: first key prefix not 0", "4.3.6", _with(3, [1, *cols[3][1:]])),
        block("block: key prefix too long", "4.3.6", _with(3, [0, 17, *cols[3][2:]])),
        block("block: key prefix not the longest", "4.3.6", packb([*cols[:3], [0, 14, *cols[3][2:]], [cols[4][0], "0" + cols[4][1], *cols[4][2:]], *cols[5:]])),
        block("block: empty key", "4.3.6", _one_put(key_suffix=[""])),
        block("block: key over 512 bytes", "4.3.6", _one_put(key_suffix=["k" * 513]), LEE),
        block("block: 65 parents", "4.3.7", _one_put(parents=[[[b, s] for s in range(1, 66)]]), LEE),
        block("block: parents unsorted", "4.3.7", _one_put(parents=[[[b, 2], [b, 1]]])),
        block("block: parent twice", "4.3.7", _one_put(parents=[[[b, 1], [b, 1]]])),
        block("block: parent from the future", "4.3.7", _one_put(parents=[[[a, 1]]])),
        block("block: parent origin of 31 bytes", "4.3.7", _one_put(parents=[[[b[:31], 1]]])),
        block("block: parent seq 0", "4.3.7", _one_put(parents=[[[b, 0]]])),
        block("block: shape names unsorted", "4.3.8", _with(5, [[shapes[0][1], shapes[0][0]], *shapes[1:]])),
        block("block: shape nested 17 deep", "4.3.8", _one_put(shapes=[deep_shape])),
        block("block: shape index outside", "4.3.8", _with(6, [0, 0, 1, 3])),
        block("block: unused shape", "4.3.8", packb([*cols[:5], [*shapes, ["zzz"]], cols[6], [*values, [[None, []]]], cols[8]])),
        block("block: shape twice", "4.3.8", _rows_shapes_twice()),
        block("block: shapes out of order", "4.3.8", packb([*cols[:5], [shapes[1], shapes[0], shapes[2]], [1, 1, 0, 2], [values[1], values[0], values[2]], cols[8]])),
        block("block: empty map as a leaf", "4.3.8", _one_put(b"\x80")),
        block("block: map as a leaf", "4.3.8", _one_put(bytes.fromhex("81a17801"))),
        block("block: missing column", "4.3.9", packb([*cols[:7], [values[0][:2], *values[1:]], cols[8]])),
        block("block: short plain column", "4.3.9", _one_put(values=[[[None, []]]])),
        block("block: index outside table", "4.3.9", _rows(["x", "y", "x", "y"], [["x", "y"], b"\x00\x01\x00\x02"])),
        block("block: table out of order", "4.3.9", _rows(["x", "y", "x", "y"], [["y", "x"], b"\x01\x00\x01\x00"])),
        block("block: unused table value", "4.3.9", _rows(["x", "y"] * 4, [["x", "y", "z"], b"\x00\x01" * 4])),
        block("block: table over half the rows", "4.3.9", _rows(["x", "y", "z", "x"], [["x", "y", "z"], b"\x00\x01\x02\x00"])),
        block("block: table of ints", "4.3.9", _rows([1, 2, 1, 2], [[1, 2], b"\x00\x01\x00\x01"])),
        block("block: plain column of repeats", "4.3.9", _rows(["x", "y", "x", "y"], [None, ["x", "y", "x", "y"]])),
        block("block: NaN with a payload", "4.3.10", _one_put(bytes.fromhex("cb7ff8000000000001"))),
        block("block: field value at level 501", "4.3.10", _one_put(packb(_nested(500, 0)))),
        block("block: fields over max_fields_bytes (64 for the vector)", "4.3.10", _one_put(packb("x" * 100)), LEE, limits={"max_fields_bytes": 64}),
    ]  # fmt: skip


def _rows_shapes_twice() -> bytes:
    return packb(
        [[MILLIS << 16, 1], ["c"], [0, 0], [0, 1], ["k0", "1"], [["v"], ["v"]], [0, 1],
         [[[None, [1]]], [[None, [2]]]], [[], []]]
    )  # fmt: skip


def _frame(descriptor: bytes, size_field: bytes, blocks: bytes, tail: bytes = b"") -> bytes:
    return b"\x28\xb5\x2f\xfd" + descriptor + size_field + blocks + tail


def invalid_frames() -> list[Case]:
    cols = encode_changes(the_changes()[:SPLIT])
    n = len(cols)
    raw = raw_frame(cols)
    blocks = raw[13:]
    size8 = n.to_bytes(8, "little")
    last_raw = (n << 3 | 1).to_bytes(3, "little")
    BFE, LEE = "BundleFormatError", "LimitExceededError"

    def frame(name: str, data: bytes, error: str = BFE) -> Case:
        return _case(name, "5.1", "frame", error, data)

    return [
        frame("frame: no magic", b"\x28\xb5\x2f\xfe" + raw[4:]),
        frame("frame: skippable frame", (0x184D2A50).to_bytes(4, "little") + b"\x00" * 4 + raw),
        frame("frame: no content size", _frame(b"\x00\x50", b"", blocks)),
        frame("frame: dictionary", _frame(b"\xe1\x01", size8, blocks)),
        frame("frame: trailing byte", raw + b"\x00"),
        frame("frame: second frame", raw + raw),
        frame("frame: reserved block type", _frame(b"\xe0", size8, (n << 3 | 3 << 1 | 1).to_bytes(3, "little") + cols)),
        frame("frame: bad checksum", _frame(b"\xe4", size8, blocks, b"\x00\x00\x00\x00")),
        frame("frame: content shorter than declared", _frame(b"\xe0", (n + 1).to_bytes(8, "little"), blocks)),
        frame("frame: content longer than declared", _frame(b"\xe0", (n - 1).to_bytes(8, "little"), blocks)),
        frame("frame: truncated", raw[:-1]),
        frame("frame: declared 65 MiB", _frame(b"\xe0", (65 << 20).to_bytes(8, "little"), last_raw + cols), LEE),
        frame("frame: window of 16 MiB, not single-segment", _frame(b"\xc0\x70", size8, blocks), LEE),
    ]  # fmt: skip


def _resign(wire: list[Any], signer: Identity | None = None) -> bytes:
    """A segment of ``wire`` (6 items) with its signature made over what it says."""
    origin, first, last, prev, block, _ = wire
    msg = b"".join(
        (b"offsync/segment/v2\x00", origin, first.to_bytes(8, "big"), last.to_bytes(8, "big"),
         hash32(block), prev)
    )  # fmt: skip
    return packb([origin, first, last, prev, block, (signer or ids()["site_a"]).sign(msg)])


#: The group order of ed25519; S + L is the non-canonical twin of S.
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def invalid_segments() -> list[Case]:
    first, second = the_segments()
    w1, w2 = first.to_wire(), second.to_wire()
    sig = first.signature
    s_plus_l = (int.from_bytes(sig[32:], "little") + ED25519_L).to_bytes(32, "little")
    small_order = bytes([1]) + bytes(31)  # the identity point
    BFE, LEE, SE = "BundleFormatError", "LimitExceededError", "SignatureError"

    def segment(name: str, section: str, data: bytes, error: str = BFE) -> Case:
        return _case(name, section, "segment", error, data)

    return [
        segment("segment: 7 items", "5.2", packb([*w1, b""])),
        segment("segment: first_seq 0", "5.2", _resign([w1[0], 0, 4, w1[3], w1[4], b""])),
        segment("segment: last before first", "5.2", _resign([w1[0], 5, 4, w2[3], w1[4], b""])),
        segment("segment: last_seq 2^63", "5.2", _resign([w1[0], 5, 1 << 63, w2[3], w1[4], b""])),
        segment("segment: more than max_segment_changes", "5.2", _resign([w1[0], 1, 100_001, w1[3], w1[4], b""]), LEE),
        segment("segment: first with a predecessor", "5.2", _resign([*w1[:3], b"\x01" * 32, *w1[4:]])),
        segment("segment: later without a predecessor", "5.2", _resign([*w2[:3], NO_PREVIOUS, *w2[4:]])),
        segment("segment: origin of 31 bytes", "5.2", packb([w1[0][:31], *w1[1:]])),
        segment("segment: non-canonical", "5.2", _patched(first.encode(), b"\x96\xc4\x20" + w1[0] + b"\x01", b"\x96\xc4\x20" + w1[0] + b"\xcc\x01")),
        segment("segment: bad signature", "5.2", packb([*w1[:5], sig[:63] + bytes([sig[63] ^ 1])]), SE),
        segment("segment: signature of another block", "5.2", packb([*w1[:4], w2[4], sig]), SE),
        segment("segment: signature S not below L", "1", packb([*w1[:5], sig[:32] + s_plus_l]), SE),
        segment("segment: small-order origin key", "1", packb([small_order, *w1[1:]]), SE),
        segment("segment: count differs from block", "4.3.3", _resign([w1[0], 1, 3, *w1[3:]])),
        segment("segment: block not a frame", "5.1", _resign([*w1[:4], encode_changes(the_changes()[:SPLIT]), b""])),
    ]  # fmt: skip


def invalid_knowledge() -> list[Case]:
    a, b = ids()["site_a"].public_key, ids()["site_b"].public_key
    lo, hi = sorted((a, b))
    BFE, LEE = "BundleFormatError", "LimitExceededError"

    def know(name: str, wire: Any, error: str = BFE) -> Case:
        return _case(name, "6", "knowledge", error, packb(wire))

    return [
        know("knowledge: not an array", {"a": 1}),
        know("knowledge: origins unsorted", [[hi, [1, 2]], [lo, [1, 2]]]),
        know("knowledge: origin twice", [[lo, [1, 2]], [lo, [4, 5]]]),
        know("knowledge: origin of 31 bytes", [[lo[:31], [1, 2]]]),
        know("knowledge: origin without intervals", [[lo, []]]),
        know("knowledge: odd intervals", [[lo, [1, 2, 4]]]),
        know("knowledge: reversed interval", [[lo, [3, 2]]]),
        know("knowledge: seq 0", [[lo, [0, 2]]]),
        know("knowledge: seq 2^63", [[lo, [1, 1 << 63]]]),
        know("knowledge: adjacent intervals", [[lo, [1, 2, 3, 4]]]),
        know("knowledge: overlapping intervals", [[lo, [1, 3, 2, 4]]]),
        know("knowledge: nested four deep", [[lo, [[1, 2]]]]),
        _case("knowledge: non-canonical", "6", "knowledge", BFE, _patched(packb([[lo, [1, 2]]]), b"\x92\x01\x02", b"\x92\xcc\x01\x02")),
        _case("knowledge: more than max_intervals (10 for the vector)", "6", "knowledge", LEE, packb([[lo, [i for j in range(11) for i in (3 * j + 1, 3 * j + 1)]]]), limits={"max_intervals": 10}),
    ]  # fmt: skip


def invalid_receipts() -> list[Case]:
    b = ids()["site_b"]
    r = the_receipt()
    wire = [r.replica, r.created, r.knowledge.to_wire()]

    def signed(created: int) -> bytes:
        body = [r.replica, created, wire[2]]
        return packb([*body, b.sign(RECEIPT_DOMAIN + packb(body))])

    BFE, SE = "BundleFormatError", "SignatureError"

    def receipt(name: str, data: bytes, error: str = BFE) -> Case:
        return _case(name, "6", "receipt", error, data)

    good = r.encode()
    return [
        receipt("receipt: 5 items", packb([*wire, r.signature, 0])),
        receipt("receipt: created 2^63", signed(1 << 63)),
        receipt("receipt: created 2^64 - 1 (hlc.json's last case)", signed((1 << 64) - 1)),
        receipt("receipt: non-canonical", _patched(good, packb(r.created), b"\xd3" + r.created.to_bytes(8, "big"))),
        receipt("receipt: signature of 63 bytes", packb([*wire, r.signature[:63]])),
        receipt("receipt: bad signature", packb([*wire, r.signature[:63] + bytes([r.signature[63] ^ 1])]), SE),
        receipt("receipt: signed by another key", packb([ids()["site_a"].public_key, *wire[1:], r.signature]), SE),
    ]  # fmt: skip


def _bundle(header: dict[str, Any], body: bytes, signer: Identity | None = None) -> bytes:
    return frame_bundle(signer or ids()["site_b"], packb(header), body)


def invalid_bundles() -> list[Case]:
    good = the_bundle()
    header, body = read_header(good)
    wire = header.to_wire()
    segs = [s.encode() for s in the_segments()]
    w1, w2 = (s.to_wire() for s in the_segments())
    BFE, LEE, SE, DE = (
        "BundleFormatError",
        "LimitExceededError",
        "SignatureError",
        "DecryptionError",
    )

    def bundle(
        name: str, section: str, data: bytes, error: str = BFE, opener: str | None = None
    ) -> Case:
        return _case(name, section, "bundle", error, data, opener_seed=opener)

    def header_with(**fields: Any) -> bytes:
        return _bundle({**wire, **fields}, body)

    def without(key: str) -> bytes:
        return _bundle({k: v for k, v in wire.items() if k != key}, body)

    sealed = the_sealed_bundle()
    hlen = int.from_bytes(sealed[8:12], "big")
    sealed_body = sealed[16 + hlen : -64]
    sealed_header = msgpack.unpackb(sealed[12 : 12 + hlen], raw=False)
    altered = sealed_body[:-1] + bytes([sealed_body[-1] ^ 1])
    return [
        bundle("bundle: bad magic", "7.3.1", b"OFSYNX" + good[6:]),
        bundle("bundle: version 1", "7.3.1", good[:6] + b"\x00\x01" + good[8:]),
        bundle("bundle: version 3", "7.3.1", good[:6] + b"\x00\x03" + good[8:]),
        bundle("bundle: trailing byte", "7.3.1", good + b"\x00"),
        bundle("bundle: truncated", "7.3.1", good[:-1]),
        bundle("bundle: header length over max_header_bytes", "7.3.1", good[:8] + (5 << 20).to_bytes(4, "big") + good[12:], LEE),
        bundle("bundle: bad signature", "7.3.2", good[:-1] + bytes([good[-1] ^ 1]), SE),
        bundle("bundle: header not canonical", "7.3.2", frame_bundle(ids()["site_b"], _patched(packb(wire), b"\xa8segments\x02", b"\xa8segments\xcc\x02"), body)),
        bundle("bundle: header without segments", "7.3.3", without("segments")),
        bundle("bundle: header with another key", "7.3.3", header_with(zzz=1)),
        bundle("bundle: created 2^63", "7.3.3", header_with(created=1 << 63)),
        bundle("bundle: no receipt", "7.3.3", header_with(receipts=[])),
        bundle("bundle: first receipt not the sender's", "7.3.3", header_with(receipts=list(reversed(wire["receipts"])))),
        bundle("bundle: a receipt with created 2^64 - 1", "7.3.3", header_with(receipts=[wire["receipts"][0], bytes.fromhex(invalid_receipts()[2]["input"])])),
        bundle("bundle: recipient of 31 bytes", "7.3.3", header_with(recipient=b"\x01" * 31)),
        bundle("bundle: sealed for another site", "7.3.4", sealed, DE, SEEDS["site_a"].hex()),
        bundle("bundle: sealed body altered", "7.3.4", _bundle(sealed_header, altered), DE, SEEDS["centre"].hex()),
        bundle("bundle: segment count differs", "7.3.5", header_with(segments=3)),
        bundle("bundle: body not an array of bin", "7.3.5", _bundle(wire, packb(["x", "y"]))),
        bundle("bundle: ranges differ", "7.3.5", header_with(ranges=Knowledge.of(ids()["site_a"].public_key, 1, 4).to_wire())),
        bundle("bundle: overlapping segments", "7.3.5", _bundle({**wire, "segments": 3}, packb([*segs, segs[1]]))),
        bundle("bundle: segment with a bad signature", "7.3.6", _bundle(wire, packb([segs[0], packb([*w2[:5], w2[5][:63] + bytes([w2[5][63] ^ 1])])])), SE),
        bundle("bundle: a segment whose block holds another count", "7.3.6", _bundle({**wire, "segments": 1, "ranges": Knowledge.of(ids()["site_a"].public_key, 1, 3).to_wire()}, packb([_resign([w1[0], 1, 3, *w1[3:]])]))),
    ]  # fmt: skip


def invalid_tokens() -> list[Case]:
    a = ids()["site_a"]
    good = issue_attestation(a, the_changes()[0])
    body = list(msgpack.unpackb(good, raw=False))[:7]

    def signed(items: list[Any]) -> bytes:
        return packb([*items, a.sign(ATTEST_DOMAIN + packb(items))])

    BFE, LEE, SE = "BundleFormatError", "LimitExceededError", "SignatureError"

    def token(name: str, data: bytes, error: str = BFE) -> Case:
        return _case(name, "13.2", "token", error, data)

    def text(name: str, value: str, error: str = BFE) -> Case:
        return _case(name, "13.1", "token text", error, value)

    t = to_text(good)
    return [
        token("token: version 2", signed([2, *body[1:]])),
        token("token: 7 items", packb(body)),
        token("token: seq 0", signed([*body[:2], 0, *body[3:]])),
        token("token: hlc 2^63", signed([*body[:3], 1 << 63, *body[4:]])),
        token("token: digest of 15 bytes", signed([*body[:6], body[6][:15]])),
        token("token: non-canonical", _patched(good, b"\x98\x01", b"\x98\xcc\x01")),
        token("token: over 1024 bytes", signed([*body[:5], "k" * 1000, body[6]]), LEE),
        token("token: bad signature", good[:-1] + bytes([good[-1] ^ 1]), SE),
        text("token text: no prefix", t[5:]),
        text("token text: padding", t + "=" * (-len(t[5:]) % 4 or 4)),
        text("token text: non-canonical last character", t[:-1] + chr(ord(t[-1]) + 1)),
        text("token text: not base64url", t[:10] + "+" + t[11:]),
        text("token text: over 2048 characters", "OFS1:" + "A" * 2044),
    ]  # fmt: skip


def invalid_pull_requests() -> list[Case]:
    know = Knowledge.of(ids()["site_a"].public_key, 1, 3).to_wire()
    good = {"encrypt": True, "knowledge": know, "max_bytes": 1 << 20}

    def pull(name: str, data: bytes) -> Case:
        return _case(name, "14.2", "pull request", "BundleFormatError", data)

    return [
        pull("pull request: without encrypt", packb({k: v for k, v in good.items() if k != "encrypt"})),
        pull("pull request: another key", packb({**good, "zzz": 1})),
        pull("pull request: max_bytes below 65536", packb({**good, "max_bytes": 65535})),
        pull("pull request: encrypt not a bool", packb({**good, "encrypt": 1})),
        pull("pull request: knowledge unsorted", packb({**good, "knowledge": [[b"\x02" * 32, [1, 1]], [b"\x01" * 32, [1, 1]]]})),
        pull("pull request: non-canonical", _patched(packb(good), b"\xce\x00\x10\x00\x00", b"\xcf\x00\x00\x00\x00\x00\x10\x00\x00")),
    ]  # fmt: skip


def invalid_key_files() -> list[Case]:
    data, _, box = the_key_file()
    doc = msgpack.unpackb(data, raw=False)
    passphrase = KEYFILE_PASSPHRASE

    def keyfile(name: str, value: bytes, error: str = "IdentityError") -> Case:
        return _case(name, "2.1", "key file", error, value, passphrase=passphrase)

    return [
        keyfile("key file: opslimit 65", packb({**doc, "opslimit": 65})),
        keyfile("key file: memlimit over 4 GiB", packb({**doc, "memlimit": (4 << 30) + 1})),
        keyfile("key file: another format", packb({**doc, "format": "offsync-identity/2"})),
        keyfile("key file: version 2", packb({**doc, "version": 2})),
        keyfile("key file: another public key", packb({**doc, "public_key": ids()["site_b"].public_key})),
        keyfile("key file: not a map", packb(list(doc.items()))),
        keyfile("key file: box altered", packb({**doc, "box": box[:-1] + bytes([box[-1] ^ 1])}), "WrongPassphraseError"),
    ]  # fmt: skip


def invalid_manifests() -> list[Case]:
    v = disk_manifest()
    doc = dict(v["manifest"])
    recipient = ids()["centre"].public_key.hex()
    sender = ids()["site_b"].public_key.hex()[:32]

    def manifest(
        name: str, body: dict[str, Any], error: str = "RemoteDataError", checksum: bool = True
    ) -> Case:
        if checksum:
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            body = {**body, "checksum": hash32(canonical).hex()}
        return _case(
            name,
            "15.2",
            "disk manifest",
            error,
            json.dumps(body).encode(),
            sender=sender,
            recipient=recipient,
        )

    entry = doc["bundles"][0]
    return [
        manifest("manifest: checksum differs", {**doc, "generation": 2, "checksum": v["checksum"]}, checksum=False),
        manifest("manifest: another format", {**doc, "format": "offsync-disk/2"}),
        manifest("manifest: for another recipient", {**doc, "recipient": sender * 2}),
        manifest("manifest: bundle entry without a hash", {**doc, "bundles": [{"file": entry["file"], "size": entry["size"]}]}),
        manifest("manifest: nested four deep", {**doc, "bundles": [[entry]]}, "LimitExceededError"),
    ]  # fmt: skip


def invalid() -> dict[str, Any]:
    cases = [
        *invalid_blocks(),
        *invalid_frames(),
        *invalid_segments(),
        *invalid_knowledge(),
        *invalid_receipts(),
        *invalid_bundles(),
        *invalid_tokens(),
        *invalid_pull_requests(),
        *invalid_key_files(),
        *invalid_manifests(),
    ]
    assert len({c["name"] for c in cases}) == len(cases)
    return {
        "description": (
            "inputs every decoder MUST refuse, each with the exact error class and the"
            " section of docs/spec.md that refuses it (Appendix A lists them); kinds: block"
            " (a decompressed block, with its segment's origin and first_seq), frame,"
            " segment (parse, verify, open), knowledge, receipt, bundle (open with the"
            " opener's identity, then every segment), token, token text, pull request,"
            " key file (with its passphrase), disk manifest (with the sender prefix of its"
            " file name and the recipient of its directory); a context's limits replace"
            " defaults"
        ),
        "cases": cases,
    }


def _blob_ref_bytes(body: Any, extra: dict[str, Any] | None = None) -> bytes:
    return packb({"$blob": body, **(extra or {})})


def blob_refs() -> dict[str, Any]:
    """Blob references (docs/spec.md, "Blob references"): hashes of blobs, the canonical
    bytes of the reference map, a record's fields holding references, and shapes that
    are refused or are not references at all."""
    blobs = [
        ("a short text blob", b"offsync blob vector\n", "text/plain; charset=utf-8"),
        ("the empty blob", b"", "application/octet-stream"),
        (
            "1000 bytes, a stand-in for a photo",
            bytes(i * 7 % 256 for i in range(1000)),
            "image/jpeg",
        ),
    ]
    valid = []
    for name, data, media_type in blobs:
        digest = hash32(data)
        valid.append(
            {
                "name": name,
                "blob": data.hex(),
                "hash": digest.hex(),
                "size": len(data),
                "media_type": media_type,
                "encoding": _blob_ref_bytes([digest, len(data), media_type]).hex(),
            }
        )
    photo = {"$blob": [hash32(blobs[2][1]), 1000, "image/jpeg"]}
    prints = [{"$blob": [hash32(b"finger %d" % i), 9, "image/x-wsq"]} for i in (1, 2)]
    record = {"name": "Dewi", "photo": photo, "fingerprints": prints}
    h = "11" * 32
    bad: list[tuple[str, bytes]] = [
        ("hash of 31 bytes", _blob_ref_bytes([bytes(31), 1, "image/jpeg"])),
        ("hash as a str", _blob_ref_bytes([h, 1, "image/jpeg"])),
        ("negative size", _blob_ref_bytes([bytes.fromhex(h), -1, "image/jpeg"])),
        ("size 2^63", _blob_ref_bytes([bytes.fromhex(h), 1 << 63, "image/jpeg"])),
        ("size as a float", _blob_ref_bytes([bytes.fromhex(h), 1.0, "image/jpeg"])),
        ("size as a bool", _blob_ref_bytes([bytes.fromhex(h), True, "image/jpeg"])),
        ("two items", _blob_ref_bytes([bytes.fromhex(h), 1])),
        ("four items", _blob_ref_bytes([bytes.fromhex(h), 1, "image/jpeg", 0])),
        ("not an array", _blob_ref_bytes(bytes.fromhex(h))),
        ("media type without a slash", _blob_ref_bytes([bytes.fromhex(h), 1, "jpeg"])),
        ("media type not ASCII", _blob_ref_bytes([bytes.fromhex(h), 1, "image/jpég"])),
        (
            "media type with a control character",
            _blob_ref_bytes([bytes.fromhex(h), 1, "image/\tjpeg"]),
        ),
        ("media type of 256 bytes", _blob_ref_bytes([bytes.fromhex(h), 1, "a/" + "b" * 254])),
        ("media type as bin", _blob_ref_bytes([bytes.fromhex(h), 1, b"image/jpeg"])),
        ("a second key", _blob_ref_bytes([bytes.fromhex(h), 1, "image/jpeg"], {"note": 1})),
    ]
    return {
        "description": "Blob references (docs/spec.md, 'Blob references'): for each blob, "
        "its bytes, hash H(bytes) (BLAKE2b-256), size, media type and the canonical msgpack "
        'of the reference {"$blob": [bin(32) hash, size, media_type]}; a record\'s fields '
        "holding references (nested too) and their canonical field bytes; reference maps "
        "that a decoder refuses (BlobReferenceError); and maps that are not references "
        "(ordinary data).",
        "valid": valid,
        "record": {"fields": tagged_json(record), "field_bytes": canonical_fields(record).hex()},
        "invalid": [
            {"name": name, "encoding": data.hex(), "error": "BlobReferenceError"}
            for name, data in bad
        ],
        "not_references": [
            {"name": "a second key", "fields": tagged_json({"v": {"$blob": 1, "x": 2}})},
            {"name": "another key", "fields": tagged_json({"v": {"blob": [bytes(32), 1, "a/b"]}})},
        ],
    }


def blob_files() -> dict[str, Any]:
    """A blob chunk file and a want list (docs/spec.md §15.3), sealed with the fixed
    ephemeral key: blob_refs.json's 1000-byte photo in chunks of 512, the second chunk
    left for the centre by site_b, and the centre's want list for site_b."""
    b, centre = ids()["site_b"], ids()["centre"]
    photo = bytes(i * 7 % 256 for i in range(1000))
    digest = hash32(photo)
    chunk_plain = packb([digest, 1000, "image/jpeg", 512, photo[512:]])
    header = b"OFBLOB\x00\x01"
    chunk = header + b"\x01" + centre.public_key
    chunk += sealed_box(chunk_plain, centre.public_key, EPHEMERAL_SECRET)
    want_plain = packb([centre.public_key, MILLIS, [[digest, 512]]])
    want = header + b"\x02" + b.public_key
    want += sealed_box(want_plain, b.public_key, EPHEMERAL_SECRET)
    to_centre = "OFFSYNC/to-" + centre.public_key.hex()[:32] + "/blobs/"
    to_b = "OFFSYNC/to-" + b.public_key.hex()[:32] + "/blobs/"
    return {
        "description": (
            "blob files on a courier disk (docs/spec.md §15.3): the second 512-byte chunk"
            " of blob_refs.json's 1000-byte photo, sealed to the centre, and the centre's"
            " list of what it lacks (512 bytes of that photo held), sealed to site_b;"
            " libsodium crypto_box_seal with the ephemeral X25519 secret fixed"
        ),
        "recipient_seed": SEEDS["centre"].hex(),
        "ephemeral_secret": EPHEMERAL_SECRET.hex(),
        "blob": photo.hex(),
        "hash": digest.hex(),
        "chunk": {
            "offset": 512,
            "plain": chunk_plain.hex(),
            "file": chunk.hex(),
            "path": to_centre + digest.hex()[:2] + "/" + digest.hex()[:32] + "-000000000200.ofc",
        },
        "want": {
            "sender": centre.public_key.hex(),
            "created": MILLIS,
            "held": [[digest.hex(), 512]],
            "plain": want_plain.hex(),
            "file": want.hex(),
            "path": to_b + "want-" + centre.public_key.hex()[:32] + ".ofw",
        },
    }


FILES = {
    "identities.json": identities,
    "hlc.json": hlc_values,
    "fields.json": fields,
    "changes.json": changes,
    "segments.json": segments,
    "receipt.json": receipt,
    "bundle_header.json": bundle_header,
    "bundle.json": bundle,
    "edge_cases.json": edge_cases,
    "compressed_block.json": compressed_blocks,
    "sealed_bundle.json": sealed_bundle,
    "keyfile.json": keyfile,
    "state_digest.json": state_digest,
    "attestations.json": attestations,
    "http.json": http,
    "disk_manifest.json": disk_manifest,
    "invalid.json": invalid,
    "blob_refs.json": blob_refs,
    "blob_files.json": blob_files,
}


def render(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for name, make in FILES.items():
        (HERE / name).write_text(render(make()), encoding="utf-8")
        print(f"wrote {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
