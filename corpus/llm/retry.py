"""Which teacher errors are retried, how long to wait, and how a failure is written on the row.

Retried: 408/409/429, 5xx, timeouts, connection errors and malformed response bodies (no usable
answer was received). Not retried: 400/401/403/404/422 and anything else (a rerun will not fix them;
they become ``failed`` rows with the error). Waits: the server's ``Retry-After``/``retry-after-ms``
when given (capped), else exponential backoff with jitter.
"""

from __future__ import annotations

import email.utils
import random
import time

import openai
from tenacity import RetryCallState
from tenacity.wait import wait_base

from corpus.llm.failures import RETRY_STATUS, is_retryable_kind

__all__ = ["RETRY_STATUS", "is_retryable", "is_retryable_kind"]


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, openai.APIStatusError | openai.APIConnectionError | openai.APIResponseValidationError):
        return False
    return is_retryable_kind(error_kind(exc))


def error_kind(exc: BaseException) -> str:
    """Short class of an error for counters: http_429, timeout, connection, malformed, ..."""
    if isinstance(exc, openai.APIStatusError):
        return f"http_{exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIResponseValidationError):
        return "malformed"
    return type(exc).__name__


def describe(exc: BaseException, secret: str | None = None) -> str:
    """``<kind>: <message>`` for the row's teacher_error, with the API key scrubbed if echoed."""
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return scrub(f"{error_kind(exc)}: {msg}", secret)


def scrub(text: str, secret: str | None) -> str:
    """``text`` (at most 2000 characters) with the API key replaced by ``***`` wherever it is echoed."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text[:2000]


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after`` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def backoff_seconds(exc: BaseException | None, retry_number: int, initial: float, cap: float) -> float:
    """Wait before retry ``retry_number`` (1-based): Retry-After when sent (capped at ``cap``), else
    ``initial * 2**(n-1)`` with equal jitter (half fixed, half random), capped at ``cap``."""
    ra = retry_after(exc)
    if ra is not None:
        return min(ra, cap)
    base = min(cap, initial * 2 ** (retry_number - 1))
    return base / 2 + random.uniform(0, base / 2)


class wait_retry_after_or_backoff(wait_base):  # noqa: N801 (tenacity naming style)
    """tenacity wait strategy using :func:`backoff_seconds`; ``offset`` = retries already done before."""

    def __init__(self, initial: float, cap: float, offset: int = 0):
        self.initial, self.cap, self.offset = initial, cap, offset

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return backoff_seconds(exc, retry_state.attempt_number + self.offset, self.initial, self.cap)
