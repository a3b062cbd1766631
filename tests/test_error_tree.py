"""Every error offsync raises on bad input is in its tree (issue 10, point 6).

``test_public_api`` checks that the classes of ``errors.__all__`` share one root; that
cannot see a plain ``ValueError`` raised somewhere else. Here:

* a scan of the source (``ast``) for ``raise`` of a builtin exception anywhere in
  ``src/offsync``, each one left allowed by ``ALLOWED`` with the reason;
* property tests that feed every core decoder arbitrary bytes, and the core
  constructors and public functions arbitrary values, and accept only offsync errors.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import offsync
from offsync import errors
from offsync.attest import delivered, from_text, read_attestation, verify_attestation
from offsync.blobs import BlobRef
from offsync.bundle import BundleHeader, build_bundle, open_bundle, peek_header, read_header
from offsync.change import Change, decode_changes
from offsync.clock import HybridClock, hlc_millis, make_hlc
from offsync.compression import decompress
from offsync.encoding import canonical_fields, decode_fields, unpack_strict
from offsync.errors import OffsyncError
from offsync.identity import Identity, PublicIdentity, key_of, verify_signature
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.receipt import Receipt
from offsync.segment import Segment
from offsync.trust import (
    Certificate,
    Revocation,
    TrustStore,
    certificate_fields,
    revocation_fields,
)
from offsync.unpack import unpack

SRC = Path(offsync.__file__).parent
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
#: (module path under src/offsync, builtin exception) -> why raising it is right there.
ALLOWED = {
    ("testing/stores.py", "AssertionError"): "conformance checkers report a failed check "
    "as pytest does",
    ("testing/transports.py", "AssertionError"): "conformance checkers report a failed "
    "check as pytest does",
    ("testing/blobs.py", "AssertionError"): "conformance checkers report a failed check "
    "as pytest does",
    ("testing/__init__.py", "AttributeError"): "a module __getattr__ must raise it",
    ("replica/applying.py", "AssertionError"): "marks a branch that cannot run",
    ("stores/migrations/__init__.py", "RuntimeError"): "a packaging fault, found on "
    "import, not input",
    ("demo.py", "RuntimeError"): "the demo script's own server failed to start",
    ("cli/site.py", "ValueError"): "internal: caught a few lines below and reported",
    ("http/client.py", "ImportError"): "an optional extra is missing: says which",
    ("server.py", "ImportError"): "an optional extra is missing: says which",
    ("http/metrics.py", "ImportError"): "an optional extra is missing: says which",
    ("http/bodies.py", "TypeError"): "a body type defined with a field that has no JSON "
    "form: a programming error, found when the module is imported",
    ("transports/folder.py", "NotADirectoryError"): "internal: caught by the OSError "
    "handler around it (a refused/ that is not a plain directory is not used)",
    ("cli/__init__.py", "SystemExit"): "the command's exit status",
}


def builtin_raises(root: Path = SRC) -> list[tuple[str, int, str]]:
    """(path under ``root``, line, name) of every ``raise`` of a builtin exception."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id in BUILTIN_ERRORS:
                found.append((str(path.relative_to(root)), node.lineno, target.id))
    return sorted(found)


def test_the_scan_sees_a_builtin_raise(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "from .errors import UsageError\n"
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError('bad')\n"
        "    try:\n"
        "        raise KeyError\n"
        "    except KeyError as exc:\n"
        "        raise UsageError('no') from exc\n"
        "    raise\n"
    )
    assert builtin_raises(tmp_path) == [("m.py", 4, "ValueError"), ("m.py", 6, "KeyError")]


def test_no_builtin_exception_is_raised_outside_the_allowed_places() -> None:
    unexpected = [
        f"src/offsync/{path}:{line}: raise {name}"
        for path, line, name in builtin_raises()
        if (path, name) not in ALLOWED
    ]
    assert not unexpected, "raise an offsync error (errors.py) instead:\n" + "\n".join(unexpected)


def test_every_error_class_is_in_the_tree_and_exported() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert classes == set(errors.__all__)
    for name in classes:
        assert issubclass(getattr(errors, name), OffsyncError)
        assert name in (errors.__doc__ or ""), f"{name} missing from the tree drawing"


# -- property tests ----------------------------------------------------------------------

SITE = Identity(bytes([2]) * 32, "site")
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
SMALL = Limits(max_decode_bytes=4096)  # sends all but the smallest input through the census

DECODERS: dict[str, Callable[[bytes], object]] = {
    "unpack": lambda d: unpack(d, "t"),
    "unpack, census": lambda d: unpack(d, "t", SMALL),
    "unpack, canonical": lambda d: unpack(d, "t", canonical=True),
    "unpack_strict": lambda d: unpack_strict(d, "t"),
    "decode_fields": decode_fields,
    "Knowledge.from_bytes": Knowledge.from_bytes,
    "Receipt.decode": Receipt.decode,
    "Segment.decode": lambda d: Segment.decode(d).open_changes(),
    "decode_changes": lambda d: decode_changes(d, SITE.public_key, 1),
    "decode_changes, census": lambda d: decode_changes(d, SITE.public_key, 1, SMALL),
    "decompress": lambda d: decompress(d, 1 << 20, DEFAULT_LIMITS, "block"),
    "read_header": read_header,
    "peek_header": peek_header,
    "open_bundle": lambda d: open_bundle(d, SITE),
    "read_attestation": read_attestation,
    "verify_attestation": lambda d: verify_attestation(d, None),
    "Identity.from_bytes": lambda d: Identity.from_bytes(d, "pw"),
    "Change.from_row": lambda d: Change.from_row(SITE.public_key, 1, d),
    "verify_signature": lambda d: verify_signature(d[:32], d, d[-64:]),
    "verify_signature(key)": lambda d: verify_signature(d, b"m", bytes(64)),
    "BlobRef.from_bytes": BlobRef.from_bytes,
}


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
EXAMPLES = max(25, settings.default.max_examples // 3)


@pytest.mark.parametrize("name", list(DECODERS))
@settings(max_examples=EXAMPLES)
@given(data=msgpackish)
def test_decoders_raise_only_offsync_errors(name: str, data: bytes) -> None:
    only_offsync_errors(lambda: DECODERS[name](data))


def test_decoders_refuse_what_is_not_bytes() -> None:
    for name, decode in DECODERS.items():
        for value in ("text", 42, None, [b"x"], bytearray(b"\x90")):
            if name == "verify_signature":
                continue  # slices its input: the other entry covers it
            try:
                decode(value)  # type: ignore[arg-type]
            except OffsyncError:
                pass
            except Exception as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{name}({value!r}) raised {type(exc).__name__}: {exc}")


CALLS: dict[str, Callable[[Any, Any, Any], object]] = {
    "Knowledge(value)": lambda a, b, c: Knowledge(a),
    "BlobRef": lambda a, b, c: BlobRef(a, b, c),
    "BlobRef.from_field": lambda a, b, c: BlobRef.from_field({"$blob": [a, b, c]}),
    "Knowledge({key: value})": lambda a, b, c: Knowledge({b if _hashable(b) else repr(b): a}),
    "Knowledge.of": lambda a, b, c: Knowledge.of(b, a, c),
    "Knowledge.from_wire": lambda a, b, c: Knowledge.from_wire(a),
    "Knowledge.from_wire([[key, value]])": lambda a, b, c: Knowledge.from_wire([[b, a]]),
    "Segment": lambda a, b, c: Segment(b, a, c, b, a, c),
    "Segment.seal_block": lambda a, b, c: Segment.seal_block(SITE, a, c, b, b),
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
