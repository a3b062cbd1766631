"""error_tree: the properties (hypothesis), moved from tests/unit/test_error_tree.py, where its examples are."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offsync.attest import delivered, from_text, verify_attestation
from offsync.blobs import BlobRef
from offsync.bundle import BundleHeader, build_bundle
from offsync.clock import HybridClock, hlc_millis, make_hlc
from offsync.encoding import canonical_fields
from offsync.errors import OffsyncError
from offsync.identity import Identity, PublicIdentity, key_of
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS
from offsync.receipt import Receipt
from offsync.segment import Segment
from offsync.trust import (
    Certificate,
    Revocation,
    TrustStore,
    certificate_fields,
    revocation_fields,
)
from tests.unit.test_error_tree import DECODERS, SITE

#: Any value a caller, or a decoded record, could hand over.
anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner, inner)
        | st.dictionaries(
            st.text(max_size=8) | st.binary(max_size=33) | st.integers(), inner, max_size=5
        )
    ),
    max_leaves=20,
)


keyish = st.one_of(st.binary(min_size=32, max_size=32), anything)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def only_offsync_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(OffsyncError):  # any other exception fails the test
        call()


#: Bytes that look like msgpack often enough to get past the first byte.
msgpackish = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                b"\x90",
                b"\x80",
                b"\x91",
                b"\x81",
                b"\xa1a",
                b"\xc0",
                b"\x01",
                b"\xdc\x00\x02",
                b"\xc4\x01x",
                b"\xd6\xff",
                b"\xc1",
                b"\xe0",
            ]
        )
        | st.binary(max_size=4),
        max_size=60,
    ).map(b"".join),
)


#: Examples per parametrized case: many cases, each cheap; HYPOTHESIS_PROFILE=explore
#: runs far more.
EXAMPLES = max(25, settings().max_examples // 3)


@pytest.mark.parametrize("name", list(DECODERS))
@settings(max_examples=EXAMPLES)
@given(data=msgpackish)
def test_decoders_raise_only_offsync_errors(name: str, data: bytes) -> None:
    only_offsync_errors(lambda: DECODERS[name](data))


CALLS: dict[str, Callable[[Any, Any, Any], object]] = {
    "Knowledge(value)": lambda a, b, c: Knowledge(a),
    "BlobRef": lambda a, b, c: BlobRef(a, b, c),
    "BlobRef.from_field": lambda a, b, c: BlobRef.from_field({"$blob": [a, b, c]}),
    # Any key and value on purpose: what a caller might hand over.
    "Knowledge({key: value})": lambda a, b, c: Knowledge({b if _hashable(b) else repr(b): a}),  # type: ignore[dict-item]
    "Knowledge.of": lambda a, b, c: Knowledge.of(b, a, c),
    "Knowledge.from_wire": lambda a, b, c: Knowledge.from_wire(a),
    "Knowledge.from_wire([[key, value]])": lambda a, b, c: Knowledge.from_wire([[b, a]]),
    "Segment": lambda a, b, c: Segment(b, a, c, b, a, c, b, a),
    "Segment.seal_block": lambda a, b, c: Segment.seal_block(SITE, a, c, b, b, b, b),
    "PublicIdentity": lambda a, b, c: PublicIdentity(b, a),
    "Identity": lambda a, b, c: Identity(b, a),
    "Identity.sign": lambda a, b, c: SITE.sign(a),
    "Identity.unseal": lambda a, b, c: SITE.unseal(a),
    "Identity.to_bytes": lambda a, b, c: SITE.to_bytes(a, opslimit=1, memlimit=8192),
    "key_of": lambda a, b, c: key_of(a),
    "make_hlc": lambda a, b, c: make_hlc(a, c),
    "hlc_millis": lambda a, b, c: hlc_millis(a),
    "HybridClock.now": lambda a, b, c: HybridClock(a, lambda: c).now(),
    "HybridClock.observe": lambda a, b, c: HybridClock().observe(a),
    "canonical_fields": lambda a, b, c: canonical_fields(a),
    "canonical_fields({name: value})": lambda a, b, c: canonical_fields({"f": a}),
    "Certificate.from_fields": lambda a, b, c: Certificate.from_fields(a),
    "Revocation.from_fields": lambda a, b, c: Revocation.from_fields(a),
    "certificate_fields": lambda a, b, c: certificate_fields(b, collections=a, valid_from=c),
    "certificate_fields(options)": lambda a, b, c: certificate_fields(
        b, prefixes=c, valid_until=a, replaces=b, label=c
    ),
    "revocation_fields": lambda a, b, c: revocation_fields(b, effective_ms=a, after_seq=c),
    "TrustStore.from_records": lambda a, b, c: TrustStore.from_records([b], a),
    "TrustStore.from_records([(key, fields)])": lambda a, b, c: TrustStore.from_records(
        [], [(a, c)]
    ),
    "BundleHeader.from_wire": lambda a, b, c: BundleHeader.from_wire(a, DEFAULT_LIMITS),
    "Receipt.issue": lambda a, b, c: Receipt.issue(SITE, a, c),
    "Receipt.decode": lambda a, b, c: Receipt.decode(a),
    "build_bundle": lambda a, b, c: build_bundle(
        SITE, [], ranges=Knowledge(), receipts=[], created=a, recipient=c
    ),
    "from_text": lambda a, b, c: from_text(a),
    "verify_attestation": lambda a, b, c: verify_attestation(a, None, fields=c),
    "delivered": lambda a, b, c: delivered(a, b, centre=c),
}


@pytest.mark.parametrize("name", list(CALLS))
@settings(max_examples=EXAMPLES)
@given(a=anything, b=keyish, c=anything)
def test_public_core_functions_raise_only_offsync_errors(
    name: str, a: object, b: object, c: object
) -> None:
    only_offsync_errors(lambda: CALLS[name](a, b, c))
