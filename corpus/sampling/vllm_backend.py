"""``vllm`` backend: in-process ``vllm.LLM`` (installed by the ``gpu`` extra, imported only when used).

Request building is plain data so it can be checked without vLLM: :func:`build_vllm_requests` renders each
candidate with the model's chat template (one ``<|vision_start|><|image_pad|><|vision_end|>`` per image;
vLLM expands the placeholder), attaches its images as ``multi_modal_data`` and gives the sampling fields:
``fanout="n"``: one prompt with ``n=k`` and ``seed``; ``fanout="requests"``: k prompts with ``n=1`` and seeds
seed..seed+k-1 (each (sample, k) its own request, as batch engines may keep only the first of n outputs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus.guard_format import block_messages
from corpus.sampling.base import Backend, BatchResult, Completion, GenerationRequest, SamplingParams, load_rgb


@dataclass
class VllmRequest:
    """One vLLM prompt: ``prompt`` (``{"prompt": text, "multi_modal_data": {"image": [...]}}``),
    the ``SamplingParams`` fields, and which candidate it belongs to."""

    index: int
    prompt: dict
    sampling: dict


def sampling_fields(params: SamplingParams, n: int, seed: int) -> dict:
    return {"n": n, "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_new_tokens,
            "seed": seed}


def build_vllm_requests(requests: Sequence[GenerationRequest], params: SamplingParams,
                        render: Callable[[list[dict]], str], load_image: Callable[[Path], Any]) -> list[VllmRequest]:
    """The vLLM prompts for ``requests``; ``render`` applies the chat template to block messages."""
    out = []
    for i, r in enumerate(requests):
        prompt: dict = {"prompt": render(block_messages(r.messages))}
        if r.images:
            prompt["multi_modal_data"] = {"image": [load_image(p) for p in r.images]}
        if params.fanout == "n":
            out.append(VllmRequest(i, prompt, sampling_fields(params, params.n, params.seed)))
        else:
            out += [VllmRequest(i, prompt, sampling_fields(params, 1, s)) for s in params.seeds()]
    return out


def chat_template_renderer(model: str | Path) -> Callable[[list[dict]], str]:
    """``messages -> prompt text`` with the model's own chat template (generation prompt added)."""
    from corpus.models import load_processor

    processor = load_processor(model)

    def render(messages: list[dict]) -> str:
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return render


class VllmBackend(Backend):
    name = "vllm"

    def __init__(self, model: str | Path, *, max_images: int = 4, engine_args: dict | None = None):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError("sample.backend=vllm needs vLLM: pip install 'guardreasoner-corpus[gpu]'") from exc
        self._vllm = vllm
        args = {"limit_mm_per_prompt": {"image": max_images}, **(engine_args or {})}
        self.llm = vllm.LLM(model=str(model), **args)
        self.render = chat_template_renderer(model)

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> BatchResult:
        t0 = time.perf_counter()
        built = build_vllm_requests(requests, params, self.render, load_rgb)
        outputs = self.llm.generate([b.prompt for b in built],
                                    sampling_params=[self._vllm.SamplingParams(**b.sampling) for b in built],
                                    use_tqdm=False)
        results: list[list[Completion]] = [[] for _ in requests]
        total = 0
        for b, out in zip(built, outputs):
            for c in out.outputs:
                n = len(c.token_ids)
                results[b.index].append(Completion(c.text, tokens=n, finish_reason=c.finish_reason))
                total += n
        return BatchResult(results, total, time.perf_counter() - t0)

    def close(self) -> None:
        del self.llm
