"""The tiny offline Qwen2.5-VL model: loads, renders the guard chat, takes images, generates."""

from __future__ import annotations

import hashlib

from sample_helpers import make_image

from corpus.guard_format import guard_messages_blocks
from corpus.models import load_processor
from corpus.training.tiny_model import build_tiny_qwen2_5_vl


def test_tiny_model_roundtrip(tmp_path, tiny_model_dir):
    import torch
    from PIL import Image
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    assert model.config.text_config.hidden_size == 64 and model.config.text_config.num_hidden_layers == 2
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    proc = load_processor(tiny_model_dir)
    tok = proc.tokenizer
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    text = "Request: harmful\nResponse: None {braces} ünïcode"
    assert tok.decode(tok(text)["input_ids"]) == text
    prompt = proc.apply_chat_template(guard_messages_blocks("look", None, 1), tokenize=False,
                                      add_generation_prompt=True)
    assert "<|vision_start|><|image_pad|><|vision_end|>\nlook" in prompt
    with Image.open(tmp_path / make_image(tmp_path, 1)["path"]) as im:
        inputs = proc(text=[prompt], images=[im.convert("RGB")], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    new = out.shape[1] - inputs["input_ids"].shape[1]
    assert new == 3 or (0 < new < 3 and int(out[0, -1]) == tok.convert_tokens_to_ids("<|im_end|>"))
    assert torch.isfinite(model(**inputs).logits).all()


def test_builds_are_identical(tmp_path, tiny_model_dir):
    from corpus.training.tiny_model import _build

    again = tmp_path / "again"
    _build(again, seed=0)  # a fresh build, not the process cache
    assert digest(build_tiny_qwen2_5_vl(tmp_path / "copy")) == digest(tiny_model_dir)
    assert digest(again) == digest(tiny_model_dir)


def digest(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}
