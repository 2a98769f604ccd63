"""Fixtures for the image tests."""

from __future__ import annotations

import pytest
from image_factory import scene
from PIL import Image


@pytest.fixture
def photo() -> Image.Image:
    return scene(1)
