"""Fixtures for the filter/export tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corpus.recipe import Recipe

# datasets must never reach the hub from these tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def recipe() -> Recipe:
    return Recipe(name="filter-test")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    return d
