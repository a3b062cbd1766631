"""Hostile input: whatever arrives, a replica raises a specific error or quarantines,
and its visible state (``state_digest``) does not change.

Which outcome each attack gets:

=====================================  =================================================
every single-bit flip                  SignatureError or BundleFormatError (framing,
                                       version, lengths) or LimitExceededError (a length
                                       flipped past a limit)
every truncation                       BundleFormatError (or LimitExceededError when the
                                       cut leaves a length field over a limit)
random bytes                           BundleFormatError
decompression bomb (a segment block)   LimitExceededError (declared size over the limit),
                                       before anything is decompressed
bomb that hides its size               BundleFormatError (no declared size)
block that lies about its size         BundleFormatError
huge zstd window                       LimitExceededError
odd blocks (not zstd, trailing bytes)  BundleFormatError
deeply nested msgpack (columns)        LimitExceededError
deeply nested msgpack (body)           BundleFormatError
oversized msgpack (too many segments)  LimitExceededError
huge declared lengths                  LimitExceededError / BundleFormatError
replayed old bundle                    no error: counted as duplicates, nothing changes
forged sender                          SignatureError
segment spliced from another bundle    SignatureError
encrypted for someone else             DecryptionError
valid signer writing outside scope     quarantine "scope: key outside the allowed prefixes"
revoked key                            quarantine "trust: key revoked"
expired certificate                    quarantine "validity: certificate expired"
=====================================  =================================================
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from collections.abc import Sequence

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from offsync import ChangeId, Identity, Knowledge, Limits, Receipt, Replica
from offsync.bundle import FORMAT_VERSION, MAGIC, frame_bundle
from offsync.change import DELETE, PUT, Change
from offsync.columns import decode_block, encode_block
from offsync.compression import compress
from offsync.encoding import packb
from offsync.errors import (
    BundleFormatError,
    DecryptionError,
    LimitExceededError,
    OffsyncError,
    RemoteDataError,
    SignatureError,
)
from offsync.scope import Partition, Stream
from offsync.segment import NO_PREVIOUS, Segment, commitment_of, hash32, row_hashes, salts_of
from offsync.trust import issue_certificate, revoke

T0 = 1_700_000_000_000
DAY = 86_400_000
AUTH = Identity(bytes([1]) * 32, "authority")
SITE = Identity(bytes([2]) * 32, "saradan")
MALLORY = Identity(bytes([7]) * 32, "mallory")
CENTRE = Identity(bytes([9]) * 32, "centre")
SPECIFIC = (BundleFormatError, LimitExceededError, SignatureError, DecryptionError)
RESIDENTS = Partition("residents")
SECRET = bytes(range(32))


class Wall:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def site_replica(wall_ms: int = T0) -> Replica:
    return Replica.open(":memory:", identity=SITE, wall=Wall(wall_ms))


def target(**options: object) -> Replica:
    """A centre that already holds some data, so 'unchanged' means something."""
    rep = Replica.open(":memory:", identity=CENTRE, wall=Wall(T0 + 30 * DAY), **options)  # type: ignore[arg-type]
    seed = Replica.open(":memory:", identity=Identity(bytes([3]) * 32), wall=Wall(T0))
    seed.put("residents", "3519000000000000", {"name": "already here"})
    for b in seed.pack():
        rep.apply(b)
    return rep


def small_bundle() -> bytes:
    """Under 1 KB: a few records in one segment, its block compressed, signed."""
    writer = site_replica()
    for i in range(6):
        writer.put(
            "residents",
            f"35190101019000{i:02d}",
            {"name": f"Resident {i}", "village": "Kare", "born": 1990 + i, "notes": "x" * 40},
        )
    (bundle,) = writer.pack()
    return bundle


def forge(
    signer: Identity,
    segments: Sequence[bytes],
    *,
    body: bytes | None = None,
    header: dict[str, object] | None = None,
) -> bytes:
    """A bundle validly signed by ``signer`` around arbitrary content."""
    if body is None:
        body = packb(list(segments))
    carried: dict[Stream, list[tuple[int, int]]] = {}
    for raw in segments:
        seg = Segment.decode(raw)
        carried.setdefault(seg.stream, []).append((seg.first_seq, seg.last_seq))
    fields: dict[str, object] = {
        "created": 1,
        "ranges": Knowledge(carried).to_wire(),
        "receipts": [Receipt.issue(signer, 1, Knowledge()).encode()],
        "recipient": None,
        "relays_for": [],
        "segments": len(segments),
        "sender": signer.public_key,
    }
    fields.update(header or {})
    return frame_bundle(signer, packb(fields), body)


def put(key: str, fields: dict[str, object], collection: str = "residents") -> Change:
    return Change(SITE.public_key, 1, 1, collection, key, PUT, packb(fields))


def delete(key: str, collection: str = "residents") -> Change:
    return Change(SITE.public_key, 1, 1, collection, key, DELETE, None)


def segment_of(changes: list[Change], signer: Identity = SITE, first: int = 1) -> bytes:
    """The changes as seqs ``first``.. of ``signer``, validly sealed whatever they hold
    (a later segment names a made-up predecessor: only a first one has none)."""
    own = [c._replace(origin=signer.public_key, seq=first + i) for i, c in enumerate(changes)]
    prev = NO_PREVIOUS if first == 1 else hash32(b"predecessor %d" % first)
    return Segment.seal(signer, own, prev, 3).encode()


def block_segment(
    block: bytes, signer: Identity = MALLORY, count: int = 1, commitment: bytes | None = None
) -> bytes:
    """A segment validly signed by ``signer`` around any block (a hostile zstd frame),
    committing to ``ONE_PUT``'s change unless told otherwise (a block that decodes
    to something else fails its commitment, after everything these tests look at)."""
    commitment = ONE_COMMITMENT if commitment is None else commitment
    return Segment.seal_block(signer, RESIDENTS, 1, count, block, commitment, NO_PREVIOUS).encode()


def raw_frame(content: bytes, declared: int, window_log: int | None = None) -> bytes:
    """A hand-made zstd frame: ``content`` in one raw block, declaring any size (and,
    with ``window_log``, any window)."""
    descriptor = (
        bytes([0b1110_0000])  # 8-byte content size, single segment: the window is that size
        if window_log is None
        else bytes([0b1100_0000, (window_log - 10) << 3])  # 8-byte size, window descriptor
    )
    return (
        b"\x28\xb5\x2f\xfd"
        + descriptor
        + declared.to_bytes(8, "little")
        + ((len(content) << 3) | 1).to_bytes(3, "little")  # last, raw block
        + content
    )


def refuse(rep: Replica, data: bytes) -> type[OffsyncError]:
    """Apply hostile bytes: they must raise a specific error and change nothing."""
    before = rep.state_digest()
    known = rep.knowledge()
    with pytest.raises(RemoteDataError) as info:
        rep.apply(data)
    assert type(info.value) is not RemoteDataError
    assert rep.state_digest() == before
    assert rep.knowledge() == known
    return type(info.value)


# -- every bit flip, every truncation ---------------------------------------------------


def test_every_single_bit_flip_is_refused() -> None:
    rep = target()
    bundle = small_bundle()
    assert 600 < len(bundle) < 1500
    before = rep.state_digest()
    seen: set[type[Exception]] = set()
    mutable = bytearray(bundle)
    for i in range(len(bundle) * 8):
        mutable[i >> 3] ^= 1 << (i & 7)
        try:
            rep.apply(bytes(mutable))
        except SPECIFIC as exc:
            seen.add(type(exc))
        else:
            pytest.fail(f"bit {i} flipped and the bundle still applied")
        finally:
            mutable[i >> 3] ^= 1 << (i & 7)
        assert rep.state_digest() == before
    assert SignatureError in seen and BundleFormatError in seen
    assert rep.apply(bundle).applied == 6  # the intact bundle still applies


def test_every_truncation_is_refused() -> None:
    rep = target()
    bundle = small_bundle()
    before = rep.state_digest()
    for n in range(len(bundle)):
        with pytest.raises((BundleFormatError, LimitExceededError)):
            rep.apply(bundle[:n])
        assert rep.state_digest() == before
    with pytest.raises(BundleFormatError):
        rep.apply(bundle + b"\x00")


@given(st.binary(max_size=2048))
def test_random_bytes_are_refused(data: bytes) -> None:
    rep = _shared_target()
    before = rep.state_digest()
    with pytest.raises(BundleFormatError):
        rep.apply(data)
    assert rep.state_digest() == before


@given(st.binary(min_size=0, max_size=600))
def test_random_bytes_after_valid_magic_are_refused(tail: bytes) -> None:
    rep = _shared_target()
    before = rep.state_digest()
    with pytest.raises((BundleFormatError, LimitExceededError, SignatureError)):
        rep.apply(MAGIC + FORMAT_VERSION.to_bytes(2, "big") + tail)
    assert rep.state_digest() == before


_TARGET: list[Replica] = []


def _shared_target() -> Replica:
    if not _TARGET:
        _TARGET.append(target())
    return _TARGET[0]


# -- decompression bombs, odd blocks, nesting, sizes ------------------------------------
#
# A bundle body is not compressed; each segment's block is one zstd frame compressed by
# the segment's origin. So a bomb is a block, validly signed by whoever made it, inside
# a validly signed bundle: the replica must refuse it from the frame header alone.

#: The block (uncompressed) of one valid put: the content of hand-made blocks.
_ONE = put("3519000000000001", {"name": "x"})._replace(origin=MALLORY.public_key)
ONE_PUT, _SKELETON = encode_block([_ONE], RESIDENTS, SECRET)
ONE_COMMITMENT = commitment_of(_SKELETON, row_hashes(salts_of(SECRET, 1), [_ONE.fields]))


def _never_decompress(*args: object, **kwargs: object) -> None:
    raise AssertionError("a hostile frame reached the decompressor")


def test_decompression_bomb_is_refused_before_decompressing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rep = target(limits=Limits(max_block_bytes=1 << 20))
    bomb_block = bytes(32 << 20)  # 32 MiB of zeros, a few KB compressed
    frame = zstandard.ZstdCompressor(write_content_size=True).compress(bomb_block)
    assert len(frame) < 64 * 1024
    bomb = block_segment(frame)
    with monkeypatch.context() as patched:
        patched.setattr(zstandard, "ZstdDecompressor", _never_decompress)
        assert refuse(rep, forge(MALLORY, [bomb])) is LimitExceededError
    # Behind a good segment of another origin, the whole bundle is refused ...
    good = segment_of([put("3519000000000001", {"name": "good"})])
    assert refuse(rep, forge(MALLORY, [good, bomb])) is LimitExceededError
    assert rep.apply(forge(MALLORY, [good])).applied == 1  # ... the good one alone applies
    # Within the default limit the same frame is decompressed (and is no valid block).
    assert refuse(target(), forge(MALLORY, [bomb])) is BundleFormatError


def test_bomb_that_hides_its_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    rep = target(limits=Limits(max_block_bytes=1 << 20))
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(32 << 20))
    assert zstandard.get_frame_parameters(frame).content_size == zstandard.CONTENTSIZE_UNKNOWN
    monkeypatch.setattr(zstandard, "ZstdDecompressor", _never_decompress)
    assert refuse(rep, forge(MALLORY, [block_segment(frame)])) is BundleFormatError


def test_block_that_lies_about_its_size_is_refused() -> None:
    rep = target()
    for declared in (len(ONE_PUT) - 1, len(ONE_PUT) + 100):
        lying = block_segment(raw_frame(ONE_PUT, declared))
        assert refuse(rep, forge(MALLORY, [lying])) is BundleFormatError
    honest = block_segment(raw_frame(ONE_PUT, len(ONE_PUT)))
    assert rep.apply(forge(MALLORY, [honest])).applied == 1


def test_huge_window_is_refused() -> None:
    rep = target(limits=Limits(max_window_bytes=1 << 20))
    # A hand-made frame of a valid block: window 128 MiB, one raw block.
    frame = raw_frame(ONE_PUT, len(ONE_PUT), window_log=27)
    assert zstandard.get_frame_parameters(frame).window_size == 1 << 27
    assert refuse(rep, forge(MALLORY, [block_segment(frame)])) is LimitExceededError
    within = raw_frame(ONE_PUT, len(ONE_PUT), window_log=20)
    assert rep.apply(forge(MALLORY, [block_segment(within)])).applied == 1


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"not zstd at all",
        ONE_PUT,  # the columns, uncompressed
        compress(ONE_PUT, 3) + b"\x00",  # trailing bytes after the frame
        compress(ONE_PUT, 3) * 2,  # two frames
        compress(ONE_PUT, 3)[:-1],
    ],
    ids=["empty", "not-zstd", "uncompressed", "trailing", "two-frames", "truncated"],
)
def test_odd_blocks_are_refused(block: bytes) -> None:
    rep = _shared_target()
    assert refuse(rep, forge(MALLORY, [block_segment(block)])) is BundleFormatError


def nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\xc0"


def columns_with_value(value: bytes) -> bytes:
    """The block of one put whose one field ``name`` holds the msgpack ``value``."""
    assert ONE_PUT.count(packb("x")) == 1
    return ONE_PUT.replace(packb("x"), value)


def test_deeply_nested_columns_are_refused() -> None:
    rep = target()
    assert columns_with_value(packb("x")) == ONE_PUT
    deep = columns_with_value(nested(100_000))
    seg = block_segment(compress(deep, 3))
    assert refuse(rep, forge(MALLORY, [seg])) is LimitExceededError


def test_front_coded_keys_are_checked_before_they_are_all_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each key may keep all of the key before it: an over-long key must be refused
    without first building every later key from it (n keys of L bytes from n + L)."""
    n, long = 200, 100_000
    # A hostile encoder (no sealing checks): each key keeps the whole key before and
    # adds one character, so the key columns are small and the keys huge.
    monkeypatch.setattr("offsync.columns._check_for_sealing", lambda *args: None)
    keys = ["k" * long + "x" * i for i in range(n)]
    changes = [
        Change(MALLORY.public_key, i + 1, 1, "residents", k, DELETE, None)
        for i, k in enumerate(keys)
    ]
    columns, _ = encode_block(changes, RESIDENTS, SECRET)
    del keys, changes
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceededError):
            decode_block(columns, MALLORY.public_key, RESIDENTS, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * len(columns)


def test_deeply_nested_body_is_refused() -> None:
    rep = target()
    body = nested(100_000)
    assert refuse(rep, forge(MALLORY, [], body=body)) is BundleFormatError


def test_deeply_nested_header_is_refused() -> None:
    rep = target()
    bundle = forge(MALLORY, [], header={"created": msgpack.ExtType(1, b"")})
    assert refuse(rep, bundle) is BundleFormatError
    deep = bytearray(forge(MALLORY, []))
    hlen = int.from_bytes(deep[8:12], "big")
    header = nested(50_000)
    blen_and_rest = deep[12 + hlen :]
    crafted = bytes(deep[:8]) + len(header).to_bytes(4, "big") + header + bytes(blen_and_rest)
    assert refuse(rep, crafted) in (LimitExceededError, BundleFormatError)


def test_oversized_msgpack_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    rep = target(limits=Limits(max_segments=10, max_segment_changes=5))
    many = [segment_of([delete("k")], MALLORY, first=i) for i in range(1, 12)]
    assert refuse(rep, forge(MALLORY, many)) is LimitExceededError
    six = [delete(f"k{i}")._replace(origin=MALLORY.public_key, seq=i + 1) for i in range(6)]
    six_block, _ = encode_block(six, RESIDENTS, SECRET)
    long_segment = segment_of(six, MALLORY)
    assert refuse(rep, forge(MALLORY, [long_segment])) is LimitExceededError
    # Claiming 5 changes (within the limit) around a block that holds 6.
    understated = block_segment(compress(six_block, 3), count=5)
    assert refuse(rep, forge(MALLORY, [understated])) is LimitExceededError
    # A key over the limit only a hostile encoder (no sealing checks) writes.
    monkeypatch.setattr("offsync.columns._check_for_sealing", lambda *args: None)
    big_key = segment_of([delete("k" * 10_000)], MALLORY)
    assert refuse(rep, forge(MALLORY, [big_key])) is LimitExceededError


def test_huge_declared_lengths_are_refused() -> None:
    rep = target()
    good = forge(MALLORY, [])
    # Header length field claiming 4 GiB.
    assert refuse(rep, good[:8] + b"\xff\xff\xff\xff" + good[12:]) is LimitExceededError
    # Body length field claiming 4 GiB.
    hlen = int.from_bytes(good[8:12], "big")
    at = 12 + hlen
    assert refuse(rep, good[:at] + b"\xff\xff\xff\xff" + good[at + 4 :]) is BundleFormatError
    # A msgpack array header declaring 2**32 - 1 segments in a tiny body.
    body = b"\xdd\xff\xff\xff\xff"
    assert refuse(rep, forge(MALLORY, [], body=body)) is BundleFormatError
    # A segment block declaring an enormous decompressed size.
    enormous = block_segment(raw_frame(ONE_PUT, 1 << 40))
    assert refuse(rep, forge(MALLORY, [enormous])) is LimitExceededError
    # A segment claiming more changes than the limit.
    sig = bytes(64)
    claim = msgpack.packb([SITE.public_key, 1, 1 << 40, NO_PREVIOUS, b"", sig])
    assert refuse(rep, forge(MALLORY, [], body=msgpack.packb([claim]))) in (
        LimitExceededError,
        BundleFormatError,
    )


# -- replay, forgery, splicing, encryption -----------------------------------------------


def test_replayed_old_bundle_changes_nothing() -> None:
    rep = target()
    writer = site_replica(T0)
    writer.put("residents", "3519000000000001", {"name": "first"})
    (old,) = writer.pack()
    rep.apply(old)
    writer.put("residents", "3519000000000001", {"name": "second"})
    for b in writer.pack(rep.knowledge()):
        rep.apply(b)
    before = rep.state_digest()
    report = rep.apply(old)  # replayed after newer data: no error, no effect
    assert (report.applied, report.duplicates) == (0, 1)
    assert rep.state_digest() == before
    assert rep.get("residents", "3519000000000001") == {"name": "second"}


def test_forged_sender_is_refused() -> None:
    rep = target()
    bundle = small_bundle()
    # Re-sign SITE's bundle bytes with Mallory's key: the header still names SITE.
    forged = bundle[:-64] + MALLORY.sign(bundle[:-64])
    assert refuse(rep, forged) is SignatureError
    # A segment claiming SITE as origin but signed by Mallory, in Mallory's own bundle.
    block = compress(ONE_PUT, 3)
    fake = Segment(
        SITE.public_key,
        RESIDENTS,
        1,
        1,
        NO_PREVIOUS,
        block,
        ONE_COMMITMENT,
        MALLORY.sign(b"anything"),
    )
    assert refuse(rep, forge(MALLORY, [fake.encode()])) is SignatureError
    # Mallory's signature over exactly the message SITE would have signed.
    fake = dataclasses.replace(fake, signature=MALLORY.sign(fake.signing_message))
    assert refuse(rep, forge(MALLORY, [fake.encode()])) is SignatureError


def test_segment_spliced_from_another_bundle_is_refused() -> None:
    rep = target()
    first, second = small_bundle(), _other_bundle()
    seg_a = msgpack.unpackb(_body(first))[0]
    seg_b = msgpack.unpackb(_body(second))[0]
    # Splice raw bytes of one bundle's body into the other, keeping its signature.
    spliced = first.replace(_body(first), _body(second))
    assert refuse(rep, spliced) in (SignatureError, BundleFormatError)
    # Re-signed by a relay, but the segment mixes one segment's changes with another's
    # signature: the origin's signature no longer covers it.
    a, b = Segment.decode(seg_a), Segment.decode(seg_b)
    chimera = Segment(
        a.origin,
        a.partition,
        a.first_seq,
        a.last_seq,
        a.prev_hash,
        b.block,
        a.commitment,
        a.signature,
    )
    assert refuse(rep, forge(MALLORY, [chimera.encode()])) is SignatureError
    # A segment passed on byte for byte by a relay is fine: that is how relays work.
    assert rep.apply(forge(MALLORY, [seg_a])).applied == a.count


def _other_bundle() -> bytes:
    writer = Replica.open(":memory:", identity=Identity(bytes([4]) * 32), wall=Wall(T0))
    writer.put("residents", "3519000000000099", {"name": "other"})
    (bundle,) = writer.pack()
    return bundle


def _body(bundle: bytes) -> bytes:
    hlen = int.from_bytes(bundle[8:12], "big")
    at = 12 + hlen
    blen = int.from_bytes(bundle[at : at + 4], "big")
    return bundle[at + 4 : at + 4 + blen]


def test_bundle_encrypted_for_someone_else_is_refused() -> None:
    rep = target()
    writer = site_replica()
    writer.put("residents", "3519000000000001", {"name": "secret"})
    (sealed,) = writer.pack(recipient=MALLORY.public)
    assert b"secret" not in sealed and b"3519000000000001" not in sealed
    assert refuse(rep, sealed) is DecryptionError
    # Addressed to the centre, but with a damaged ciphertext re-signed by the sender.
    (to_centre,) = writer.pack(recipient=CENTRE.public)
    hlen = int.from_bytes(to_centre[8:12], "big")
    at = 12 + hlen + 4 + 40
    damaged = bytearray(to_centre[:-64])
    damaged[at] ^= 1
    assert refuse(rep, bytes(damaged) + SITE.sign(bytes(damaged))) is DecryptionError
    assert rep.apply(to_centre).applied == 1


# -- trust failures: quarantined with a specific reason ----------------------------------


def trusted_target() -> tuple[Replica, Replica]:
    auth = Replica.open(":memory:", identity=AUTH, wall=Wall(T0))
    issue_certificate(
        auth, SITE, collections=["residents"], prefixes=["3519"], valid_until=T0 + DAY
    )
    rep = target(trust=[AUTH.public_key])
    for b in auth.pack():
        rep.apply(b)
    return auth, rep


def quarantines(rep: Replica, bundle: bytes, reason: str) -> None:
    before, held = rep.state_digest(), set(rep.quarantined_changes())
    report = rep.apply(bundle)
    assert report.applied == 0 and report.quarantined >= 1
    assert rep.state_digest() == before
    assert {q.reason for q in set(rep.quarantined_changes()) - held} == {reason}


def test_valid_signer_writing_outside_its_scope_is_quarantined() -> None:
    _, rep = trusted_target()
    writer = site_replica()
    writer.put("residents", "3520000000000001", {"name": "not my region"})
    (bundle,) = writer.pack()
    quarantines(rep, bundle, "scope: key outside the allowed prefixes")


def test_revoked_key_is_quarantined() -> None:
    auth, rep = trusted_target()
    revoke(auth, SITE, effective_ms=T0 + 10)
    for b in auth.pack(rep.knowledge()):
        rep.apply(b)
    writer = site_replica(T0 + 20)
    writer.put("residents", "3519000000000001", {"name": "after revocation"})
    (bundle,) = writer.pack()
    quarantines(rep, bundle, "trust: key revoked")


def test_expired_certificate_is_quarantined() -> None:
    _, rep = trusted_target()
    writer = site_replica(T0 + 2 * DAY)
    writer.put("residents", "3519000000000001", {"name": "too late"})
    (bundle,) = writer.pack()
    quarantines(rep, bundle, "validity: certificate expired")


@settings(max_examples=max(20, settings().max_examples // 2))
@given(st.data())
def test_mutated_trusted_bundles_never_apply_partly(data: st.DataObject) -> None:
    """Random multi-byte damage to a bundle: all of it or none of it."""
    rep = _shared_target()
    bundle = bytearray(_BUNDLE_CACHE.setdefault("b", small_bundle()))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(bundle) - 1))
        bundle[i] = data.draw(st.integers(0, 255))
    before = rep.state_digest()
    try:
        rep.apply(bytes(bundle))
    except SPECIFIC:
        assert rep.state_digest() == before


_BUNDLE_CACHE: dict[str, bytes] = {}


# -- no personal data in errors or logs ----------------------------------------------


def _messages(exc: BaseException) -> str:
    out = []
    seen: BaseException | None = exc
    while seen is not None:
        out.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(out)


def test_no_personal_data_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    from offsync import policies

    caplog.set_level("DEBUG")
    nik, name = "3519010101907777", "Siti Aminah Rahayu"
    said: list[str] = []

    def collect(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except OffsyncError as exc:
            said.append(_messages(exc))
        else:
            pytest.fail("expected an error")

    _, rep = trusted_target()
    writer = site_replica()
    writer.put("residents", nik, {"name": name})
    writer.put("residents", "3520" + nik[4:], {"name": name})
    (bundle,) = writer.pack()
    rep.apply(bundle)
    said.extend(q.reason for q in rep.quarantined())
    said.extend(q.reason for q in rep.quarantined_changes())
    for i in range(0, len(bundle) * 8, 7):
        damaged = bytearray(bundle)
        damaged[i >> 3] ^= 1 << (i & 7)
        collect(lambda d=bytes(damaged): rep.apply(d))
    collect(lambda: rep.put("residents", nik, {"name": name}))  # uncertified centre
    fww = Replica.open(":memory:", identity=CENTRE, policies={"doses": policies.FirstWriterWins()})
    fww.put("doses", nik + "/1", {"name": name})
    collect(lambda: fww.put("doses", nik + "/1", {"name": name}))
    collect(lambda: fww.resolve("doses", nik + "/1", choose=_cid()))

    def explode(key: str, fields: object) -> None:
        raise ValueError(f"bad record {key} {fields}")  # a careless validator

    checked = Replica.open(":memory:", identity=CENTRE, validators={"residents": explode})
    collect(lambda: checked.put("residents", nik, {"name": name}))
    for b in writer.pack():
        checked.apply(b)
    said.extend(q.reason for q in checked.quarantined_changes())
    text = "\n".join(said) + caplog.text
    assert said
    assert nik not in text and nik[4:] not in text and name not in text


def _cid() -> ChangeId:
    return ChangeId(SITE.public_key, 99)
