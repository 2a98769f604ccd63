"""Which failures a retry, or a rerun of the stage, can fix: the one rule, by error kind.

A kind is what :func:`corpus.llm.retry.error_kind` names and what starts a row's ``teacher_error``
(``<kind>: <message>``). Retryable: connection errors, timeouts, malformed response bodies, HTTP
408/409/429 and 5xx. Anything else (400, 422, a request that cannot be built, ...) is final. Kept free
of the openai SDK so the stage can judge recorded rows without importing it.
"""

from __future__ import annotations

RETRY_STATUS = frozenset({408, 409, 429})


def is_retryable_kind(kind: str) -> bool:
    if kind in ("connection", "timeout", "malformed"):
        return True
    if kind.startswith("http_") and kind[5:].isdigit():
        code = int(kind[5:])
        return code in RETRY_STATUS or code >= 500
    return False


def is_retryable_error(error: str | None) -> bool:
    """Whether a row's recorded ``teacher_error`` is one a rerun retries."""
    return bool(error) and is_retryable_kind(error.split(":", 1)[0])
