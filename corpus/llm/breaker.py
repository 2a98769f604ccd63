"""Fail fast when the teacher endpoint itself is unusable: the circuit breaker and the preflight check.

A dead port, a wrong key, an unknown model, an exhausted quota or a server that hangs would otherwise
turn every row into a failure, one timeout and ``max_retries`` backoffs at a time (hours with the
defaults). The breaker trips on

- ``breaker_errors`` consecutive connection errors or timeouts (any response from the server resets it),
- any HTTP 401 or 403 (the key is refused),
- any HTTP 404 (the model is unknown to the server, or ``base_url`` points at the wrong path),
- ``insufficient_quota`` (a 429 no wait will fix);

after that every request raises :class:`TeacherUnavailable` at once. The message names ``base_url`` and
the model, never the key. The preflight (``GET <base_url>/models``, once, before the first request is
sent) catches a dead or hanging endpoint, a refused key and a model the server does not list before a
large run starts; a server without a model list (404/405 there) is let through to the breaker.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import openai

from corpus.llm.retry import error_kind, scrub
from corpus.store import StageIncomplete

log = logging.getLogger(__name__)


class TeacherUnavailable(StageIncomplete):
    """The teacher endpoint cannot be used (see the module docstring)."""


def _api_message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


class Breaker:
    def __init__(self, base_url: str, model: str, max_errors: int, secret: str | None = None):
        self.base_url, self.model, self.max_errors, self._secret = base_url, model, max_errors, secret
        self.consecutive = 0
        self.tripped: TeacherUnavailable | None = None

    def trip(self, reason: str) -> TeacherUnavailable:
        if self.tripped is None:
            msg = (f"teacher endpoint {self.base_url} (model {self.model!r}): {reason}. Stopped; answers received "
                   "so far are kept in the cache and finished parts on disk: fix the endpoint and rerun to resume")
            self.tripped = TeacherUnavailable(scrub(msg, self._secret))
        return self.tripped

    def check(self) -> None:
        if self.tripped is not None:
            raise self.tripped

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, exc: BaseException) -> None:
        """Record a failed attempt; raise :class:`TeacherUnavailable` when it trips the breaker."""
        self.check()
        if isinstance(exc, openai.APIStatusError):
            self.consecutive = 0
            code = exc.status_code
            if code in (401, 403):
                raise self.trip(f"HTTP {code}, the API key is refused ({_api_message(exc)})")
            if code == 404:
                raise self.trip(f"HTTP 404, unknown model or wrong base_url ({_api_message(exc)})")
            if getattr(exc, "code", None) == "insufficient_quota" or "insufficient_quota" in _api_message(exc):
                raise self.trip(f"quota exhausted ({_api_message(exc)})")
            return
        if isinstance(exc, openai.APIConnectionError | asyncio.TimeoutError):
            self.consecutive += 1
            if self.consecutive >= self.max_errors:
                raise self.trip(f"{self.consecutive} consecutive {error_kind(exc)} errors, last: "
                                f"{_api_message(exc)}")


async def preflight(base_url: str, api_key: str, model: str, timeout: float, breaker: Breaker) -> None:
    """``GET <base_url>/models`` once; trip ``breaker`` (and raise) when the endpoint is unusable."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, headers=headers) as resp:
                status = resp.status
                text = await resp.text(errors="replace")
    except asyncio.TimeoutError:
        raise breaker.trip(f"no answer to GET /models within {timeout:g} s (the server hangs)") from None
    except aiohttp.ClientError as exc:
        raise breaker.trip(f"cannot connect ({type(exc).__name__}: {exc})") from None
    if status in (401, 403):
        raise breaker.trip(f"HTTP {status} on GET /models, the API key is refused ({text[:300]})")
    if status != 200:
        log.info("teacher preflight: GET %s answered HTTP %s; model check skipped", url, status)
        return
    try:
        ids = [m.get("id") for m in json.loads(text).get("data") or [] if isinstance(m, dict)]
    except (ValueError, AttributeError):
        log.info("teacher preflight: GET %s did not return a model list; model check skipped", url)
        return
    if ids and model not in ids:
        shown = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
        raise breaker.trip(f"the server does not serve this model (GET /models lists: {shown})")
