"""The domain's services on a fresh in-memory store, for each unit test of its rules."""

from __future__ import annotations

import pytest
from tests.support.domain import Domain


@pytest.fixture
def domain() -> Domain:
    """The real services, the shipped step kinds and an empty MemoryStore."""
    return Domain.in_memory()
