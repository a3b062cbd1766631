"""Known-answer vectors (tests/vectors/*.json; see tests/vectors/README.md).

Each check recomputes the stored bytes from the stored inputs with offsync, and
decodes the stored bytes back to the stored values, so a change to the wire format
cannot pass unnoticed.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from offsync import open_bundle, read_header
from offsync.bundle import FORMAT_VERSION, MAGIC, BundleHeader
from offsync.change import Change, ChangeId, decode_changes, encode_changes
from offsync.clock import hlc_millis, make_hlc
from offsync.compression import compress, decompress, raw_frame
from offsync.encoding import canonical_fields, decode_fields, packb, unpack_strict
from offsync.identity import Identity, verify_signature
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS
from offsync.receipt import Receipt
from offsync.segment import Segment, hash32

VECTORS = Path(__file__).parent
FILES = [
    "identities.json",
    "hlc.json",
    "fields.json",
    "changes.json",
    "segments.json",
    "receipt.json",
    "bundle_header.json",
    "bundle.json",
]


@cache
def vector(name: str) -> Any:
    """Load one vector file; the one way tests read them."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def tagged(value: Any) -> Any:
    """Field inputs in JSON: ``{"$bytes": hex}`` stands for a bytes value."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return h(value["$bytes"])
        return {k: tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tagged(v) for v in value]
    return value


def knowledge(wire: list[Any]) -> Knowledge:
    return Knowledge.from_wire([[h(o), flat] for o, flat in wire])


def test_every_file_is_described_and_present() -> None:
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    on_disk = sorted(p.name for p in VECTORS.glob("*.json"))
    assert on_disk == sorted(FILES)
    for name in FILES:
        assert f"`{name}`" in readme, f"{name} is not described in README.md"
        assert vector(name)["description"]


def test_identities() -> None:
    v = vector("identities.json")
    for case in v["identities"]:
        ident = Identity(h(case["seed"]))
        assert ident.public_key.hex() == case["ed25519_public"]
        assert ident.public.box_public_key.hex() == case["x25519_public"]
        assert ident.sign(h(v["message"])).hex() == case["signature"]
        verify_signature(ident.public_key, h(v["message"]), h(case["signature"]))


def test_hlc() -> None:
    for case in vector("hlc.json")["values"]:
        assert make_hlc(case["millis"], case["logical"]) == case["hlc"]
        assert hlc_millis(case["hlc"]) == case["millis"]


@pytest.mark.parametrize("case", vector("fields.json")["cases"], ids=lambda c: c["name"])
def test_fields(case: dict[str, Any]) -> None:
    expected = h(case["canonical"])
    value = tagged(case["input"])
    assert canonical_fields(value) == expected
    assert decode_fields(expected) == value


def stored_changes() -> tuple[bytes, list[Change]]:
    v = vector("changes.json")
    origin = h(v["origin"])
    assert Identity(h(v["origin_seed"])).public_key == origin
    out = []
    for c in v["changes"]:
        assert make_hlc(c["hlc_millis"], c["hlc_logical"]) == c["hlc"]
        fields = None if c["fields"] is None else canonical_fields(tagged(c["fields"]))
        parents = tuple(ChangeId(h(o), s) for o, s in c["parents"])
        out.append(
            Change(origin, c["seq"], c["hlc"], c["collection"], c["key"], c["op"], fields, parents)
        )
    return origin, out


def test_changes() -> None:
    v = vector("changes.json")
    origin, changes = stored_changes()
    for c, stored in zip(changes, v["changes"], strict=True):
        assert (c.fields or b"").hex() == (stored["fields_encoded"] or "")
    for encoded, run, first in (
        (h(v["encoded_1_4"]), changes[:4], v["first_seq"]),
        (h(v["encoded_5"]), changes[4:], v["first_seq"] + 4),
    ):
        assert encode_changes(run) == encoded
        assert decode_changes(encoded, origin, first) == run


def test_segments() -> None:
    v = vector("segments.json")
    ident = Identity(h(v["origin_seed"]))
    origin, changes = stored_changes()
    previous = bytes(32)
    for s, run in zip(v["segments"], (changes[:4], changes[4:]), strict=True):
        assert h(s["changes"]) == encode_changes(run)
        assert h(s["block"]) == raw_frame(h(s["changes"]))
        assert decompress(h(s["block"]), 1 << 20, DEFAULT_LIMITS, "block") == h(s["changes"])
        assert h(s["prev_hash"]) == previous
        seg = Segment.seal_block(ident, s["first_seq"], len(run), h(s["block"]), previous)
        assert seg.origin == origin == h(s["origin"])
        assert seg.last_seq == s["last_seq"]
        assert hash32(seg.block).hex() == s["block_hash"]
        assert seg.signing_message.hex() == s["signing_message"]
        assert seg.signature.hex() == s["signature"]  # ed25519 is deterministic
        assert seg.hash.hex() == s["hash"]
        assert seg.encode().hex() == s["encoded"]
        decoded = Segment.decode(h(s["encoded"]))
        assert decoded == seg
        decoded.verify()
        assert decoded.open_changes() == run
        previous = seg.hash


def test_compressed_blocks_open_to_the_same_changes() -> None:
    """Sealing compresses for real; any level opens to the vectors' columns."""
    _, changes = stored_changes()
    for level in (1, 3, 15, 19):
        block = compress(encode_changes(changes[:4]), level)
        assert decompress(block, 1 << 20, DEFAULT_LIMITS, "block") == encode_changes(changes[:4])


def test_receipt() -> None:
    v = vector("receipt.json")
    ident = Identity(h(v["replica_seed"]))
    k = knowledge(v["knowledge"])
    assert k.to_bytes().hex() == v["knowledge_encoded"]
    r = Receipt.issue(ident, v["created"], k)
    assert r.replica.hex() == v["replica"]
    assert r.signature.hex() == v["signature"]
    verify_signature(r.replica, h(v["signing_message"]), r.signature)
    assert r.encode().hex() == v["encoded"]
    assert Receipt.decode(h(v["encoded"])) == r


def test_bundle_header() -> None:
    v = vector("bundle_header.json")
    w = v["header"]
    header = BundleHeader(
        sender=h(w["sender"]),
        recipient=None,
        created=w["created"],
        ranges=knowledge(w["ranges"]),
        receipts=tuple(Receipt.decode(h(r)) for r in w["receipts"]),
        segments=w["segments"],
    )
    assert Identity(h(v["sender_seed"])).public_key == header.sender
    assert packb(header.to_wire()).hex() == v["encoded"]
    assert BundleHeader.from_wire(decode_map(h(v["encoded"])), DEFAULT_LIMITS) == header


def decode_map(data: bytes) -> Any:
    return unpack_strict(data, "header")


def test_whole_bundle() -> None:
    v = vector("bundle.json")
    data = h(v["bundle"])
    sender = Identity(h(v["sender_seed"]))
    # The stored bytes verify and decode to the stored parts.
    bundle = open_bundle(data)
    assert bundle.id.hex() == v["bundle_id"]
    assert bundle.header.sender == sender.public_key
    assert [s.encode().hex() for s in bundle.segments] == v["segments"]
    assert [s.encode().hex() for s in bundle.segments] == [
        s["encoded"] for s in vector("segments.json")["segments"]
    ]
    header, body = read_header(data)
    assert header == bundle.header
    assert packb(header.to_wire()).hex() == v["header"] == vector("bundle_header.json")["encoded"]
    # Re-encoding header, body and signature gives the stored bytes exactly.
    assert packb([h(s) for s in v["segments"]]) == body == h(v["body"])
    hbytes = h(v["header"])
    signed = (
        MAGIC
        + FORMAT_VERSION.to_bytes(2, "big")
        + len(hbytes).to_bytes(4, "big")
        + hbytes
        + len(body).to_bytes(4, "big")
        + body
    )
    assert sender.sign(signed).hex() == v["signature"]
    assert signed + h(v["signature"]) == data
    # The changes inside are the ones of changes.json.
    _, changes = stored_changes()
    assert [c for s in bundle.segments for c in s.open_changes()] == changes


def test_the_generator_reproduces_every_file() -> None:
    """No byte depends on a zstd compressor (blocks are raw frames), so regenerating
    the vectors must give exactly the stored files."""
    spec = importlib.util.spec_from_file_location("vector_generator", VECTORS / "generate.py")
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for name, make in generator.FILES.items():
        assert json.loads(json.dumps(make())) == vector(name), name
