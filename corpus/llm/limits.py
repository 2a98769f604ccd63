"""Request-per-minute and token-per-minute limits as two independent async token buckets."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """A bucket of ``per_minute`` units refilled continuously; ``acquire(n)`` waits until n units are free.

    A request larger than the whole bucket is let through when the bucket is full (otherwise it
    could never run); waiters are served in arrival order.
    """

    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()
        self.waited = 0.0

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, n: float = 1.0) -> None:
        n = min(float(n), self.capacity)
        async with self._lock:
            self._refill()
            while self.level < n:
                wait = (n - self.level) / self.rate
                self.waited += wait
                await asyncio.sleep(wait)
                self._refill()
            self.level -= n

    def refund(self, n: float) -> None:
        """Give back units reserved but not used (e.g. the estimate exceeded the real usage)."""
        self._refill()
        self.level = min(self.capacity, self.level + max(0.0, n))


class RateLimits:
    """Both limits together; either may be off (``None``)."""

    def __init__(self, rpm: int | None, tpm: int | None):
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None

    async def acquire(self, tokens: int) -> None:
        if self.rpm is not None:
            await self.rpm.acquire(1)
        if self.tpm is not None:
            await self.tpm.acquire(tokens)

    def settle(self, estimated: int, used: int) -> None:
        """After an answer: return the part of the token estimate that was not used."""
        if self.tpm is not None and used < estimated:
            self.tpm.refund(estimated - used)


#: tokens of one 1024x1024 high-detail image for GPT-4o
IMAGE_TOKENS = 765


def estimate_tokens(text_chars: int, images: int, max_tokens: int | None) -> int:
    """Pre-call token estimate for the TPM limit: ~4 characters per token, :data:`IMAGE_TOKENS` per
    image, plus the completion cap as OpenAI's limiter counts it."""
    return text_chars // 4 + IMAGE_TOKENS * images + (max_tokens or 0)
