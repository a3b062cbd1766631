"""The protocol core is sans-IO: importing it pulls in no database, socket or HTTP code.

Each check runs in a fresh interpreter, so modules imported by other tests cannot hide
or fake a result.
"""

from __future__ import annotations

import json
import subprocess
import sys

CORE = [
    "encoding",
    "clock",
    "identity",
    "knowledge",
    "change",
    "segment",
    "bundle",
    "receipt",
    "policies",
    "limits",
    "errors",
    "trust",
    "attest",
    "httpwire",
    "segindex",
    "schemas",
    # The HTTP protocol's sans-IO modules: the server and the client share them.
    "http",
    "http.wire",
    "http.frames",
    "http.ranges",
    "http.signing",
    "http.bodies",
    "http.refusals",
    "http.openapi",
    "http.pull",
    "unpack",
    "status",
    "plan",
    "plan.admit",
    "plan.apply",
    "plan.claims",
    "plan.examine",
    "plan.merge",
    "plan.pack",
    "plan.quarantine",
    "plan.seal",
    "plan.write",
    # Format 3's partitions, columns and frames.
    "scope",
    "columns",
    "content",
    "compression",
]
#: Modules of the HTTP package that do I/O (files) but need no HTTP library.
HTTP_NO_LIBRARY = ["http.uploads"]
HTTP_LIBRARIES = {"httpx", "starlette", "uvicorn", "anyio"}
IO_MODULES = ["sqlite3", "socket", "ssl", "httpx", "starlette", "uvicorn", "psycopg"]
OPTIONAL = ["httpx", "starlette", "uvicorn", "anyio", "psycopg", "click", "rich"]


def loaded_after(code: str) -> set[str]:
    """Run ``code`` in a new interpreter; return which watched modules it loaded."""
    watched = sorted(set(IO_MODULES) | set(OPTIONAL))
    script = (
        "import sys, json\n"
        + code
        + f"\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


# Import the core modules without running offsync/__init__.py (which also imports the
# replica, sync and trust layers), so that only the core's own imports count.
CORE_ONLY = f"""
import importlib, importlib.util, types
spec = importlib.util.find_spec("offsync")
package = types.ModuleType("offsync")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["offsync"] = package
for name in {CORE!r}:
    importlib.import_module("offsync." + name)
assert "offsync.replica" not in sys.modules
"""


def test_core_modules_import_no_io() -> None:
    assert loaded_after(CORE_ONLY) == set()


def test_the_upload_unit_needs_no_http_library() -> None:
    """Resumable uploads are tested, and could be served, without Starlette."""
    code = CORE_ONLY.replace(repr(CORE), repr(HTTP_NO_LIBRARY))
    assert loaded_after(code) & HTTP_LIBRARIES == set()


def test_the_check_sees_the_http_libraries() -> None:
    code = CORE_ONLY.replace(repr(CORE), repr(HTTP_NO_LIBRARY)) + "\nimport starlette\n"
    assert "starlette" in loaded_after(code)


def test_the_check_itself_sees_io_modules() -> None:
    # Guards against a harness that could never fail.
    assert loaded_after(CORE_ONLY + "\nimport sqlite3, socket\n") == {"sqlite3", "socket"}


def test_third_party_dependencies_import_no_io() -> None:
    assert (
        loaded_after("import msgpack, nacl.signing, nacl.public, nacl.pwhash, zstandard") == set()
    )


def test_package_imports_no_optional_dependency() -> None:
    # ``import offsync`` may bring in more than the core, but never an optional extra
    # (an integrator without offsync[http] or offsync[postgres] must be able to import it).
    assert loaded_after("import offsync") & set(OPTIONAL) == set()


#: Calls that touch files: ``open(...)``, these functions of ``os``, these methods (of
#: ``pathlib.Path``). The core turns bytes into values; where the bytes come from (a key
#: file, a bundle file) is the business of the modules around it.
OS_FILE_FUNCTIONS = {"open", "fdopen", "replace", "rename", "fsync", "unlink", "remove"}
OS_FILE_FUNCTIONS |= {"listdir", "scandir", "mkdir", "makedirs"}
PATH_METHODS = {"read_bytes", "write_bytes", "read_text", "write_text", "touch", "unlink"}
#: (module, call) -> why a core module may make it.
FILE_CALLS_ALLOWED = {
    ("http.openapi", "read_text"): "the docs tool (python -m offsync.http.openapi --docs)",
    ("http.openapi", "write_text"): "the docs tool (python -m offsync.http.openapi --docs)",
}


def file_calls(module: str) -> list[str]:
    """``module.py:line: name`` of every call in ``offsync.<module>``'s source that
    touches a file (``open``, ``OS_FILE_FUNCTIONS``, ``PATH_METHODS``), less those
    ``FILE_CALLS_ALLOWED``."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("offsync." + module)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func, name = node.func, ""
        if isinstance(func, ast.Name) and func.id == "open":
            name = "open"
        elif isinstance(func, ast.Attribute):
            on_os = isinstance(func.value, ast.Name) and func.value.id == "os"
            if (on_os and func.attr in OS_FILE_FUNCTIONS) or func.attr in PATH_METHODS:
                name = func.attr
        if name and (module, name) not in FILE_CALLS_ALLOWED:
            found.append(f"{module}.py:{node.lineno}: {name}")
    return found


def test_core_modules_call_no_file_functions() -> None:
    """Key files are written and read by ``offsync.keyfiles``, not by ``identity``."""
    assert [hit for module in CORE for hit in file_calls(module)] == []


def test_the_file_call_scan_sees_file_io() -> None:
    assert file_calls("keyfiles") != []


def test_key_file_io_is_not_loaded_with_the_core() -> None:
    """``Identity.save``/``load`` import ``offsync.keyfiles`` when called, not before."""
    code = CORE_ONLY + "\nassert 'offsync.keyfiles' not in sys.modules, 'keyfiles loaded'\n"
    assert loaded_after(code) == set()
