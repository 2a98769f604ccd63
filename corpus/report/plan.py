"""``corpus plan [RECIPE]``: what a recipe will cost before any money is spent.

1. Rows: the recipe's ingest runs locally (free: no teacher call) into a work folder, so rows per source
   after fractions, dedup, decontamination and the held-out split, and the composition, are the real ones.
   Hub sources are read as ingest reads them (they need the hub or its local cache).
2. Teacher prompt tokens: counted on the exact requests synthesize sends (same builder). Text is counted
   with OpenAI's ``o200k_base`` BPE for the GPT-4o / 4.1 / o-series family and ``cl100k_base`` for
   GPT-4 / 3.5 (the ``bpe-openai`` package ships both vocabularies, so this works offline), plus the
   chat format's 3 tokens per message and 3 to prime the reply. Other models fall back to characters / 4
   (its error against o200k on the same requests is reported). Images use the provider's high-detail
   rule on the image as sent (fit in 2048², shortest side ≤ 768, 170 tokens per 512-px tile + 85); the
   flat 765 per image that the TPM limiter assumes is shown beside it.
3. Completion tokens: the mean of the shipped recorded teacher outputs (real GuardReasoner-8B
   reasoning in corpus/samples/teacher_cache/recorded.jsonl), capped at ``generation.max_tokens``.
4. Cost at the recipe's price table, with the Batch API's 50% discount; time at the configured RPM, TPM
   and concurrency (with an assumed seconds per request); rejection-sampling and SFT token counts.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from corpus.guard_format import guard_system_prompt, guard_user_text
from corpus.llm.limits import IMAGE_TOKENS, estimate_tokens
from corpus.resources import samples_dir
from corpus.stages import get_stage
from corpus.stages.synthesize import build_request
from corpus.store import StageDir

BATCH_DISCOUNT = 0.5
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE, REPLY_PRIMING = 3, 3
O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")
CL100K_PREFIXES = ("gpt-4", "gpt-3.5")


def encoding_for(model: str) -> str | None:
    """The BPE of the teacher's model family, or None (unknown family: characters / 4)."""
    name = model.lower().split("/")[-1]
    if name.startswith(O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(CL100K_PREFIXES):
        return "cl100k_base"
    return None


@cache
def _encoder(name: str):
    import bpe_openai

    return bpe_openai.get_encoding(name)


class TokenCounter:
    """Text tokens with the model family's BPE when it is installed, else characters / 4."""

    def __init__(self, model: str):
        self.encoding = encoding_for(model)
        if self.encoding is not None:
            try:
                _encoder(self.encoding)
            except ImportError:  # the `report` extra is not installed
                self.encoding = None
        self.method = self.encoding or f"characters/{CHARS_PER_TOKEN} (no offline tokenizer for {model!r})"
        self._repeated: dict[str, int] = {}  # system prompts: a handful of distinct texts on every request

    def text(self, s: str, repeated: bool = False) -> int:
        if self.encoding is None:
            return math.ceil(len(s) / CHARS_PER_TOKEN)
        if repeated:
            if s not in self._repeated:
                self._repeated[s] = len(_encoder(self.encoding).encode(s))
            return self._repeated[s]
        return len(_encoder(self.encoding).encode(s))

    def messages(self, messages: list[dict]) -> tuple[int, int]:
        """(text tokens of the chat, characters of its text) of OpenAI-style messages."""
        tokens, chars = (REPLY_PRIMING if self.encoding else 0), 0
        for m in messages:
            c = m["content"]
            texts = [c] if isinstance(c, str) else [p.get("text", "") for p in c if p.get("type") == "text"]
            chars += sum(len(t) for t in texts)
            repeated = m["role"] == "system"
            tokens += sum(self.text(t, repeated) for t in texts) + (TOKENS_PER_MESSAGE if self.encoding else 0)
        if self.encoding is None:
            tokens = math.ceil(chars / CHARS_PER_TOKEN)
        return tokens, chars


def sent_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The size an image is sent at: downscaled to the pixel budget, never upscaled (as images.data_url)."""
    from corpus.images import _fit

    return _fit(width, height, max_pixels)


def image_tokens(width: int, height: int) -> int:
    """OpenAI's high-detail image rule: fit in 2048x2048, shortest side to 768, 170 per 512-px tile + 85."""
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def recorded_completion_tokens() -> dict[str, Any]:
    """Mean completion tokens of the shipped recorded teacher outputs (real reasoning, not templates)."""
    path = samples_dir() / "teacher_cache" / "recorded.jsonl"
    values = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            e = json.loads(line)
            if e.get("origin") == "guardreasoner-8b-recorded" and e.get("completion_tokens"):
                values.append(int(e["completion_tokens"]))
    return {"file": "corpus/samples/teacher_cache/recorded.jsonl", "n": len(values),
            "mean": round(statistics.fmean(values), 1) if values else 0.0,
            "median": statistics.median(values) if values else 0}


def plan(recipe, work_dir: Path | None = None, seconds_per_request: float = 8.0) -> dict[str, Any]:
    """The plan of ``recipe`` as a dict (see the module docstring)."""
    tmp = None
    if work_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="corpus-plan-"))
        work_dir = tmp
    try:
        return _plan(recipe, Path(work_dir), seconds_per_request)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _plan(recipe, run_dir: Path, seconds_per_request: float) -> dict[str, Any]:
    cfg = recipe.synthesize
    manifest = get_stage("ingest").run(recipe, run_dir)
    counter = TokenCounter(cfg.model)
    completion = recorded_completion_tokens()
    cap = cfg.generation.max_tokens or 10**9
    per_row_completion = min(completion["mean"], cap)
    composition: Counter[tuple] = Counter()
    per_source: dict[str, Counter] = {}
    per_modality: dict[str, Counter] = {}
    guard_system = counter.text(guard_system_prompt())
    fallback_tokens = 0
    sft_prompt_tokens = 0
    for part in StageDir(run_dir, "ingest").parts():
        for row in pq.read_table(part).to_pylist():
            req = build_request(row, cfg, run_dir)
            text_tokens, chars = counter.messages(req.messages)
            sizes = [sent_size(im["width"], im["height"], cfg.image_max_pixels) for im in row["images"]]
            tiles = sum(image_tokens(w, h) for w, h in sizes)
            for src in (per_source.setdefault(row["source"], Counter()),
                        per_modality.setdefault(row["modality"], Counter())):
                src["rows"] += 1
                src["images"] += len(sizes)
                src["text_tokens"] += text_tokens
                src["image_tokens"] += tiles
                src["image_tokens_flat"] += IMAGE_TOKENS * len(sizes)
                src["limiter_tokens"] += estimate_tokens(chars, len(sizes), cfg.generation.max_tokens)
            fallback_tokens += math.ceil(chars / CHARS_PER_TOKEN)
            composition[(row["source"], row["modality"], row["request_label"], row["response_label"])] += 1
            sft_prompt_tokens += guard_system + counter.text(guard_user_text(row["prompt"], row["response"],
                                                                             len(sizes))) + tiles
    rows = sum(c["rows"] for c in per_source.values())
    text_tokens = sum(c["text_tokens"] for c in per_source.values())
    img = sum(c["image_tokens"] for c in per_source.values())
    img_flat = sum(c["image_tokens_flat"] for c in per_source.values())
    prompt_tokens = text_tokens + img
    completion_tokens = round(rows * per_row_completion)
    price = cfg.price()
    cost = None if price is None else (prompt_tokens * price.prompt + completion_tokens * price.completion) / 1e6
    limiter = sum(c["limiter_tokens"] for c in per_source.values())
    bounds = {"concurrency": rows * seconds_per_request / cfg.concurrency}
    if cfg.rpm:
        bounds["rpm"] = rows / cfg.rpm * 60
    if cfg.tpm:
        bounds["tpm"] = limiter / cfg.tpm * 60
    binding = max(bounds, key=bounds.get) if bounds else None
    samp, sft = recipe.sample, recipe.train_sft
    sft_rows_per_epoch = rows
    steps_rows = sft.max_steps * sft.per_device_train_batch_size * sft.gradient_accumulation_steps \
        if sft.max_steps and sft.max_steps > 0 else None
    sft_tokens_epoch = sft_prompt_tokens + completion_tokens
    sft_epochs = (steps_rows / sft_rows_per_epoch) if steps_rows and sft_rows_per_epoch else sft.num_train_epochs
    fallback_error = (fallback_tokens - text_tokens) / text_tokens if text_tokens and counter.encoding else None
    return {
        "recipe": recipe.name,
        "ingest": {"rows_in": manifest.get("rows_in"), "rows_out": manifest.get("rows_out"),
                   "heldout": manifest.get("outputs"), "drop_reasons": manifest.get("drop_reasons")},
        "per_source": [{"source": s, **dict(c)} for s, c in sorted(per_source.items())],
        "per_modality": [{"modality": m, **dict(c), "completion_tokens": round(c["rows"] * per_row_completion)}
                         for m, c in sorted(per_modality.items())],
        "composition": [{"source": k[0], "modality": k[1], "request_label": k[2], "response_label": k[3], "rows": n}
                        for k, n in sorted(composition.items(), key=lambda kv: [str(x) for x in kv[0]])],
        "teacher": {
            "model": cfg.model, "rows": rows, "tokenizer": counter.method,
            "fallback_chars_per_4_error": None if fallback_error is None else round(fallback_error, 4),
            "prompt_text_tokens": text_tokens, "image_tokens": img, "image_rule": "openai high-detail tiles",
            "image_tokens_flat_765": img_flat, "prompt_tokens": prompt_tokens,
            "prompt_tokens_flat_images": text_tokens + img_flat,
            "completion_tokens": completion_tokens, "completion_per_row": per_row_completion,
            "completion_source": completion,
            "price_per_1m": price.model_dump() if price else None,
            "cost_usd": None if cost is None else round(cost, 4),
            "cost_usd_batch": None if cost is None else round(cost * BATCH_DISCOUNT, 4),
        },
        "time": {"seconds_per_request_assumed": seconds_per_request, "concurrency": cfg.concurrency,
                 "rpm": cfg.rpm, "tpm": cfg.tpm, "limiter_tokens": limiter,
                 "bounds_seconds": {k: round(v, 1) for k, v in bounds.items()}, "binding": binding,
                 "online_seconds": round(max(bounds.values()), 1) if bounds else None,
                 "batch": f"within the {cfg.batch_completion_window} completion window"},
        "sampling": {"candidates_at_most": rows, "k": samp.k, "max_new_tokens": samp.max_new_tokens,
                     "prompt_tokens": sft_prompt_tokens,
                     "generated_tokens_at_most": rows * samp.k * samp.max_new_tokens},
        "train_sft": {"rows_at_most": rows, "tokens_per_epoch": sft_tokens_epoch, "epochs": round(sft_epochs, 3),
                      "tokens": round(sft_tokens_epoch * sft_epochs),
                      "note": "prompt and target counted with the teacher's tokenizer (the student's is not "
                              "available offline); an upper bound: every ingested row kept by the filter"},
    }


def render(p: dict[str, Any]) -> str:
    from corpus.stats import _fmt_table

    t, tm = p["teacher"], p["time"]
    lines = [f"plan: {p['recipe']}", "", f"ingest: {p['ingest']['rows_in']} records -> {p['ingest']['rows_out']} "
             f"rows to the teacher (held out {p['ingest']['heldout']}, dropped {p['ingest']['drop_reasons']})",
             "", "rows and teacher prompt tokens per source:"]
    lines += _fmt_table(p["per_source"], ["source", "rows", "images", "text_tokens", "image_tokens",
                                          "image_tokens_flat"])
    lines += ["", "composition:"]
    lines += _fmt_table(p["composition"], ["source", "modality", "request_label", "response_label", "rows"])
    cost = "n/a (no price for this model)" if t["cost_usd"] is None else \
        f"${t['cost_usd']:.4f} online, ${t['cost_usd_batch']:.4f} with the Batch API (-50%)"
    err = t["fallback_chars_per_4_error"]
    lines += ["", f"teacher {t['model']}: {t['rows']} requests",
              f"  prompt tokens     {t['prompt_tokens']:>12,}  (text {t['prompt_text_tokens']:,} by {t['tokenizer']}"
              + (f"; characters/4 would be off by {err:+.1%}" if err is not None else "")
              + f"; images {t['image_tokens']:,} by the tile rule, {t['image_tokens_flat_765']:,} at a flat 765)",
              f"  completion tokens {t['completion_tokens']:>12,}  ({t['completion_per_row']} per row: mean of "
              f"{t['completion_source']['n']} recorded teacher outputs)",
              f"  cost              {cost}",
              f"  time              {tm['online_seconds']} s online (bound by {tm['binding']}: "
              f"{tm['bounds_seconds']}; {tm['seconds_per_request_assumed']} s per request assumed); batch "
              f"{tm['batch']}", "",
              f"rejection sampling: at most {p['sampling']['candidates_at_most']} candidates x k={p['sampling']['k']}"
              f" -> at most {p['sampling']['generated_tokens_at_most']:,} generated tokens, "
              f"{p['sampling']['prompt_tokens']:,} prompt tokens",
              f"train sft: {p['train_sft']['tokens_per_epoch']:,} tokens per epoch x {p['train_sft']['epochs']} "
              f"epochs = {p['train_sft']['tokens']:,} tokens ({p['train_sft']['note']})"]
    return "\n".join(lines)
