"""The teacher client: one reused AsyncOpenAI (and fast transport), bounded concurrency, RPM/TPM limits,
tenacity retries. ``complete(request)`` returns an :class:`Outcome`: an answer with its finish status,
or a recorded failure with its cause; it never raises for a bad row.

It raises :class:`TeacherUnavailable` only when the endpoint itself is unusable (the circuit breaker,
:mod:`corpus.llm.breaker`): the preflight check before the first request fails, ``breaker_errors``
consecutive connection errors or timeouts, any 401/403, a 404 (unknown model or path) or an
``insufficient_quota`` error. Every later call then raises at once, so a stage stops within seconds.

Identical requests (same key) in flight at the same time are sent once; the others wait for that
answer. Each attempt is written to the request journal (:mod:`corpus.llm.journal`) when one is given,
and an answer is handed to ``commit`` (the cache) before the request counts as done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from corpus.errors import RecipeError
from corpus.llm._http import httpx
from corpus.llm.breaker import Breaker, TeacherUnavailable, preflight
from corpus.llm.config import SynthesizeConfig
from corpus.llm.journal import RequestJournal
from corpus.llm.limits import RateLimits, estimate_tokens
from corpus.llm.request import ChatRequest, Outcome, answer_outcome
from corpus.llm.retry import backoff_seconds, describe, error_kind, is_retryable, wait_retry_after_or_backoff
from corpus.llm.transport import FastChatTransport, check_completion

LOCAL_KEY = "EMPTY"
__all__ = ["ClientConfigError", "TeacherClient", "TeacherUnavailable", "api_key_from_env"]


class ClientConfigError(RecipeError):
    """The teacher client cannot be built (e.g. the API key variable is unset for api.openai.com)."""


def api_key_from_env(cfg: SynthesizeConfig) -> str:
    """The key from the variable NAMED in the recipe; local servers (vLLM) get a placeholder if unset."""
    key = os.environ.get(cfg.api_key_env)
    if key:
        return key
    if cfg.base_url is None:
        raise ClientConfigError(
            f"synthesize: environment variable {cfg.api_key_env} is not set (needed for api.openai.com); "
            "set it, point synthesize.base_url at another server, or use synthesize.mode: replay (cache only)")
    return LOCAL_KEY


def _default_data_url(path: Path, max_pixels: int) -> str:
    from corpus.images import data_url

    return data_url(path, max_pixels)


class TeacherClient:
    """Use inside one event loop; ``await close()`` at the end."""

    def __init__(self, cfg: SynthesizeConfig, api_key: str | None = None,
                 data_url: Callable[[Path, int], str] | None = None, journal: RequestJournal | None = None):
        self.cfg = cfg
        self.journal = journal
        self._secret = api_key if api_key is not None else api_key_from_env(cfg)
        self._sdk: openai.AsyncOpenAI | None = None
        self.base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.fast = None
        if cfg.transport == "fast":
            self.fast = FastChatTransport(lambda: self.sdk, base_url=self.base_url, api_key=self._secret,
                                          connections=cfg.concurrency, timeout=cfg.timeout,
                                          organization=os.environ.get("OPENAI_ORG_ID"),
                                          project=os.environ.get("OPENAI_PROJECT_ID"))
        self.data_url = data_url or _default_data_url
        self.limits = RateLimits(cfg.rpm, cfg.tpm)
        self._sem: asyncio.Semaphore | None = None
        self.stats: Counter[str] = Counter()
        self.breaker = Breaker(self.base_url, cfg.model, cfg.breaker_errors, self._secret)
        self._inflight: dict[str, asyncio.Future] = {}
        self._checked: asyncio.Task | None = None

    @property
    def sdk(self) -> openai.AsyncOpenAI:
        """The SDK client (its own aiohttp transport, no SDK retries: ours do that), made on first use."""
        if self._sdk is None:
            limits = httpx.Limits(max_connections=self.cfg.concurrency,
                                  max_keepalive_connections=self.cfg.concurrency)
            try:  # the SDK's aiohttp transport: less CPU per request than its default httpx one
                http = openai.DefaultAioHttpClient(limits=limits, timeout=self.cfg.timeout)
            except (AttributeError, RuntimeError):  # an SDK without it (or without aiohttp)
                http = None
            self._sdk = openai.AsyncOpenAI(api_key=self._secret, base_url=self.base_url, max_retries=0,
                                           timeout=self.cfg.timeout, http_client=http)
        return self._sdk

    @property
    def sem(self) -> asyncio.Semaphore:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.cfg.concurrency)
        return self._sem

    async def _send(self, body: dict) -> dict:
        if self.fast is not None:
            return await self.fast.create(body)
        try:
            completion = await self.sdk.chat.completions.create(**body)
            return check_completion(completion.model_dump())
        except ValueError as exc:  # the SDK lets a body that is not JSON through as a bare JSONDecodeError
            request = httpx.Request("POST", self.base_url.rstrip("/") + "/chat/completions")
            raise openai.APIResponseValidationError(httpx.Response(200, request=request), None,
                                                    message=f"Malformed response body: {exc}") from None

    def _retrying(self) -> AsyncRetrying:
        """Retries after the first failed attempt: ``max_retries`` more, first wait already done."""
        return AsyncRetrying(
            retry=retry_if_exception(is_retryable),
            wait=wait_retry_after_or_backoff(self.cfg.backoff_initial, self.cfg.backoff_max, offset=1),
            stop=stop_after_attempt(self.cfg.max_retries),
            before_sleep=self._count_retry,
            reraise=True,
        )

    def _count_retry(self, state) -> None:
        self._count_error(state.outcome.exception() if state.outcome else None)

    def _count_error(self, exc: BaseException | None) -> None:
        self.stats["retries"] += 1
        if exc is not None:
            self.stats[f"retry:{error_kind(exc)}"] += 1

    async def _preflight(self) -> None:
        """Once, before the first request of this client (never when every answer comes from the cache):
        build the SDK client (the fast transport makes its exceptions; built lazily on the first error it
        would block the event loop for 0.1-0.5 s while answers wait unread and uncommitted), then check
        the endpoint."""
        if self._checked is not None and self._checked.done():  # the common case: no new future per request
            self._checked.result()
            return
        if self._checked is None:
            self.sdk  # noqa: B018 (built now, on purpose)
            if not self.cfg.preflight:
                self._checked = asyncio.get_running_loop().create_future()
                self._checked.set_result(None)
            else:
                self._checked = asyncio.ensure_future(preflight(self.base_url, self._secret, self.cfg.model,
                                                                min(self.cfg.timeout, 15.0), self.breaker))
        await asyncio.shield(self._checked)

    async def _attempt(self, req: ChatRequest, state: dict) -> dict:
        self.breaker.check()
        await self._preflight()
        async with self.sem:
            self.breaker.check()
            await self.limits.acquire(state["estimate"])
            if state["body"] is None:
                try:
                    state["body"] = req.body(self.data_url)
                except (OSError, ValueError) as exc:
                    raise _BuildError(f"request build failed: {type(exc).__name__}: {exc}") from None
            state["attempts"] += 1
            self.stats["requests_sent"] += 1
            if self.journal is not None:
                self.journal.sent(req.key)
            try:
                data = await self._send(state["body"])
            except (openai.OpenAIError, asyncio.TimeoutError) as exc:
                if self.journal is not None:
                    self.journal.done(req.key)
                self.breaker.failure(exc)  # raises TeacherUnavailable when the endpoint is unusable
                raise
            self.breaker.success()
            return data

    async def complete(self, req: ChatRequest, commit: Callable[[Outcome], None] | None = None) -> Outcome:
        """One request with retries; ``commit(answer)`` runs before the request counts as done (the
        journal's ``E``). A request whose key is already in flight waits for that one instead."""
        running = self._inflight.get(req.key)
        if running is not None:
            self.stats["inflight_dedup"] += 1
            o = await asyncio.shield(running)
            return dataclasses.replace(o, source="inflight")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[req.key] = fut
        try:
            o = await self._complete(req)
        except BaseException as exc:
            if isinstance(exc, Exception):
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            else:
                fut.cancel()
            raise
        finally:
            del self._inflight[req.key]
        if o.answered:
            if commit is not None:
                commit(o)
            if self.journal is not None:
                self.journal.done(req.key)
        fut.set_result(o)
        return o

    async def _complete(self, req: ChatRequest) -> Outcome:
        """The first attempt runs outside tenacity (its per-call machinery costs more CPU than a whole
        request on the fast path); only a retryable failure enters the retry loop."""
        state = {"estimate": estimate_tokens(req.text_chars(), req.image_count, req.params.get("max_tokens")),
                 "body": None, "attempts": 0}
        try:
            try:
                data = await self._attempt(req, state)
            except (openai.OpenAIError, asyncio.TimeoutError) as first:
                if not is_retryable(first) or self.cfg.max_retries == 0:
                    raise
                self._count_error(first)
                await asyncio.sleep(backoff_seconds(first, 1, self.cfg.backoff_initial, self.cfg.backoff_max))
                async for attempt in self._retrying():
                    with attempt:
                        data = await self._attempt(req, state)
        except TeacherUnavailable:
            raise
        except _BuildError as exc:
            self.stats["failed:build"] += 1
            return Outcome(status="failed", error=str(exc), attempts=state["attempts"])
        except (openai.OpenAIError, asyncio.TimeoutError) as exc:
            self.stats[f"failed:{error_kind(exc)}"] += 1
            return Outcome(status="failed", error=describe(exc, self._secret), attempts=state["attempts"])
        except Exception as exc:  # one bad row never kills a run: anything else is a recorded failure too
            self.stats["failed:unexpected"] += 1
            return Outcome(status="failed", error=describe(exc, self._secret), attempts=state["attempts"])
        o = answer_outcome(data, "api", state["attempts"])
        self.limits.settle(state["estimate"], o.prompt_tokens + o.completion_tokens)
        self.stats["answered"] += 1
        self.stats[f"answer:{o.status}"] += 1
        return o

    async def close(self) -> None:
        if self.fast is not None:
            await self.fast.close()
        if self._sdk is not None:
            await self._sdk.close()


class _BuildError(Exception):
    """The request could not be built (e.g. an image file is missing); not retried."""
