"""Fixtures of tests/sample (defined in sample_helpers.py, shared with the test modules by import)."""

from sample_helpers import *  # noqa: F401,F403
from sample_helpers import _one_torch_thread  # noqa: F401
