"""The recipe's ``synthesize:`` section: which teacher, how to call it, what it costs, where the cache lives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MODEL = "gpt-4o-2024-08-06"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationParams(_Strict):
    """Sampling parameters sent with every teacher request (part of the cache key)."""

    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 as in GuardReasoner's teacher calls.")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(2048, ge=1, description="Completion token cap; longer answers end with `length`.")
    seed: int | None = None

    def request_fields(self) -> dict:
        """The fields as they go into the request body (None values left out)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Price(_Strict):
    """USD per one million tokens."""

    prompt: float = Field(ge=0.0)
    completion: float = Field(ge=0.0)


def default_prices() -> dict[str, Price]:
    # List prices (USD / 1M tokens) at the time of writing; override in the recipe.
    return {
        "gpt-4o-2024-08-06": Price(prompt=2.50, completion=10.00),
        "gpt-4o": Price(prompt=2.50, completion=10.00),
        "gpt-4o-mini": Price(prompt=0.15, completion=0.60),
        "gpt-4.1": Price(prompt=2.00, completion=8.00),
        "gpt-4.1-mini": Price(prompt=0.40, completion=1.60),
    }


def default_cache_dir() -> Path:
    """Shared teacher cache: $CORPUS_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache)/guardreasoner-corpus/teacher."""
    env = os.environ.get("CORPUS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "guardreasoner-corpus" / "teacher"


class SynthesizeConfig(_Strict):
    """Teacher reasoning synthesis (``synthesize:`` in a recipe)."""

    model: str = Field(DEFAULT_MODEL, description="Teacher model name as the server knows it.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint; None = api.openai.com.")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var holding the key (never the key).")
    mode: Literal["online", "batch", "replay"] = Field(
        "online", description="online: live calls; batch: OpenAI Batch API; replay: cache only, no network.")
    concurrency: int = Field(64, ge=1, description="Requests in flight at once.")
    rpm: int | None = Field(None, ge=1, description="Requests-per-minute limit (None = unlimited).")
    tpm: int | None = Field(None, ge=1, description="Tokens-per-minute limit, estimated before the call.")
    timeout: float = Field(120.0, gt=0.0, description="Seconds per request attempt.")
    max_retries: int = Field(6, ge=0, description="Retries of 429/5xx/timeouts/connection errors/malformed bodies.")
    backoff_initial: float = Field(1.0, ge=0.0, description="First backoff (s); doubles per retry, full jitter.")
    backoff_max: float = Field(60.0, ge=0.0, description="Cap of one backoff wait, also of a Retry-After wait.")
    breaker_errors: int = Field(
        8, ge=1, description="Stop the stage after this many consecutive connection errors or timeouts.")
    preflight: bool = Field(True, description="GET <base_url>/models once before the first request is sent.")
    cache_synchronous: Literal["normal", "full"] = Field(
        "normal", description="SQLite synchronous mode of the cache: normal survives a killed process, "
                              "full also a power loss (one fsync per answer).")
    transport: Literal["fast", "sdk"] = Field(
        "fast", description="fast: lean aiohttp path yielding the SDK's ChatCompletion and exceptions; "
                            "sdk: AsyncOpenAI.chat.completions.create over the SDK's aiohttp transport.")
    generation: GenerationParams = Field(default_factory=GenerationParams)
    image_max_pixels: int = Field(1024 * 1024, ge=1024, description="Pixel budget of each image sent.")
    prices: dict[str, Price] = Field(default_factory=default_prices)
    cache_dir: str | None = Field(None, description="Teacher cache folder shared by runs; None = default_cache_dir().")
    replay_caches: list[str] = Field(
        default_factory=lambda: ["embedded:teacher_cache"],
        description="Read-only JSONL caches consulted after cache_dir (the shipped replay cache by default).")
    retry_truncated: int = Field(0, ge=0, description="Re-ask a `length` answer up to N times (paid, counted).")
    retry_empty: int = Field(0, ge=0, description="Re-ask an empty answer up to N times (paid, counted).")
    batch_max_requests: int = Field(50_000, ge=1, description="Requests per submitted batch.")
    batch_poll_seconds: float = Field(30.0, gt=0.0)
    batch_rounds: int = Field(3, ge=1, description="Submissions of failed/expired batch items before giving up.")
    batch_completion_window: str = "24h"
    progress: bool = Field(True, description="Show a progress bar on stderr.")

    def reask_limit(self, status: str) -> int:
        """How many times an answer of this status may be re-asked (``retry_truncated``/``retry_empty``)."""
        return {"length": self.retry_truncated, "empty": self.retry_empty}.get(status, 0)

    def price(self) -> Price | None:
        return self.prices.get(self.model)
