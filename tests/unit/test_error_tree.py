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
from collections.abc import Callable
from pathlib import Path

import pytest

import offsync
from offsync import errors
from offsync.attest import read_attestation, verify_attestation
from offsync.blobs import BlobRef
from offsync.bundle import open_bundle, peek_header, read_header
from offsync.change import Change
from offsync.columns import decode_block
from offsync.compression import decompress
from offsync.encoding import decode_fields, unpack_strict
from offsync.errors import OffsyncError
from offsync.identity import Identity, verify_signature
from offsync.knowledge import Knowledge
from offsync.limits import DEFAULT_LIMITS, Limits
from offsync.receipt import Receipt
from offsync.scope import Partition
from offsync.segment import Segment
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


def raises_in(source: str, name: str) -> list[tuple[str, int, str]]:
    """(``name``, line, exception) of every ``raise`` of a builtin exception in
    ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(target, ast.Name) and target.id in BUILTIN_ERRORS:
            found.append((name, node.lineno, target.id))
    return found


def builtin_raises(root: Path = SRC) -> list[tuple[str, int, str]]:
    """(path under ``root``, line, name) of every ``raise`` of a builtin exception."""
    found = []
    for path in sorted(root.rglob("*.py")):
        found += raises_in(path.read_text(), str(path.relative_to(root)))
    return sorted(found)


def test_the_scan_sees_a_builtin_raise() -> None:
    source = (
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
    assert raises_in(source, "m.py") == [("m.py", 4, "ValueError"), ("m.py", 6, "KeyError")]


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
    "decode_block": lambda d: decode_block(d, SITE.public_key, Partition("c"), 1),
    "decode_block, census": lambda d: decode_block(d, SITE.public_key, Partition("c"), 1, SMALL),
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
