"""`sample` on the Ray engine: the backend the stage builds there (Ray Data's LLM processors, or the driver's
journaled client) and the checkpoint it writes, equal to the local engine's."""

from __future__ import annotations

import pytest
from sample_helpers import guard_answer, sample_row, write_pool

from corpus.engine import EngineSpec, use_engine
from corpus.recipe import Recipe
from corpus.stages import sample as stage
from corpus.store import StageDir
from corpus.testing.fake_openai import FakeOpenAI

pytest.importorskip("ray.data.llm")

K = 3


def test_sample_stage_on_the_ray_engine_sends_through_ray_data(tmp_path):
    """`--engine ray` with `sample.ray.http: ray`: the stage's requests go through Ray Data's HTTP processor on
    the engine's cluster (one row per (candidate, k)) and the checkpoint equals the local engine's, row for row."""
    import ray

    rows = [sample_row(i, prompt=f"question {i}", response=None if i % 2 else "an answer",
                       request_label="harmful", response_label=None if i % 2 else "unharmful") for i in range(5)]

    def recipe(base_url: str, http: str) -> Recipe:
        return Recipe.model_validate({"name": "t", "sample": {
            "pool": "ingest", "backend": "openai", "model": "m", "k": K, "seed": 0, "rule": "mixed", "unit_rows": 2,
            "progress": False, "openai": {"base_url": base_url, "max_retries": 1},
            "ray": {"http": http, "batch_size": 4}}})

    def answers(body: dict) -> str:
        return guard_answer("harmful" if body["seed"] % 2 == 0 else "unharmful",
                            "unharmful" if "an answer" in str(body["messages"]) else None)

    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    for d in (local_dir, ray_dir):
        write_pool(d, rows)
    with FakeOpenAI(answers=answers) as srv:
        stage.run(recipe(srv.base_url, "ray"), local_dir)  # no engine block: local, the driver's client
        local_requests = srv.total_requests
        assert not ray.is_initialized()
        with use_engine(EngineSpec("ray", workers=2)):
            m = stage.run(recipe(srv.base_url, "ray"), ray_dir)
            assert ray.is_initialized()  # the stage joined the engine's cluster to send
        assert srv.total_requests - local_requests == len(rows) * K
    assert not ray.is_initialized()  # the engine shut down the cluster it started
    assert m["rows_out"] == len(rows)
    cols = ["id", "rollouts", "n_right", "hard"]
    assert StageDir(ray_dir, "sample").read(columns=cols).to_pylist() == \
        StageDir(local_dir, "sample").read(columns=cols).to_pylist()


def test_ray_engine_keeps_the_journaled_openai_client_by_default():
    """Without `ray.http: ray` the openai backend stays the driver's journaled client on the Ray engine too."""
    from corpus.sampling.openai_backend import OpenAIBackend

    cfg = stage.SampleConfig(backend="openai", model="m", openai={"base_url": "http://127.0.0.1:9/v1"})
    with use_engine(EngineSpec("ray", workers=1)):
        backend = stage.make_stage_backend(cfg, "m")
    try:
        assert isinstance(backend, OpenAIBackend)
    finally:
        backend.close()
    with use_engine(EngineSpec("ray", workers=1)), pytest.raises(ValueError, match="fanout"):
        stage.make_stage_backend(stage.SampleConfig(backend="vllm", model="m", fanout="n"), "m")
