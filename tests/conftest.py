"""The tiers, shared fixtures and the hypothesis profiles (tests/README.md).

Tiers: every test sits in one tier directory (``tests/<tier>/``) and carries that
tier's marker, added here from the directory, so ``-m unit`` and ``tests/unit`` select
the same tests. A test file outside the tiers is refused at collection, as is a unit
test that asks for a temporary directory (the unit tier touches no files).

Profiles: ``ci`` (derandomized, fixed example counts; what CI runs), ``dev`` (the
default locally) and ``explore`` (many random examples: HYPOTHESIS_PROFILE=explore).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "explore",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

#: The tier directories under tests/, each also the name of its marker (pyproject.toml).
TIERS = ("unit", "vectors", "property", "conformance", "hostile", "integration", "postgres", "e2e")
HERE = Path(__file__).resolve().parent
#: Fixtures that hand a test a directory on disk: not for the unit tier.
FILE_FIXTURES = frozenset({"tmp_path", "tmp_path_factory", "tmpdir", "tmpdir_factory"})


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the first directory under tests/, if it is a tier."""
    try:
        first = path.resolve().relative_to(HERE).parts[0]
    except (ValueError, IndexError):
        return None
    return first if first in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier; refuse tests outside the tiers, and unit tests
    that ask for a directory on disk."""
    misplaced: list[str] = []
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            misplaced.append(f"{item.nodeid}: not in a tier directory (tests/<tier>/)")
            continue
        item.add_marker(getattr(pytest.mark, tier))
        if tier == "unit" and FILE_FIXTURES & set(getattr(item, "fixturenames", ())):
            misplaced.append(f"{item.nodeid}: a unit test may not use files (tmp_path)")
    if misplaced:
        raise pytest.UsageError(
            "tests out of place (see tests/README.md for the tiers):\n  " + "\n  ".join(misplaced)
        )


@pytest.fixture(autouse=True)
def answers_match_the_openapi_document() -> Iterator[None]:
    """Every answer an offsync app gave through ``tests.helpers.http.LiveServer`` during the
    test is as its OpenAPI document says (tests.helpers.http.problems): a test whose
    scenario draws an undocumented answer fails, whatever it asserts itself."""
    http = sys.modules.get("tests.helpers.http")  # only where a test serves over HTTP
    if http is not None:
        http.ANSWERS.clear()
    yield
    http = sys.modules.get("tests.helpers.http")
    if http is None:
        return
    answers, http.ANSWERS[:] = list(http.ANSWERS), []
    found = [problem for answer in answers for problem in http.problems(answer)]
    assert not found, "answers that do not match the OpenAPI document:\n" + "\n".join(found)
