"""policies: the properties (hypothesis), moved from tests/unit/test_policies.py, where its examples are."""

from __future__ import annotations

import pytest

from offsync.policies import FirstWriterWins, LastWriterWins, MultiValue, Policy
from offsync.testing import check_policy


@pytest.mark.parametrize("policy", [LastWriterWins(), FirstWriterWins(), MultiValue()], ids=repr)
def test_builtin_policies_are_functions_of_the_set(policy: Policy) -> None:
    check_policy(policy)
