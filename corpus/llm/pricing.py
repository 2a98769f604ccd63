"""Token cost from the recipe's price table (USD per one million tokens)."""

from __future__ import annotations

from corpus.llm.config import Price


def cost_usd(price: Price | None, prompt_tokens: int, completion_tokens: int) -> float:
    """Cost of one call; 0.0 when the model has no price (a local teacher), never a guess."""
    if price is None:
        return 0.0
    return (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1_000_000
