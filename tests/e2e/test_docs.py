"""The documentation builds, and every example in it runs.

``mkdocs build --strict`` turns broken links, missing pages and docstrings that do not
render into failures. Every fenced ```` ```python ```` and ```` ```sh ```` block of a page
runs, in page order, in one fresh temporary directory per page: Python blocks share one
namespace (a later block may use an earlier block's names), shell blocks run in bash
with ``-euo pipefail`` and the ``offsync`` command on PATH. Blocks fenced otherwise
(```` ```text ````, ```` ```console ````) are shown, not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
RUNNABLE = {"python", "sh"}

# Runs a page's blocks in order in one process, naming the page and line on failure.
RUNNER = r"""
import json, os, subprocess, sys, traceback
blocks = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for lang, code, where in blocks:
    if lang == "python":
        try:
            exec(compile(code, where, "exec"), namespace)
        except BaseException:
            traceback.print_exc()
            print(f"FAILED: the python block at {where}", file=sys.stderr)
            sys.exit(1)
    else:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], timeout=120)
        if done.returncode:
            print(f"FAILED: the sh block at {where} (exit {done.returncode})", file=sys.stderr)
            sys.exit(1)
"""


def blocks(page: Path) -> list[tuple[str, str, str]]:
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) in RUNNABLE:
            line = text.count("\n", 0, m.start()) + 2
            out.append((m.group(1), m.group(2), f"{page.relative_to(ROOT)}:{line}"))
    return out


PAGES = sorted(p for p in DOCS.glob("*.md") if blocks(p))


def test_fences_are_closed() -> None:
    """An unclosed fence would silently hide the examples after it."""
    for page in DOCS.glob("*.md"):
        fences = [ln for ln in page.read_text().splitlines() if ln.lstrip().startswith("```")]
        assert len(fences) % 2 == 0, f"{page.name}: unbalanced ``` fences"


def test_the_guides_have_examples() -> None:
    names = {p.name for p in PAGES}
    assert {"quickstart.md", "integrator-guide.md", "operations.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
@pytest.mark.slow
def test_examples_run(page: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OFFSYNC_PASSPHRASE": "correct horse battery staple",
        "OFFSYNC_INSECURE_FAST_KDF": "1",  # cheap key files: tests only
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("OFFSYNC_SITE", None)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER],
        input=json.dumps(blocks(page)),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


@pytest.mark.slow
def test_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    # The reference really comes from the docstrings.
    assert "Open (or create) a replica in an SQLite file" in reference
    # Replica's methods live in one module per job: the reference shows them all.
    for method in ("Verify and apply one bundle", "Bundles carrying everything", "Settle a record"):
        assert method in reference, method
    for page in ("quickstart", "integrator-guide", "operations", "spec"):
        assert (tmp_path / "site" / page / "index.html").is_file()
