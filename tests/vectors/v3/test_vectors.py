"""Format-3 known-answer and invalid vectors (tests/vectors/v3; see its README.md).

Each known-answer check recomputes the stored bytes from the stored inputs with the
format-3 codecs, and decodes the stored bytes back to the stored values. Each invalid
vector is handed to the decoder its kind names, which must refuse it with exactly the
error class it states; Appendix A of docs/spec.md must list exactly these vectors.
"""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from offsync import errors
from offsync.bundle import open_bundle, read_header
from offsync.change import Change, ChangeId, canonical_fields
from offsync.clock import make_hlc
from offsync.columns import decode_block, encode_block, encode_redacted_block
from offsync.compression import decompress, raw_frame
from offsync.encoding import packb
from offsync.identity import Identity, verify_signature
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.receipt import Receipt
from offsync.scope import Partition, PartitionRule, Scope
from offsync.segment import (
    RedactedSegment,
    Segment,
    commitment_of,
    decode_segment,
    hash32,
    row_hashes,
    salts_of,
)
from offsync.unpack import unpack
from tests.helpers import ROOT

attest = importlib.import_module("offsync.attest")  # offsync.attest the name is the function

VECTORS = ROOT / "tests" / "vectors" / "v3"
FILES = [
    "basics.json",
    "partitions.json",
    "frames.json",
    "changes.json",
    "segments.json",
    "redacted.json",
    "knowledge.json",
    "receipts.json",
    "bundles.json",
    "tokens.json",
    "invalid.json",
]


@cache
def vector(name: str) -> Any:
    """Load one vector file; the one way these tests read them."""
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def tagged(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return h(value["$bytes"])
        if set(value) == {"$float"}:
            return float(value["$float"])
        return {k: tagged(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tagged(v) for v in value]
    return value


def knowledge(wire: list[Any]) -> Knowledge:
    return Knowledge.from_wire([[h(o), parts] for o, parts in wire])


def test_every_file_is_described_present_and_reproduced(tmp_path: Path) -> None:
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in VECTORS.glob("*.json")) == sorted(FILES)
    for name in FILES:
        assert f"`{name}`" in readme, f"{name} is not described in README.md"
        assert vector(name)["description"]
    # Regenerating writes every file byte for byte (into a copy of the folder).
    copy = tmp_path / "v3"
    copy.mkdir()
    script = (VECTORS / "generate.py").read_text(encoding="utf-8")
    (copy / "generate.py").write_text(script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(copy / "generate.py")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in FILES:
        assert (copy / name).read_bytes() == (VECTORS / name).read_bytes(), name


def test_basics() -> None:
    v = vector("basics.json")
    for case in v["hlc"]:
        assert make_hlc(case["millis"], case["logical"]) == case["hlc"] < 1 << 63
    assert v["hlc"][-1]["hlc"] == (1 << 63) - 1
    for case in v["fields"]:
        assert canonical_fields(tagged(case["input"])).hex() == case["canonical"], case["name"]
    nan = v["nan_payload"]
    assert "cb7ff8000000000000" in nan["canonical"]


def test_partitions_and_read_scopes() -> None:
    v = vector("partitions.json")
    rule = PartitionRule(v["rule"])
    for collection, key, partition in v["records"]:
        assert list(rule.partition_of(collection, key)) == partition
    scope = Scope.from_read_field(unpack(h(v["scope_read_field_encoded"]), "read"), rule)
    assert scope.to_read_field() == v["scope_read_field"]
    assert packb(scope.to_read_field()).hex() == v["scope_read_field_encoded"]
    for partition, inside in v["membership"]:
        assert (Partition(*partition) in scope) is inside
    assert Scope.from_read_field(unpack(h(v["everything_read_field"]), "r")).is_everything


def test_frames() -> None:
    v = vector("frames.json")
    assert raw_frame(b"").hex() == v["empty"]
    assert raw_frame(h(v["five"]["data"])).hex() == v["five"]["frame"]
    big = bytes(i % 251 for i in range(131_073))
    frame = raw_frame(big)
    two = v["two_blocks"]
    assert hash32(big).hex() == two["data_blake2b"]
    assert (hash32(frame).hex(), len(frame)) == (two["frame_blake2b"], two["frame_length"])
    assert frame[:16].hex() == two["frame_head"]
    assert frame[13 + 131_072 + 3 : 13 + 131_072 + 6].hex() == two["second_block_header"]
    assert decompress(frame, 1 << 20, DEFAULT_LIMITS, "frame") == big


def stored_changes() -> tuple[Partition, list[Change]]:
    v = vector("changes.json")
    origin = h(v["origin"])
    assert Identity(h(v["origin_seed"])).public_key == origin
    partition = Partition(*v["partition"])
    out = []
    for c in v["changes"]:
        fields = None if c["fields"] is None else canonical_fields(tagged(c["fields"]))
        assert (fields or b"").hex() == (c["fields_encoded"] or "")
        out.append(
            Change(
                origin,
                c["seq"],
                c["hlc"],
                c["collection"],
                c["key"],
                c["op"],
                fields,
                tuple(ChangeId(h(o), s) for o, s in c["parents"]),
                c["prefix"],
                c["schema"],
                c["author"],
            )
        )
    return partition, out


def test_changes_columns_and_commitments() -> None:
    v = vector("changes.json")
    partition, changes = stored_changes()
    first = v["segments"][0]["first_seq"]
    runs = [
        changes[: v["segments"][1]["first_seq"] - first],
        changes[v["segments"][1]["first_seq"] - first :],
    ]
    for run, s in zip(runs, v["segments"], strict=True):
        secret = h(s["secret"])
        plain, skeleton = encode_block(run, partition, secret)
        assert plain.hex() == s["block_plain"]
        assert skeleton.hex() == s["skeleton"]
        salts = salts_of(secret, len(run))
        assert salts.hex() == s["salts"]
        hashes = row_hashes(salts, [c.fields for c in run])
        assert [x.hex() for x in hashes] == s["row_hashes"]
        assert commitment_of(skeleton, hashes).hex() == s["commitment"]
        block = decode_block(plain, run[0].origin, partition, s["first_seq"])
        assert block.changes == run and block.secret == secret
        assert packb(block.skeleton) == skeleton


def test_segments() -> None:
    v = vector("segments.json")
    ident = Identity(h(v["origin_seed"]))
    for s in v["segments"]:
        partition = Partition(*s["partition"])
        seg = Segment.seal_block(
            ident,
            partition,
            s["first_seq"],
            s["last_seq"] - s["first_seq"] + 1,
            h(s["block"]),
            h(s["commitment"]),
            h(s["prev_hash"]),
        )
        assert seg.signing_message.hex() == s["signing_message"]
        assert seg.signature.hex() == s["signature"]  # ed25519 is deterministic
        assert seg.hash.hex() == s["hash"]
        assert seg.encode().hex() == s["encoded"]
        assert hash32(packb(list(partition))).hex() == s["partition_hash"]
        decoded = decode_segment(h(s["encoded"]))
        assert decoded == seg
        decoded.verify()
        seg.check_commitment()
        assert all(c.partition == partition for c in seg.open_changes())
    # The residents stream chains; the doses stream starts its own chain.
    residents, later, doses = v["segments"]
    assert later["prev_hash"] == residents["hash"]
    assert doses["prev_hash"] == "00" * 32 and doses["first_seq"] == 1


def test_redacted_segments() -> None:
    v = vector("redacted.json")
    whole = Segment.decode(h(v["segment"]))
    _, changes = stored_changes()
    secret = h(vector("changes.json")["segments"][0]["secret"])
    skeleton = encode_block(changes[: whole.count], whole.partition, secret)[1]
    previous: Segment | RedactedSegment = whole
    for r in v["redactions"]:
        gone = set(r["erased"])
        plain = encode_redacted_block(
            skeleton,
            [None if i in gone else c.fields for i, c in enumerate(changes[: whole.count])],
        )
        assert plain.hex() == r["rblock_plain"]
        assert raw_frame(plain).hex() == r["rblock"]
        made = previous.redact(set(r["erased"]) - set(getattr(previous, "erased", ())), level=None)
        assert made.encode().hex() == r["encoded"]
        decoded = decode_segment(h(r["encoded"]))
        assert isinstance(decoded, RedactedSegment) and decoded == made
        assert decoded.hash == whole.hash and decoded.hash.hex() == r["hash"]
        decoded.verify()
        opened = decoded.open_changes()
        assert [c.is_erased for c in opened] == [i in gone for i in range(whole.count)]
        for i in gone:  # the erased values and their salts appear nowhere
            assert changes[i].fields is not None
            assert changes[i].values()["name"].encode() not in h(r["encoded"])
            assert salts_of(secret, whole.count)[16 * i : 16 * i + 16] not in h(r["encoded"])
        previous = made


def test_knowledge() -> None:
    v = vector("knowledge.json")
    k = knowledge(v["knowledge"])
    assert k.to_bytes().hex() == v["encoded"]
    assert Knowledge.from_bytes(h(v["encoded"])) == k
    for g, digests in v["group_digests"].items():
        assert [[c, p, d.hex()] for c, p, d in k.group_digests(int(g))] == digests


def test_receipts() -> None:
    v = vector("receipts.json")
    ident = Identity(h(v["replica_seed"]))
    for r in v["receipts"]:
        issued = Receipt.issue(ident, r["created"], knowledge(r["knowledge"]))
        assert issued.encode().hex() == r["encoded"]
        verify_signature(ident.public_key, h(r["signing_message"]), h(r["signature"]))
        assert Receipt.decode(h(r["encoded"])) == issued
    whole, partial = (knowledge(r["knowledge"]) for r in v["receipts"])
    assert partial <= whole and partial != whole


def test_bundles() -> None:
    v = vector("bundles.json")
    data = h(v["bundle"])
    header, body = read_header(data)
    assert body.hex() == v["body"]
    assert packb(header.to_wire()).hex() == v["header_encoded"]
    assert [r.encode().hex() for r in header.receipts] == v["header"]["receipts"]
    assert [k.hex() for k in header.relays_for] == v["header"]["relays_for"]
    opened = open_bundle(data)
    assert opened.id.hex() == v["bundle_id"]
    sealed = v["sealed"]
    centre = Identity(h(sealed["recipient_seed"]))
    opened_sealed = open_bundle(h(sealed["bundle"]), centre)
    assert [s.encode() for s in opened_sealed.segments] == [s.encode() for s in opened.segments]
    assert hash32(h(sealed["bundle"])).hex() == sealed["bundle_id"]
    with pytest.raises(errors.DecryptionError):
        open_bundle(h(sealed["bundle"]), Identity(bytes(32)))


def test_tokens() -> None:
    v = vector("tokens.json")
    token = h(v["token"])
    _, changes = stored_changes()
    assert attest.issue_attestation(Identity(h(v["origin_seed"])), changes[1]) == token
    att = attest.read_attestation(token)
    assert att.prefix == changes[1].prefix and att.fields_digest.hex() == v["fields_digest"]
    assert attest.to_text(token) == v["text"] and attest.from_text(v["text"]) == token
    d = v["delivered_by"]
    assert attest.delivered(token, h(d["receipt"]), centre=h(d["centre"])) is d["delivered"]


# -- invalid vectors ------------------------------------------------------------------------


def refuse(case: dict[str, Any]) -> None:
    """Run ``case`` through the decoders its kind names (as a receiver would)."""
    kind, data, context = case["kind"], case["input"], case.get("context") or {}
    limits = Limits(**context.get("limits", {}))
    if kind == "block":
        origin, partition = h(context["origin"]), Partition(*context["partition"])
        decode_block(h(data), origin, partition, context["first_seq"], limits)
    elif kind == "frame":
        decompress(h(data), limits.max_block_bytes, limits, "block")
    elif kind == "segment":
        segment = decode_segment(h(data), limits)
        segment.verify()
        segment.open_changes(limits)
    elif kind == "knowledge":
        Knowledge.from_bytes(h(data), limits)
    elif kind == "receipt":
        Receipt.decode(h(data), limits)
    elif kind == "bundle":
        seed = context.get("opener_seed")
        opened = open_bundle(h(data), Identity(h(seed)) if seed else None, limits)
        for segment in opened.segments:
            segment.verify()
            segment.open_changes(limits)
    elif kind == "token":
        attest.read_attestation(h(data))
    elif kind == "token text":
        attest.from_text(data)
    elif kind == "read scope":
        rule = context.get("rule")
        value = unpack(h(data), "read scope")
        Scope.from_read_field(value, PartitionRule(rule) if rule is not None else None)
    else:  # pragma: no cover - a vector of an unknown kind
        raise AssertionError(kind)


INVALID = vector("invalid.json")["cases"]


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_vector_is_refused_with_its_error(case: dict[str, Any]) -> None:
    expected = getattr(errors, case["error"])
    with pytest.raises(errors.OffsyncError) as caught:
        refuse(case)
    assert type(caught.value) is expected, f"{case['name']}: {caught.value!r}"


def test_appendix_a_lists_exactly_the_invalid_vectors() -> None:
    spec = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    # The first table: the encodings format 3 changed (the second lists kept ones).
    appendix = spec.split("## Appendix A. Refusals", 1)[1].split(
        "**Encodings kept from version 2.**"
    )[0]
    short = {
        "BFE": "BundleFormatError",
        "LEE": "LimitExceededError",
        "SE": "SignatureError",
        "DE": "DecryptionError",
    }
    rows = re.findall(r"^\| ([\d.]+) \| [^|]+ \| (\w+) \| `([^`]+)` \|$", appendix, re.M)
    listed = {name: (section, short[error]) for section, error, name in rows}
    stored = {c["name"]: (c["section"], c["error"]) for c in INVALID}
    assert listed == stored
