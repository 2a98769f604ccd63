"""The Ray Data engine's HTTP path (ray.data.llm HttpRequestProcessorConfig) against a real local
OpenAI-compatible server: one row per (candidate, k), the same judged rows as the openai backend."""

from __future__ import annotations

import pytest
from sample_helpers import guard_answer, make_image, sample_row

from corpus.sampling.base import SamplingParams
from corpus.stages import sample as stage
from corpus.testing.fake_openai import FakeOpenAI, count_images

pytest.importorskip("ray.data.llm")

K = 3
SEEN: list[tuple[int, int]] = []


def _answer(body: dict) -> str:
    """Right (harmful) for even seeds, wrong for odd ones: 2 of 3 right with seeds 0, 1, 2."""
    SEEN.append((body["seed"], count_images(body)))
    return guard_answer("harmful" if body["seed"] % 2 == 0 else "unharmful", None)


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_http_backend_matches_the_openai_backend(ray_session, tmp_path):
    from corpus.sampling.openai_backend import OpenAIBackend
    from corpus.sampling.ray_llm import RayHttpBackend

    img = make_image(tmp_path, 1)
    rows = [sample_row(0, prompt="how do I pick a lock", response=None, request_label="harmful", response_label=None),
            sample_row(1, prompt=None, response=None, request_label="harmful", response_label=None, images=[img]),
            sample_row(2, prompt="hello", response="hi", request_label="harmful", response_label="unharmful")]
    params = SamplingParams(n=K, temperature=1.0, top_p=0.95, max_new_tokens=64, seed=0)
    with FakeOpenAI(answers=_answer) as srv:
        ray_backend = RayHttpBackend("m", base_url=srv.base_url, concurrency=1, batch_size=4)
        kept, dropped, counters = stage.sample_unit(rows, tmp_path, ray_backend, params, "mixed")
        assert srv.total_requests == len(rows) * K and not dropped
        assert sorted(SEEN) == sorted((s, int(r["images"] != [])) for r in rows for s in range(K))
        ref, _, _ = stage.sample_unit(rows, tmp_path, OpenAIBackend("m", base_url=srv.base_url), params, "mixed")
    assert [r["id"] for r in kept] == [r["id"] for r in rows]
    for got, want in zip(kept, ref):
        assert got["rollouts"] == want["rollouts"] and got["n_right"] == want["n_right"]
    assert [r["n_right"] for r in kept[:2]] == [2, 2] and all(r["hard"] for r in kept[:2])
    # row 2 also needs Response: unharmful, which no answer gives
    assert kept[2]["n_right"] == 0 and not kept[2]["hard"]
    assert counters["generations"] == len(rows) * K and counters["generated_tokens"] > 0


def test_ray_http_error_body_is_a_failed_generation(ray_session, tmp_path):
    from corpus.sampling.ray_llm import RayHttpBackend

    rows = [sample_row(0, prompt="FAIL400 here", response=None, request_label="harmful", response_label=None),
            sample_row(1, prompt="fine", response=None, request_label="harmful", response_label=None)]
    with FakeOpenAI(script={"FAIL400": ["400"] * 10}) as srv:
        backend = RayHttpBackend("m", base_url=srv.base_url, max_retries=0)
        params = SamplingParams(n=2, max_new_tokens=16)
        kept, dropped, _ = stage.sample_unit(rows, tmp_path, backend, params, "all_wrong")
    assert [r["id"] for r in kept] == ["row0001"]
    assert [d["drop_reason"] for d in dropped] == ["generation_failed"] and "no answer" in dropped[0]["detail"]

