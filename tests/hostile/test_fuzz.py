"""A short run of the decoder fuzz harness (fuzz/fuzz_bundle.py) in the test suite.

The long, coverage-guided run is on demand: ``python fuzz/fuzz_bundle.py
-max_total_time=600 corpus/`` (atheris). Here: hypothesis drives the same ``check``
from valid seeds with random damage, and a few thousand atheris runs when atheris is
installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import ROOT

HARNESS = ROOT / "fuzz" / "fuzz_bundle.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_bundle", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load()
TARGET = fuzz.Target()
SEEDS: list[bytes] = fuzz.seeds()


def test_seeds_are_valid_inputs() -> None:
    """Every seed passes (so mutations start from deep inside the decoders)."""
    for seed in SEEDS:
        TARGET.check(seed)
    assert len({s[0] for s in SEEDS}) == fuzz.MODES
    # ``check`` takes a refusal as a pass, so see each seed accepted on its own: every
    # bundle mode applies the writer's three changes to a fresh replica.
    for seed in SEEDS:
        mode, rest = seed[0], seed[1:]
        if mode == 4:
            fuzz.Receipt.decode(rest, fuzz.LIMITS)
        elif mode == 5:
            fuzz.Knowledge.from_bytes(rest, fuzz.LIMITS)
        else:
            bundle = fuzz.to_bundle(mode, rest)
            assert bundle is not None, mode
            assert fuzz.Target().replica.apply(bundle).applied == 3, mode


edit = st.tuples(
    st.sampled_from(["flip", "set", "cut", "insert"]),
    st.integers(0, 1 << 16),
    st.binary(min_size=1, max_size=8),
)


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, at, blob in edits:
        i = 1 + at % max(1, len(out) - 1)  # keep the mode byte
        if kind == "flip" and i < len(out):
            out[i] ^= 1 << (blob[0] & 7)
        elif kind == "set" and i < len(out):
            out[i] = blob[0]
        elif kind == "cut":
            del out[i : i + blob[0] % 32 + 1]
        else:
            out[i:i] = blob
    return bytes(out)


@settings(max_examples=max(100, settings().max_examples * 2))
@given(seed=st.sampled_from(SEEDS), edits=st.lists(edit, min_size=1, max_size=6))
def test_mutated_seeds_apply_or_are_refused_cleanly(
    seed: bytes, edits: list[tuple[str, int, bytes]]
) -> None:
    TARGET.check(mutate(seed, edits))


@given(st.binary(max_size=512))
def test_random_inputs_in_every_mode(data: bytes) -> None:
    for mode in range(fuzz.MODES):
        TARGET.check(bytes([mode]) + data)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.slow
def test_short_atheris_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([sys.executable, str(HARNESS), "--make-corpus", str(corpus)], check=True)
    result = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=3000", "-seed=1", str(corpus)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 3000 runs" in result.stderr
