"""Write the known-answer vectors in this folder (run: python tests/vectors/generate.py).

Everything is derived from fixed seeds, HLC values and inputs, so running this again
with the same offsync gives the same files byte for byte. Segment blocks here are zstd
frames of raw (stored) blocks (``compression.raw_frame``), so no byte depends on a zstd
library's compressor. JSON holds bytes as hex strings; inside field inputs a bytes
value is written ``{"$bytes": hex}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from offsync.bundle import build_bundle, open_bundle, read_header
from offsync.change import DELETE, PUT, Change, ChangeId, encode_changes
from offsync.clock import make_hlc
from offsync.compression import raw_frame
from offsync.encoding import canonical_fields, packb
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


FILES = {
    "identities.json": identities,
    "hlc.json": hlc_values,
    "fields.json": fields,
    "changes.json": changes,
    "segments.json": segments,
    "receipt.json": receipt,
    "bundle_header.json": bundle_header,
    "bundle.json": bundle,
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
