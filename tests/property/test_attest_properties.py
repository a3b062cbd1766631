"""attest: the properties (hypothesis), moved from tests/unit/test_attest.py, where its examples are."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offsync.attest import (
    read_attestation,
)
from offsync.errors import (
    RemoteDataError,
)


@given(st.binary(max_size=400))
def test_random_tokens_are_refused(data: bytes) -> None:
    with pytest.raises(RemoteDataError):
        read_attestation(data)
