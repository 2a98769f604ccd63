"""``openai`` backend: any OpenAI-compatible server (``vllm serve`` of the SFT model, a hosted model, ...).

Built on the teacher's client code (:mod:`corpus.llm`): requests are :class:`~corpus.llm.request.ChatRequest`
objects (images as references until sent, then data URLs downscaled to ``image_max_pixels``;
content-addressed keys), sent by :class:`~corpus.llm.client.TeacherClient` (bounded concurrency, RPM/TPM
limits, retries with backoff, never raising for a bad row) through :class:`~corpus.llm.runner.Runner`
(identical requests sent once; with a ``cache_dir``, every answer is journalled as it arrives, so even
the unit a SIGKILL interrupted is not paid again). One event loop, client and journal serve the whole
stage, and :meth:`OpenAIBackend.submit` returns at once, so the stage keeps the next unit's requests in
flight while a unit finishes: requests in flight never drop to zero between units and connections are reused.

A candidate becomes k requests that differ only in ``seed`` (seed..seed+k-1): each has its own key and
it works with servers that ignore ``n``. (``fanout: n`` is not offered here: the client reads one choice.)
A request that still fails after the retries gives a completion with ``error`` set; the stage drops that
candidate (``generation_failed``) and a rerun asks again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from corpus.guard_format import block_messages
from corpus.llm.request import ChatRequest, image_part
from corpus.sampling.base import Backend, BatchResult, Completion, GenerationRequest, Pending, SamplingParams


def chat_messages(request: GenerationRequest) -> list[dict]:
    """OpenAI-style messages: strings where there are no images, else text parts and image references."""
    out = []
    images = iter(zip(request.image_sha256 or [None] * len(request.images), request.images))
    for m in block_messages(request.messages):
        if all(b["type"] == "text" for b in m["content"]):
            out.append({"role": m["role"], "content": "".join(b["text"] for b in m["content"])})
            continue
        parts = []
        for b in m["content"]:
            if b["type"] == "image":
                sha, path = next(images)
                parts.append(image_part(sha or str(path), path))
            else:
                parts.append({"type": "text", "text": b["text"]})
        out.append({"role": m["role"], "content": parts})
    return out


def chat_requests(request: GenerationRequest, params: SamplingParams, model: str,
                  image_max_pixels: int) -> list[ChatRequest]:
    """The k chat requests of one candidate, seeds seed..seed+k-1."""
    if params.fanout != "requests":
        raise ValueError("the openai backend sends one request per (candidate, k): use fanout 'requests'")
    messages = chat_messages(request)
    base = {"temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_new_tokens}
    return [ChatRequest(model, messages, {**base, "seed": s}, image_max_pixels) for s in params.seeds()]


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 32, timeout: float = 600.0, max_retries: int = 6, rpm: int | None = None,
                 tpm: int | None = None, image_max_pixels: int = 1024 * 1024, cache_dir: str | Path | None = None):
        from corpus.llm.client import api_key_from_env
        from corpus.llm.config import SynthesizeConfig

        self.model = model
        self.cfg = SynthesizeConfig(model=model, base_url=base_url, api_key_env=api_key_env,
                                    concurrency=concurrency, timeout=timeout, max_retries=max_retries, rpm=rpm,
                                    tpm=tpm, image_max_pixels=image_max_pixels, progress=False, replay_caches=[])
        self.api_key = api_key_from_env(self.cfg)  # fails early, naming the variable
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.image_max_pixels = image_max_pixels
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        """One event loop, client and answer journal for the backend's life (connections reused across units)."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="openai-backend", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
            asyncio.run_coroutine_threadsafe(self._open(), loop).result()
        return self._loop

    async def _open(self) -> None:
        from corpus.llm.cache import ResponseCache
        from corpus.llm.client import TeacherClient
        from corpus.llm.runner import Runner

        self._cache = ResponseCache(self.cache_dir)
        self._client = TeacherClient(self.cfg, api_key=self.api_key)
        self._runner = Runner(self.cfg, self._cache, self._client)

    def submit(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> Pending:
        """Send the batch's requests now (sharing the client's concurrency with batches still in flight)."""
        t0 = time.perf_counter()
        per_request = [chat_requests(r, params, self.model, self.image_max_pixels) for r in requests]
        flat = [r for reqs in per_request for r in reqs]
        fut = asyncio.run_coroutine_threadsafe(self._runner_resolve(flat), self._ensure_loop())
        return Pending(lambda: self._batch(per_request, fut.result(), t0))

    async def _runner_resolve(self, reqs: list[ChatRequest]):
        return await self._runner.resolve(reqs)

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> BatchResult:
        return self.submit(requests, params).result()

    @staticmethod
    def _batch(per_request: list[list[ChatRequest]], outcomes: list, t0: float) -> BatchResult:
        completions: list[list[Completion]] = []
        pos = 0
        for reqs in per_request:
            comps = []
            for o in outcomes[pos:pos + len(reqs)]:
                if o.answered:
                    comps.append(Completion(o.output or "", tokens=o.completion_tokens, finish_reason=o.finish_reason))
                else:
                    comps.append(Completion("", error=o.error or o.status))
            pos += len(reqs)
            completions.append(comps)
        total = sum(c.tokens for comps in completions for c in comps)
        return BatchResult(completions, total, time.perf_counter() - t0)

    def close(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def _shutdown() -> None:
            try:
                await self._client.close()
            finally:
                self._cache.close()

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), loop).result(timeout=30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None
