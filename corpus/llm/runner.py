"""Resolve teacher requests: cache first, then the API (online mode) or nothing (replay mode).

Identical requests are sent once. Every answer is committed to the cache as it arrives (the cache is
the journal), so an interrupted run resumes without re-buying an answer. A ``length``/``empty``
answer is only re-asked when the recipe asks for it (``retry_truncated``/``retry_empty``); each
re-ask is its own cache entry, counted in the stats, and its tokens are added to the row.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING

from corpus.llm.cache import ResponseCache
from corpus.llm.config import SynthesizeConfig
from corpus.llm.pricing import cost_usd
from corpus.llm.progress import Progress
from corpus.llm.request import ChatRequest, Outcome

if TYPE_CHECKING:
    from corpus.llm.client import TeacherClient

NO_CACHE_ERROR = "replay mode: no cached answer for this request"


class Runner:
    def __init__(self, cfg: SynthesizeConfig, cache: ResponseCache, client: TeacherClient | None = None,
                 progress: Progress | None = None, failures: dict[str, str] | None = None):
        """``client=None``: cache only. ``failures``: known errors of requests not in the cache (batch mode,
        or final failures of an earlier attempt that a rerun does not retry), recorded as ``failed`` with that
        error instead of being requested (or recorded as ``no_cached_response``)."""
        self.cfg, self.cache, self.client, self.progress = cfg, cache, client, progress
        self.failures = failures or {}
        self.price = cfg.price()
        self.stats: Counter[str] = Counter()

    async def resolve(self, reqs: list[ChatRequest], chunk: int = 64) -> list[Outcome]:
        """One outcome per request, in order. Requests go out while later keys are still being computed
        (chunks of ``chunk``), so a large unit starts paying its latency at once."""
        tasks: dict[str, asyncio.Task] = {}
        for start in range(0, len(reqs), chunk):
            part = reqs[start:start + chunk]
            fresh = {}
            for r in part:
                if r.key not in tasks and r.key not in fresh:
                    fresh[r.key] = r
            cached = self.cache.get_many(list(fresh)) if fresh else {}
            for k, r in fresh.items():
                tasks[k] = asyncio.create_task(self._with_reasks(r, cached.get(k)))
            await asyncio.sleep(0)
        if tasks:
            await _all_or_cancel(list(tasks.values()))
        done = {k: t.result() for k, t in tasks.items()}
        shared: Counter[bool] = Counter()  # rows sharing a request with an earlier row, by answered
        seen: set[str] = set()
        for r in reqs:
            self.stats[f"status:{done[r.key].status}"] += 1
            if r.key in seen:
                shared[done[r.key].answered] += 1
            seen.add(r.key)
        if self.progress is not None:
            for answered, n in shared.items():
                self.progress.update(n, paid=False, answered=answered)
        return [done[r.key] for r in reqs]

    async def _get(self, req: ChatRequest, cached: Outcome | None = None) -> tuple[Outcome, bool]:
        hit = cached or self.cache.get(req.key)
        if hit is not None:
            self.stats[f"hit:{hit.source}"] += 1
            return hit, False
        if req.key in self.failures:
            return Outcome(status="failed", error=self.failures[req.key], source="recorded"), False
        if self.client is None:
            self.stats["no_cached_response"] += 1
            return Outcome(status="no_cached_response", error=NO_CACHE_ERROR, source="replay"), False
        o = await self.client.complete(req, commit=lambda a: self.cache.put(req.key, req.model, a))
        return o, o.source == "api"

    async def _with_reasks(self, req: ChatRequest, cached: Outcome | None) -> Outcome:
        o, paid = await self._get(req, cached)
        pt, ct = o.prompt_tokens, o.completion_tokens
        paid_pt, paid_ct = (pt, ct) if paid else (0, 0)
        n = 0
        while o.answered and n < self.cfg.reask_limit(o.status):
            n += 1
            self.stats[f"reask:{o.status}"] += 1
            again, p = await self._get(req.again(n))
            if not again.answered:  # keep the answer we have rather than a failed re-ask
                break
            o = again
            pt, ct = pt + o.prompt_tokens, ct + o.completion_tokens
            if p:
                paid, paid_pt, paid_ct = True, paid_pt + o.prompt_tokens, paid_ct + o.completion_tokens
        o.prompt_tokens, o.completion_tokens, o.reasks = pt, ct, n
        if self.progress is not None:
            self.progress.update(1, paid=paid, answered=o.answered, prompt_tokens=paid_pt, completion_tokens=paid_ct,
                                 cost=cost_usd(self.price, paid_pt, paid_ct))
        return o


async def _all_or_cancel(tasks: list[asyncio.Task]) -> None:
    """Wait for every task; on the first exception (e.g. the circuit breaker) cancel the others and raise it."""
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failed = next((t for t in done if not t.cancelled() and t.exception() is not None), None)
    if failed is None:
        return
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for t in done:  # retrieve every exception so none is reported as never retrieved
        if not t.cancelled():
            t.exception()
    raise failed.exception()
