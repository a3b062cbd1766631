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
