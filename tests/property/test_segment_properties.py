"""v3_segment: the properties (hypothesis), moved from tests/unit/test_v3_segment.py, where its examples are."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from offsync.change import PUT, Change
from offsync.columns import encode_block
from offsync.compression import raw_frame
from offsync.encoding import packb
from offsync.errors import (
    RemoteDataError,
)
from offsync.segment import (
    NO_PREVIOUS,
    RedactedSegment,
    Segment,
    decode_segment,
    hash32,
    salts_of,
)
from tests.helpers.v3_strategies import SIGNER, stream_changes
from tests.unit.test_segment import SECRET, P, _mixed, sealed


@settings(max_examples=40)
@given(stream_changes(max_changes=8), st.data())
def test_erasing_any_subset_of_puts_verifies_and_hides_them(
    changes: list[Change], data: st.DataObject
) -> None:
    seg = sealed(changes, level=None)
    puts_at = [i for i, c in enumerate(changes) if c.op == PUT]
    if not puts_at:
        return
    erased = data.draw(st.sets(st.sampled_from(puts_at), min_size=1))
    red = seg.redact(erased, level=None)
    encoded = red.encode()
    again = decode_segment(encoded)
    assert isinstance(again, RedactedSegment) and again == red and again.hash == seg.hash
    again.verify()
    opened = again.open_changes()
    for i, (c, o) in enumerate(zip(changes, opened, strict=True)):
        if i in erased:
            assert o.is_erased and o._replace(fields=c.fields) == c
        else:
            assert o == c
    salts = salts_of(SECRET, len(changes))
    for i in erased:
        assert salts[16 * i : 16 * i + 16] not in encoded
        fields = changes[i].fields
        assert fields is not None
        value = changes[i].values()
        for leaf in value.values():  # every string or bytes value of 4+ bytes is gone
            if isinstance(leaf, (str, bytes)) and len(leaf) >= 4:
                blob = leaf.encode() if isinstance(leaf, str) else leaf
                if all(blob not in (o.fields or b"") for o in opened):
                    assert blob not in encoded
    assert SECRET not in encoded


@settings(max_examples=60)
@given(
    st.integers(1, 8),
    st.lists(st.integers(-1, 9), max_size=4),
    st.integers(0, 5),
    st.integers(0, 3),
    st.booleans(),
)
def test_signed_hostile_redactions_are_refused_cleanly(
    count: int, erased: list[int], kept_salts: int, hashes: int, keep_shapes: bool
) -> None:
    """An origin may sign anything: a seq range that is not its block's, a redaction of
    any shape. Whatever it is, a receiver refuses it with an offsync error or opens it."""
    from offsync.columns import encode_redacted_block

    changes = _mixed()
    plain, skeleton = encode_block(changes, P, SECRET)
    rows = sorted(set(erased))
    fields = [c.fields if keep_shapes or i not in rows else None for i, c in enumerate(changes)]
    rblock = raw_frame(encode_redacted_block(skeleton, fields))
    seg = Segment.seal_block(SIGNER, P, 1, count, raw_frame(plain), bytes(32), NO_PREVIOUS)
    wire = [*seg.to_wire()[:6], hash32(seg.block), seg.commitment, seg.signature]
    encoded = packb([*wire, [rblock, rows, bytes(16 * kept_salts), bytes(32 * hashes)]])
    try:
        red = decode_segment(encoded)
        red.verify()
        red.open_changes()
    except RemoteDataError:
        return
    raise AssertionError("a redaction with a false commitment opened")
