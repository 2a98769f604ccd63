"""Fixtures of the text-source tests."""

from __future__ import annotations

import pytest
from text_source_helpers import REAL


@pytest.fixture
def real():
    if not REAL.is_dir():
        pytest.skip("shared real data not present")
    return REAL
