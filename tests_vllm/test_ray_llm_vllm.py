"""Ray Data LLM rejection sampling with real vLLM: engine actors on the tiny text model (CPU bundles), one
row per (candidate, k), judged by the stage's own unit function."""

from __future__ import annotations

import json
import time

from conftest import ENGINE_ARGS, text_rows

from corpus.sampling.base import SamplingParams
from corpus.stages import sample as stage

K = 4


def test_ray_vllm_engine_actors(ray_session, text_model, tmp_path):
    from corpus.sampling.ray_llm import RayVllmBackend

    rows = text_rows(6)
    t0 = time.perf_counter()
    backend = RayVllmBackend(text_model, concurrency=1, batch_size=8, max_images=0, engine_args=ENGINE_ARGS,
                             placement_group_config={"bundles": [{"CPU": 1}]})
    params = SamplingParams(n=K, temperature=1.0, top_p=0.95, max_new_tokens=24, seed=0)
    kept, dropped, counters = stage.sample_unit(rows, tmp_path, backend, params, "all_wrong")
    seconds = time.perf_counter() - t0
    assert not dropped and [r["id"] for r in kept] == [r["id"] for r in rows]
    for r in kept:
        texts = [x["text"] for x in r["rollouts"]]
        assert r["k"] == K and all(texts) and len(set(texts)) == K  # seeds 0..3: four different answers
        assert r["n_right"] == 0 and r["hard"] is True
    assert counters["generations"] == len(rows) * K and 0 < counters["generated_tokens"] <= len(rows) * K * 24
    print("RAY_VLLM_FIGURES", json.dumps({"rows": len(rows), "k": K, "seconds_incl_engine": round(seconds, 1),
                                          "generated_tokens": counters["generated_tokens"]}))
