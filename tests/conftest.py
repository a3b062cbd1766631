"""Shared fixtures and the hypothesis profiles.

Profiles: ``ci`` (derandomized, fixed example counts; what CI runs), ``dev`` (the
default locally) and ``explore`` (many random examples: HYPOTHESIS_PROFILE=explore).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

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


@pytest.fixture(autouse=True)
def answers_match_the_openapi_document() -> Iterator[None]:
    """Every answer an offsync app gave through ``helpers_http.LiveServer`` during the
    test is as its OpenAPI document says (helpers_http.problems): a test whose
    scenario draws an undocumented answer fails, whatever it asserts itself."""
    http = sys.modules.get("helpers_http")  # only where a test serves over HTTP
    if http is not None:
        http.ANSWERS.clear()
    yield
    http = sys.modules.get("helpers_http")
    if http is None:
        return
    answers, http.ANSWERS[:] = list(http.ANSWERS), []
    found = [problem for answer in answers for problem in http.problems(answer)]
    assert not found, "answers that do not match the OpenAPI document:\n" + "\n".join(found)
