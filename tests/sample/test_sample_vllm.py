"""vLLM request building (prompts, images, sampling fields), checked without vLLM."""

from __future__ import annotations

import importlib.util

import pytest
from sample_helpers import make_image, sample_row

from corpus.sampling.base import SamplingParams
from corpus.sampling.vllm_backend import build_vllm_requests, chat_template_renderer
from corpus.stages import sample as stage

VISION = "<|vision_start|><|image_pad|><|vision_end|>"


@pytest.fixture
def requests(tmp_path):
    imgs = [make_image(tmp_path, i) for i in range(2)]
    rows = [
        sample_row(0, prompt="plain {text}", response="ok", request_label="unharmful", response_label="unharmful"),
        sample_row(1, prompt=None, response=None, request_label="harmful", response_label=None, images=imgs[:1]),
        sample_row(2, prompt="two", response=None, request_label="harmful", response_label=None, images=imgs),
    ]
    return [stage.request_for(r, tmp_path) for r in rows]


def test_fanout_n_one_prompt_per_candidate(requests, tiny_model_dir):
    loaded = []
    built = build_vllm_requests(requests, SamplingParams(n=4, temperature=1.0, top_p=0.95, max_new_tokens=77,
                                                         seed=5, fanout="n"),
                                chat_template_renderer(tiny_model_dir), lambda p: loaded.append(p) or p.name)
    assert [b.index for b in built] == [0, 1, 2]
    assert all(b.sampling == {"n": 4, "temperature": 1.0, "top_p": 0.95, "max_tokens": 77, "seed": 5} for b in built)
    assert "multi_modal_data" not in built[0].prompt
    assert built[0].prompt["prompt"].count(VISION) == 0 and "plain {text}" in built[0].prompt["prompt"]
    assert built[1].prompt["prompt"].count(VISION) == 1
    assert built[2].prompt["prompt"].count(VISION) == 2
    assert built[2].prompt["multi_modal_data"]["image"] == [p.name for p in requests[2].images]
    assert loaded == list(requests[1].images) + list(requests[2].images)
    p = built[2].prompt["prompt"]
    assert p.startswith("<|im_start|>system\n") and p.endswith("<|im_start|>assistant\n")
    assert f"Human user:\n{VISION}\n{VISION}\ntwo\n\nAI assistant:\nNone\n" in p


def test_fanout_requests_k_prompts_with_distinct_seeds(requests, tiny_model_dir):
    built = build_vllm_requests(requests, SamplingParams(n=3, seed=10, fanout="requests"),
                                chat_template_renderer(tiny_model_dir), lambda p: p)
    assert [b.index for b in built] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [b.sampling["seed"] for b in built[:3]] == [10, 11, 12]
    assert all(b.sampling["n"] == 1 and b.sampling["max_tokens"] == 1024 for b in built)
    assert built[3].prompt == built[4].prompt


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_is_a_clear_error(tiny_model_dir):
    from corpus.sampling.base import make_backend

    with pytest.raises(ImportError, match=r"guardreasoner-corpus\[gpu\]"):
        make_backend("vllm", tiny_model_dir)
