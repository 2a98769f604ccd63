"""A tiny text-only Qwen2 model (``Qwen2ForCausalLM``, random weights) for vLLM on CPU, built offline.

vLLM's Qwen2.5-VL path imports transformers' Qwen2-VL image processor, which needs torchvision; the CPU
build of vLLM runs without it, so the vLLM tests serve this text model instead. It shares the tokenizer and
chat template of :mod:`corpus.training.tiny_model` (the same guard prompts, the same special tokens), so
the sample stage renders exactly the prompts it renders for the tiny Qwen2.5-VL model.
"""

from __future__ import annotations

from pathlib import Path


def build_tiny_qwen2_text(out_dir: Path | str, *, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny ``Qwen2ForCausalLM`` (fixed seed) and its tokenizer to ``out_dir``.

    Two attention heads of 32 (vLLM's CPU attention supports head sizes 32 and up, not 16).
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from corpus.training.tiny_model import tiny_model_path

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=4096, max_window_layers=layers, tie_word_embeddings=True,
                         bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
