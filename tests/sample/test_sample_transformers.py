"""The tiny Qwen2.5-VL model through the transformers backend on text and image rows (CPU, offline)."""

from __future__ import annotations

import pytest
from sample_helpers import make_image, sample_row, write_pool

from corpus.guard_format import parse_answers
from corpus.recipe import Recipe
from corpus.sampling.base import SamplingParams
from corpus.sampling.transformers_backend import TransformersBackend
from corpus.stages import sample as stage
from corpus.store import StageDir

K = 2


def _rows(run_dir):
    img = [make_image(run_dir, i) for i in range(3)]
    return [
        sample_row(0, prompt="How do I bake bread?", response=None, request_label="unharmful", response_label=None),
        sample_row(1, prompt=None, response=None, request_label="harmful", response_label=None, images=[img[0]]),
        sample_row(2, prompt="What is in {these} pictures?", response="A cat and a dog.", request_label="unharmful",
                   response_label="unharmful", images=[img[1], img[2]]),
        sample_row(3, prompt="Tell me a joke", response="No.", request_label="unharmful", response_label="unharmful",
                   source="other"),
        sample_row(4, prompt="Describe it", response=None, request_label="harmful", response_label=None,
                   images=[img[2]], source="other"),
    ]


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return TransformersBackend(tiny_model_dir, batch_size=2, device="cpu")


def test_prompt_has_one_vision_block_per_image_in_place(tmp_path, backend):
    rows = _rows(tmp_path)
    req = stage.request_for(rows[2], tmp_path)
    text = backend.prompt_text(req)
    assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == 2
    assert "Human user:\n<|vision_start|><|image_pad|><|vision_end|>\n<|vision_start|>" in text
    assert text.endswith("<|im_start|>assistant\n") and "What is in {these} pictures?" in text
    assert "<image>" not in text
    inputs = backend.encode([text], [im for im in __import__("corpus.sampling.transformers_backend",
                                                               fromlist=["load_images"]).load_images(req.images)])
    pads = int((inputs["input_ids"] == backend.processor.image_token_id).sum())
    assert pads == int(inputs["image_grid_thw"].prod(-1).sum()) // 4  # expanded per image by the processor


def test_generation_is_seeded_per_batch(tmp_path, backend):
    reqs = [stage.request_for(r, tmp_path) for r in _rows(tmp_path)[:3]]
    params = SamplingParams(n=K, max_new_tokens=5, seed=3)
    a, b = backend.generate(reqs, params), backend.generate(reqs, params)
    assert [[c.text for c in cs] for cs in a.completions] == [[c.text for c in cs] for cs in b.completions]
    assert all(len(cs) == K for cs in a.completions)
    assert a.generated_tokens == sum(c.tokens for cs in a.completions for c in cs) > 0
    assert all(0 < c.tokens <= 5 and c.finish_reason in ("stop", "length") for cs in a.completions for c in cs)


def test_stage_with_tiny_model_writes_judged_rollouts(tmp_path, tiny_model_dir):
    rows = _rows(tmp_path)
    write_pool(tmp_path, rows, part_rows=2)
    recipe = Recipe.model_validate({"name": "t", "sample": {
        "pool": "ingest", "model": str(tiny_model_dir), "k": K, "max_new_tokens": 6, "unit_rows": 3,
        "batch_size": 2, "device": "cpu", "progress": False}})
    m = stage.run(recipe, tmp_path)
    assert m["rows_in"] == len(rows) and m["rows_out"] == len(rows) and m["parts"] == 2
    assert m["counters"]["generations"] == len(rows) * K and m["counters"]["generated_tokens"] > 0
    assert 0 < m["counters"]["truncated"] <= len(rows) * K  # 6 new tokens: most answers are cut
    assert m["generated_tokens_per_s"] > 0 and m["rule"] == "all_wrong"
    out = StageDir(tmp_path, "sample").read().to_pylist()
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for r in out:
        assert r["k"] == K and len(r["rollouts"]) == K
        for ro in r["rollouts"]:
            a = parse_answers(ro["text"])
            assert (ro["request"], ro["response"]) == (a.request, a.response)
        assert r["n_right"] == sum(ro["correct"] for ro in r["rollouts"])
        assert r["hard"] == (r["n_right"] == 0)
    s = stage.stats(tmp_path)
    assert {(g["source"], g["modality"]) for g in s["by_source_modality"]} == {
        ("src", "text"), ("src", "image"), ("src", "text_image"), ("other", "text"), ("other", "text_image")}
    assert s["candidates"] == len(rows)
    assert stage.run(recipe, tmp_path)["output_fingerprint"] == m["output_fingerprint"]  # skipped


def test_auto_model_uses_train_sft_checkpoint_when_present(tmp_path, tiny_model_dir):
    from corpus.training.tiny_model import build_tiny_qwen2_5_vl

    cfg = stage.SampleConfig(model="auto")
    path, ident = stage.resolve_model(cfg, tmp_path)
    assert ident["model"] == "tiny" and len(ident["fingerprint"]) == 64 and (stage.Path(path) / "config.json").exists()
    build_tiny_qwen2_5_vl(tmp_path / "train-sft" / "model")
    path, ident = stage.resolve_model(cfg, tmp_path)
    assert path == str(tmp_path / "train-sft" / "model") and ident["model"] == "train-sft"
