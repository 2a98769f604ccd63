"""Fixtures of tests/llm (defined in llm_helpers.py, shared with the test modules by import)."""

from llm_helpers import api_key, server  # noqa: F401
