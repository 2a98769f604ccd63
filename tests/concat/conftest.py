"""Fixtures of tests/concat (defined in concat_helpers.py, shared with the test modules by import)."""

from concat_helpers import *  # noqa: F401,F403
