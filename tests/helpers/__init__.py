"""Code the tests share (see tests/README.md): starting servers and the CLI, PostgreSQL,
planner fixtures, memory measurement, hypothesis strategies. Imported as
``tests.helpers.<module>``; nothing here is a test."""

from __future__ import annotations

from pathlib import Path

#: The repository's root: tests find docs/, benchmarks/ and fuzz/ from here, whatever
#: tier directory they sit in.
ROOT = Path(__file__).resolve().parents[2]
