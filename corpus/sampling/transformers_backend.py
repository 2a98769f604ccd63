"""``transformers`` backend: batched ``generate`` on CPU or GPU; images go through the model's processor.

Each request is repeated k times in the batch (so a batch of ``batch_size`` candidates generates
``batch_size * k`` sequences), prompts are sorted by length to cut padding, and the RNG is seeded per
batch from the request keys, so a batch gives the same answers whatever ran before it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from corpus.guard_format import block_messages
from corpus.sampling.base import Backend, BatchResult, Completion, GenerationRequest, SamplingParams, load_rgb
from corpus.store import stable_hash


def _resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


def load_images(paths: Sequence[Path]):
    """Open images as RGB PIL images (raises ``OSError``/``FileNotFoundError`` naming the file)."""
    return [load_rgb(p) for p in paths]


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, model: str | Path, *, batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                 attn_implementation: str | None = None):
        from transformers import AutoModelForImageTextToText

        from corpus.models import load_processor

        device = _resolve_device(device)
        kwargs = {"dtype": _resolve_dtype(dtype, device)}
        if attn_implementation:
            kwargs["attn_implementation"] = attn_implementation
        loaded = AutoModelForImageTextToText.from_pretrained(model, **kwargs).to(device).eval()
        self._setup(loaded, load_processor(model), batch_size, device)

    @classmethod
    def from_loaded(cls, model, processor, *, batch_size: int = 8) -> TransformersBackend:
        """Wrap a model and processor already in memory (benchmarks, training loops)."""
        self = cls.__new__(cls)
        self._setup(model.eval(), processor, batch_size, str(model.device))
        return self

    def _setup(self, model, processor, batch_size: int, device: str) -> None:
        import torch

        self._torch = torch
        self.model, self.processor, self.batch_size, self.device = model, processor, batch_size, device
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.tokenizer.padding_side = "left"
        gen = model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id

    def prompt_text(self, request: GenerationRequest) -> str:
        """The chat-template rendering of a request (with the generation prompt)."""
        return self.processor.apply_chat_template(block_messages(request.messages), tokenize=False,
                                                  add_generation_prompt=True)

    def encode(self, texts: list[str], images: list):
        kwargs = {"text": texts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        return self.processor(**kwargs).to(self.device)

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> BatchResult:
        t0 = time.perf_counter()
        texts = [self.prompt_text(r) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: (len(texts[i]), i))
        results: list[list[Completion]] = [[] for _ in requests]
        total = 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            comps, n_tok = self._generate_batch([requests[i] for i in idx], [texts[i] for i in idx], params)
            for i, c in zip(idx, comps):
                results[i] = c
            total += n_tok
        return BatchResult(results, total, time.perf_counter() - t0)

    def _generate_batch(self, reqs: list[GenerationRequest], texts: list[str], params: SamplingParams):
        torch = self._torch
        k = params.n
        seq_texts = [t for t in texts for _ in range(k)]
        seq_images = []
        for r in reqs:
            seq_images += load_images(r.images) * k  # the request's images, once per repeat
        inputs = self.encode(seq_texts, seq_images)
        seed = int(stable_hash([params.seed, [r.key for r in reqs]])[:8], 16)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(
                **inputs,
                do_sample=params.temperature > 0,
                temperature=params.temperature if params.temperature > 0 else None,
                top_p=params.top_p,
                top_k=0,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=self.pad_id,
            )
        gen = out[:, inputs["input_ids"].shape[1]:].tolist()
        comps: list[list[Completion]] = [[] for _ in reqs]
        total = 0
        for s, ids in enumerate(gen):
            n, finish = len(ids), "length"
            for j, t in enumerate(ids):
                if t in self.eos_ids:
                    n, finish = j + 1, "stop"
                    break
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            comps[s // k].append(Completion(text=text, tokens=n, finish_reason=finish))
            total += n
        return comps, total

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            self._torch.cuda.empty_cache()
