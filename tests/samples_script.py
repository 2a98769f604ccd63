"""Import the sample builder script (scripts/make_embedded_samples.py) from tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "make_embedded_samples.py"
_spec = importlib.util.spec_from_file_location("make_embedded_samples", _PATH)
assert _spec is not None and _spec.loader is not None
make_embedded_samples = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_embedded_samples)
