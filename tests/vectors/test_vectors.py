"""Known-answer vectors (tests/vectors/*.json; see tests/vectors/README.md).

Each check recomputes the stored bytes from the stored inputs with offsync, and
decodes the stored bytes back to the stored values, so a change to the wire format
cannot pass unnoticed.
"""

from __future__ import annotations

import json
import re
import struct
from functools import cache
from pathlib import Path
from typing import Any

import nacl.pwhash
import nacl.secret
import pytest

from offsync import Replica, open_bundle
from offsync.attest import from_text, read_attestation
from offsync.blobfile import WantList, chunk_name, decode_chunk, decode_want, want_name
from offsync.blobs import BlobRef
from offsync.change import Change
from offsync.clock import MAX_HLC, hlc_millis, make_hlc
from offsync.columns import decode_block, encode_block
from offsync.compression import decompress
from offsync.encoding import canonical_fields, decode_fields, packb, unpack_strict
from offsync.errors import (
    BundleFormatError,
    DecryptionError,
    OffsyncError,
    WrongPassphraseError,
)
from offsync.http.bodies import decode_pull_request
from offsync.http.frames import BundleFrame, EndOfAnswer, FrameDecoder
from offsync.http.signing import (
    Challenges,
    challenge_key,
    request_message,
    sign_request,
    verify_request,
)
from offsync.identity import Identity, verify_signature
from offsync.knowledge import Knowledge
from offsync.limits import Limits
from offsync.receipt import Receipt
from offsync.scope import Partition
from offsync.segment import Segment, hash32
from offsync.transports.disk import _parse_manifest as parse_manifest
from tests.helpers import ROOT

VECTORS = Path(__file__).parent
FILES = [
    "identities.json",
    "hlc.json",
    "fields.json",
    "edge_cases.json",
    "keyfile.json",
    "state_digest.json",
    "http.json",
    "disk_manifest.json",
    "invalid.json",
    "blob_refs.json",
    "blob_files.json",
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


def decode_map(data: bytes) -> Any:
    return unpack_strict(data, "header")


def float_value(value: Any) -> float:
    """A float input: a JSON number, or ``{"$float": "nan" | "inf" | "-inf" | "-0.0"}``."""
    if isinstance(value, dict):
        return float(value["$float"])
    return float(value)


def block_with(value_bytes: bytes) -> bytes:
    """The columns of one put ``{"v": <value_bytes>}``: a value's encoding in a block."""
    marker = "MARKER-VALUE"
    change = Change(bytes(32), 1, 1, "c", "k", 0, canonical_fields({"v": marker}), ())
    encoded = encode_block([change], Partition("c"), bytes(32))[0]
    assert encoded.count(packb(marker)) == 1
    return encoded.replace(packb(marker), value_bytes)


def test_edge_cases_integers() -> None:
    for case in vector("edge_cases.json")["integers"]:
        assert packb(case["value"]).hex() == case["encoded"]
        assert unpack_strict(h(case["encoded"]), "int") == case["value"]
        decode_block(block_with(h(case["encoded"])), bytes(32), Partition("c"), 1)
        for other in case["other_forms"]:
            with pytest.raises(BundleFormatError):
                decode_block(block_with(h(other)), bytes(32), Partition("c"), 1)
    forms = {c["value"]: c for c in vector("edge_cases.json")["integers"]}
    assert forms[256]["encoded"] == "cd0100" and "d10100" in forms[256]["other_forms"]


def test_edge_cases_floats() -> None:
    for case in vector("edge_cases.json")["floats"]:
        value = float_value(case["value"])
        assert packb(value).hex() == case["encoded"]
        (decoded,) = decode_block(
            block_with(h(case["encoded"])), bytes(32), Partition("c"), 1
        ).changes
        assert decoded.fields == b"\x81\xa1v" + h(case["encoded"])
        for other in case["other_forms"]:
            with pytest.raises(BundleFormatError):
                decode_block(block_with(h(other)), bytes(32), Partition("c"), 1)
    # Writers replace any NaN by the canonical one; -0.0 keeps its own bytes.
    payload_nan = struct.unpack(">d", bytes.fromhex("7ff8000000000001"))[0]
    assert canonical_fields({"v": payload_nan}) == b"\x81\xa1v" + h("cb7ff8000000000000")
    assert canonical_fields({"v": -0.0}) != canonical_fields({"v": 0.0})


def test_edge_cases_strings_and_binaries() -> None:
    v = vector("edge_cases.json")
    for case in v["strings"]:
        assert case["text"].encode().hex() == case["utf8"]
        assert packb(case["text"]).hex() == case["encoded"]
        assert unpack_strict(h(case["encoded"]), "str") == case["text"]
    nfc, nfd = (c for c in v["strings"] if c["name"].startswith("é"))
    assert nfc["encoded"] != nfd["encoded"]  # not normalised: two strings
    for case in v["not_utf8"]:
        with pytest.raises(BundleFormatError):
            decode_block(block_with(h(case["encoded"])), bytes(32), Partition("c"), 1)
        with pytest.raises(BundleFormatError):
            unpack_strict(h(case["encoded"]), "str")
    for case in v["binaries"]:
        assert packb(h(case["value"])).hex() == case["encoded"]


def test_edge_cases_hlc_and_empty_nested_map() -> None:
    v = vector("edge_cases.json")
    hlc = v["hlc"]
    assert make_hlc(hlc["largest_millis"], hlc["largest_logical"]) == hlc["largest"] == MAX_HLC
    assert hlc["first_invalid"] == 1 << 63
    # The 2^64 - 1 case of hlc.json shows the bit layout only: no decoder takes it.
    assert max(c["hlc"] for c in vector("hlc.json")["values"]) > MAX_HLC
    nested = v["empty_nested_map"]
    assert canonical_fields(nested["fields"]).hex() == nested["fields_encoded"]
    # (Its format-2 columns are gone with format 2; v3/changes.json holds format 3's.)


def test_key_file() -> None:
    v = vector("keyfile.json")
    assert v["passphrase"].encode().hex() == v["passphrase_utf8"]
    key = nacl.pwhash.argon2id.kdf(
        32, h(v["passphrase_utf8"]), h(v["salt"]), opslimit=v["opslimit"], memlimit=v["memlimit"]
    )
    assert key.hex() == v["derived_key"]
    box = h(v["box"])
    assert box[:24].hex() == v["nonce"]
    assert nacl.secret.SecretBox(key).decrypt(box).hex() == v["seed"]
    ident = Identity.from_bytes(h(v["encoded"]), v["passphrase"])
    assert ident.public_key.hex() == v["public_key"]
    same = Identity.from_bytes(h(v["encoded"]), h(v["passphrase_utf8"]))
    assert same.public_key == ident.public_key
    with pytest.raises(WrongPassphraseError):
        Identity.from_bytes(h(v["encoded"]), "kunci")


def test_state_digest() -> None:
    v = vector("state_digest.json")
    domain = h(v["domain"])
    items = b"".join(h(r["item"]) for r in v["records"])
    for r in v["records"]:
        assert packb([r["collection"], r["key"], h(r["fields_encoded"])]).hex() == r["item"]
    assert hash32(domain + items).hex() == v["digest"]
    rep = Replica.open(":memory:", identity=Identity(bytes([9]) * 32))
    assert rep.state_digest().hex() == v["empty_digest"]
    for r in v["records"]:  # the same visible records, written here
        rep.put(r["collection"], r["key"], decode_fields(h(r["fields_encoded"])))
    assert rep.state_digest().hex() == v["digest"]
    rep.close()


def test_http() -> None:
    v = vector("http.json")
    server, site = Identity(h(v["server_seed"])), Identity(h(v["site_seed"]))
    c = v["challenge"]
    challenges = Challenges(challenge_key(server), server.public_key, 300_000)
    assert challenge_key(server).hex() == c["key"]
    assert challenges.issue(c["issued_ms"], h(c["random"])).hex() == c["challenge"]
    p = v["pull_request"]
    body = h(p["body"])
    # (The body holds format 2's knowledge: what is checked here is the signing.)
    assert hash32(body).hex() == p["body_hash"]
    message = request_message(server.public_key, "pull", site.public_key, h(c["challenge"]), body)
    assert message.hex() == p["signing_message"]
    assert sign_request(site, server.public_key, "pull", body, h(c["challenge"])) == p["headers"]
    signed = verify_request(
        p["headers"],
        server=server.public_key,
        endpoint="pull",
        body=body,
        challenges=challenges,
        now_ms=c["issued_ms"] + 1000,
    )
    assert signed.site == site.public_key
    a = v["answers"]
    bundle = h(a["bundle"])
    for name, more in (("complete", False), ("cut", True)):
        reader = FrameDecoder(len(bundle))
        events = list(reader.events(h(a[name])))
        assert events == [BundleFrame(bundle), EndOfAnswer(more)]


def test_disk_manifest() -> None:
    v = vector("disk_manifest.json")
    doc = v["manifest"]
    assert json.dumps(doc, sort_keys=True, separators=(",", ":")) == v["canonical_json"]
    assert hash32(v["canonical_json"].encode()).hex() == v["checksum"]
    text = v["file"]
    assert json.loads(text)["checksum"] == v["checksum"]
    recipient = h(doc["recipient"])
    manifest = parse_manifest(text.encode(), doc["sender"][:32], recipient)
    (entry,) = doc["bundles"]
    assert manifest.entries == {entry["file"]: (entry["size"], h(entry["blake2b"]))}
    assert entry["blake2b"] == v["bundle_id"]
    assert v["path"].endswith(f"-{doc['generation']:08d}.man")


def test_blob_files() -> None:
    v = vector("blob_files.json")
    centre = Identity(h(v["recipient_seed"]), "centre")
    site_b = Identity(bytes(range(32, 64)), "site_b")
    photo = h(v["blob"])
    c = v["chunk"]
    chunk = decode_chunk(h(c["file"]), centre.public_key, centre.unseal)
    assert chunk.ref == BlobRef(h(v["hash"]), 1000, "image/jpeg")
    assert chunk.offset == c["offset"] and chunk.data == photo[512:]
    assert centre.unseal(h(c["file"])[41:]) == h(c["plain"])
    assert c["path"].endswith("/" + chunk_name(chunk.ref.hash, chunk.offset))
    assert c["path"].split("/")[2] == "blobs" and c["path"].split("/")[3] == v["hash"][:2]
    w = v["want"]
    want = decode_want(h(w["file"]), site_b.public_key, site_b.unseal)
    assert want == WantList(h(w["sender"]), w["created"], {h(x): n for x, n in w["held"]})
    assert site_b.unseal(h(w["file"])[41:]) == h(w["plain"])
    assert w["path"].endswith("/" + want_name(want.sender))
    with pytest.raises(DecryptionError):  # sealed to the centre: site_b cannot open it
        decode_chunk(h(c["file"]), site_b.public_key, site_b.unseal)


# -- invalid vectors: every refusal rule, with its exact error -------------------------


def refuse(case: dict[str, Any]) -> None:
    """Run the decoder of the case's kind on its input (it must raise)."""
    context = case.get("context", {})
    limits = Limits(**context.get("limits", {}))
    kind = case["kind"]
    if kind == "token text":
        read_attestation(from_text(case["input"]))
        return
    data = h(case["input"])
    if kind == "block":
        raise AssertionError("format 2's blocks are superseded (v3/invalid.json)")
    elif kind == "frame":
        decompress(data, limits.max_block_bytes, limits, "block")
    elif kind == "segment":
        seg = Segment.decode(data, limits)
        seg.verify()
        seg.open_changes(limits)
    elif kind == "knowledge":
        Knowledge.from_bytes(data, limits)
    elif kind == "receipt":
        Receipt.decode(data, limits)
    elif kind == "bundle":
        seed = context["opener_seed"]
        bundle = open_bundle(data, None if seed is None else Identity(h(seed)), limits)
        for carried in bundle.segments:
            carried.verify()
            carried.open_changes(limits)
    elif kind == "token":
        read_attestation(data)
    elif kind == "pull request":
        decode_pull_request(data, limits)
    elif kind == "key file":
        Identity.from_bytes(data, context["passphrase"])
    elif kind == "disk manifest":
        parse_manifest(data, context["sender"], h(context["recipient"]))
    else:  # pragma: no cover - a kind the generator does not make
        raise AssertionError(kind)


#: The kinds of invalid.json whose encodings format 3 did not change; the others are
#: format 2's, superseded by v3/invalid.json.
KEPT_KINDS = ("frame", "key file", "disk manifest")
KEPT_CASES = [c for c in vector("invalid.json")["cases"] if c["kind"] in KEPT_KINDS]


@pytest.mark.parametrize("case", KEPT_CASES, ids=lambda c: c["name"])
def test_invalid_vectors_are_refused_with_exactly_their_error(case: dict[str, Any]) -> None:
    with pytest.raises(OffsyncError) as info:
        refuse(case)
    assert type(info.value).__name__ == case["error"], info.value


def test_every_refusal_rule_of_the_spec_has_its_vector() -> None:
    """Appendix A of docs/spec.md names every invalid vector, and each exists."""
    spec = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    appendix = spec[spec.index("## Appendix A") :]
    listed = set(re.findall(r"\| `([^`|]+)` \|$", appendix, re.MULTILINE))
    names = {c["name"] for c in KEPT_CASES}
    assert names <= listed


# -- blob references (issue 14) ------------------------------------------------------


def test_blob_references() -> None:
    from offsync import errors
    from offsync.blobs import BlobRef, blob_hash, references

    doc = vector("blob_refs.json")
    for case in doc["valid"]:
        data = h(case["blob"])
        ref = BlobRef(blob_hash(data), len(data), case["media_type"])
        assert ref.hash == h(case["hash"]) and ref.size == case["size"], case["name"]
        assert ref.to_bytes() == h(case["encoding"]), case["name"]
        assert BlobRef.from_bytes(h(case["encoding"])) == ref, case["name"]
    record = tagged(doc["record"]["fields"])
    assert canonical_fields(record) == h(doc["record"]["field_bytes"])
    found = references(decode_fields(h(doc["record"]["field_bytes"])))
    assert sorted(r.media_type for r in found) == ["image/jpeg", "image/x-wsq", "image/x-wsq"]
    for case in doc["invalid"]:
        with pytest.raises(getattr(errors, case["error"])):
            BlobRef.from_bytes(h(case["encoding"]))
    for case in doc["not_references"]:
        assert references(tagged(case["fields"])) == [], case["name"]
