"""Test helpers shipped with the package: a real local OpenAI-compatible server (:mod:`fake_openai`)."""

from __future__ import annotations

from typing import Any

__all__ = ["FAULTS", "FakeOpenAI", "content_key"]


def __getattr__(name: str) -> Any:  # lazy, so ``python -m corpus.testing.fake_openai`` imports it once
    if name in __all__:
        from corpus.testing import fake_openai

        return getattr(fake_openai, name)
    raise AttributeError(name)
