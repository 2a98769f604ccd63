#!/usr/bin/env python
"""GPU check of the RL trainer: a few GRPO steps of a Qwen2.5-VL-shaped model built from config (random
weights, offline tokenizer), generation with transformers, dynamic clipping and the guard reward on a
synthetic mixed image/text-only set. Prints steps/s and peak memory as JSON.

    python scripts/gpu_check_train.py --size 0.5b --steps 4          # on a GPU machine
    python scripts/gpu_check_train.py --tiny --steps 2               # toy scale, CPU (tested)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

#: text-model shapes (hidden, layers, heads, kv heads, intermediate) of the Qwen2.5-VL family's language models
SIZES = {"0.5b": (896, 24, 14, 2, 4864), "1.5b": (1536, 28, 12, 2, 8960), "3b": (2048, 36, 16, 2, 11008)}
VOCAB = 151_936


def build_model(out: Path, size: str, bf16: bool) -> Path:
    """Save a random-weight Qwen2.5-VL of the given text size (vision tower: 8 blocks of the real width)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from corpus.training.tiny_model import build_tiny_qwen2_5_vl, tiny_config

    tiny = build_tiny_qwen2_5_vl(out)  # tokenizer, image processor, chat template
    from corpus.models import load_processor

    tok = load_processor(tiny).tokenizer
    hidden, layers, heads, kv, inter = SIZES[size]
    cfg = tiny_config(tok, hidden=hidden, layers=layers, heads=heads, kv_heads=kv)
    cfg.text_config.intermediate_size = inter
    cfg.text_config.vocab_size = VOCAB
    cfg.text_config.tie_word_embeddings = size == "0.5b"
    cfg.tie_word_embeddings = size == "0.5b"
    v = cfg.vision_config
    v.depth, v.hidden_size, v.intermediate_size, v.num_heads, v.out_hidden_size = 8, 1280, 3420, 16, hidden
    v.fullatt_block_indexes = [3, 7]
    model = Qwen2_5_VLForConditionalGeneration(cfg).to(torch.bfloat16 if bf16 else torch.float32)
    model.save_pretrained(out)
    return out


def write_dataset(run_dir: Path, rows: int) -> Path:
    """A synthetic RL set in the rl-export TRL layout: alternating image and text-only rows."""
    from PIL import Image

    from corpus.guard_format import guard_messages_blocks
    from corpus.stages.rl_export import answer_text, write_format

    out = []
    for i in range(rows):
        paths = []
        if i % 2 == 0:
            p = run_dir / "images" / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (224 + 8 * i, 168), (i * 20 % 255, 90, 160)).save(p)
            paths = [str(p)]
        req, resp = ("harmful", None) if i % 3 == 0 else ("unharmful", "unharmful")
        out.append({"id": str(i), "kind": "hard", "prompt": guard_messages_blocks(f"Request number {i}?",
                    None if resp is None else "A reply.", len(paths)), "images": paths, "request_label": req,
                    "response_label": resp, "answer": answer_text(req, resp)})
    path = run_dir / "rl-export" / "trl" / "train.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_format("trl", out, path)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="0.5b")
    ap.add_argument("--tiny", action="store_true", help="the tiny offline model (CPU toy scale)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--completion-length", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)

    import torch

    from corpus.training.config import TrainRLConfig
    from corpus.training.grpo import build_trainer, load_rl_dataset

    cuda = torch.cuda.is_available()
    work = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-train-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    if args.tiny:
        from corpus.training.tiny_model import build_tiny_qwen2_5_vl

        model_dir = build_tiny_qwen2_5_vl(work / "model")
        gens, length = 4, min(args.completion_length, 16)
    else:
        model_dir = build_model(work / "model", args.size, bf16=cuda)
        gens, length = args.generations, args.completion_length
    build_s = time.time() - t0
    data = write_dataset(work, rows=4)
    cfg = TrainRLConfig(model="x", max_steps=args.steps, num_generations=gens, per_device_train_batch_size=gens,
                        max_completion_length=length, learning_rate=1e-6, bf16=cuda, gradient_checkpointing=cuda)
    trainer, clip, _ = build_trainer(cfg, model_dir, load_rl_dataset(data), work / "trainer", seed=0)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t1 = time.time()
    trainer.train()
    train_s = time.time() - t1
    history = trainer.state.log_history
    report = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "model": "tiny" if args.tiny else f"qwen2.5-vl-{args.size} (random weights)",
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "steps": trainer.state.global_step,
        "generations": gens,
        "max_completion_length": length,
        "build_seconds": round(build_s, 2),
        "train_seconds": round(train_s, 2),
        "steps_per_second": round(trainer.state.global_step / train_s, 4),
        "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "clip_ranges": [round(b, 5) for _, b in clip.history],
        "clip_ratio_region_max": max((h.get("clip_ratio/region_mean") or 0.0 for h in history), default=0.0),
        "mean_completion_length": next((h["completions/mean_length"] for h in history
                                        if "completions/mean_length" in h), None),
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
