"""`sample` with `backend: vllm` (in-process vllm.LLM) through the real CLI: k answers per row, hard flags
under each rule, and a SIGKILL in the middle of the stage followed by a resume that regenerates nothing
already written."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from conftest import ENGINE_ARGS, cli_env, corpus, write_recipe

K = 4
UNIT_ROWS = 2


def _recipe(model: Path, rule: str = "all_wrong") -> dict:
    return {"name": "vllm_sample", "seed": 0,
            "sample": {"pool": "ingest", "backend": "vllm", "model": str(model), "k": K, "max_new_tokens": 96,
                       "unit_rows": UNIT_ROWS, "rule": rule, "progress": False,
                       "vllm": {"max_images": 1, "engine_args": ENGINE_ARGS}}}


def _parts(run: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run / "sample").glob("part-*.parquet"))}


def _manifest(run: Path) -> dict:
    return json.loads((run / "sample" / "_manifest.json").read_text())


def test_vllm_sample_sigkill_resume_and_rules(run_dir, text_model, tmp_path):
    recipe = write_recipe(tmp_path / "sample.yaml", _recipe(text_model))
    n_rows = pq.ParquetFile(run_dir / "ingest" / "part-00000.parquet").metadata.num_rows + \
        pq.ParquetFile(run_dir / "ingest" / "part-00001.parquet").metadata.num_rows
    units = -(-n_rows // UNIT_ROWS)

    # 1. start, wait for a few committed units, SIGKILL the whole process group (CLI + vLLM engine core)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "corpus.cli", "sample", str(recipe), "--out", str(run_dir)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=open(tmp_path / "killed.log", "w"),
                            start_new_session=True)
    first_part = None
    try:
        deadline = time.time() + 480
        while time.time() < deadline and len(_parts(run_dir)) < 3:
            assert proc.poll() is None, "the stage ended before it could be killed:\n" + \
                (tmp_path / "killed.log").read_text()[-3000:]
            if first_part is None and _parts(run_dir):
                first_part = time.perf_counter() - t0
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    written = _parts(run_dir)
    assert 3 <= len(written) < units, f"{len(written)} of {units} units written when killed"
    assert not (run_dir / "sample" / "_manifest.json").exists()

    # 2. rerun through the CLI: resumes at the first unfinished unit; written parts stay byte-identical
    t1 = time.perf_counter()
    corpus("sample", str(recipe), "--out", str(run_dir))
    resume_s = time.perf_counter() - t1
    m = _manifest(run_dir)
    assert m["timings"]["units_resumed"] == len(written)
    after = _parts(run_dir)
    assert {k: after[k] for k in written} == written and len(after) == units
    assert m["rows_out"] == n_rows and m["rule"] == "all_wrong"

    rows = [r for p in sorted((run_dir / "sample").glob("part-*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert len(rows) == n_rows and len({r["id"] for r in rows}) == n_rows
    for r in rows:
        assert r["k"] == K and len(r["rollouts"]) == K
        texts = [x["text"] for x in r["rollouts"]]
        assert all(texts) and len(set(texts)) == K, "k answers drawn with seeds seed..seed+k-1 must differ"
        # a random-weights model writes no guard answer: every answer unparsable, hence wrong
        assert r["n_right"] == sum(x["correct"] for x in r["rollouts"]) == 0
        assert r["hard"] is True
    assert m["generation"]["backend"] == "vllm" and m["generation"]["k"] == K
    c = m["counters"]  # summed over every unit, both attempts
    assert c["generations"] == n_rows * K and 0 < c["generated_tokens"] <= n_rows * K * 96
    gen_s = c["generation_ms"] / 1000
    print("VLLM_SAMPLE_FIGURES", json.dumps({
        "rows": n_rows, "k": K, "cli_start_to_first_unit_s": round(first_part or -1, 1),
        "resume_run_s": round(resume_s, 1), "generated_tokens": c["generated_tokens"],
        "generation_s": round(gen_s, 2), "tokens_per_s_generating": round(c["generated_tokens"] / gen_s, 1),
        "rows_per_s_generating": round(n_rows / gen_s, 2), "stage_rows_per_s_resumed": m.get("rows_per_s")}))

    # 3. another rule: re-applied to the stored answers, no engine started, nothing generated
    for rule, hard in (("mixed", 0), ("not_all_right", n_rows)):
        write_recipe(recipe, _recipe(text_model, rule))
        t2 = time.perf_counter()
        res = corpus("sample", str(recipe), "--out", str(run_dir), timeout=120)
        m = _manifest(run_dir)
        assert m["rule"] == rule and m["hard_rows"] == hard, res.stderr[-2000:]
        assert "rows_this_attempt" not in m and time.perf_counter() - t2 < 60
        flags = [r["hard"] for p in sorted((run_dir / "sample").glob("part-*.parquet"))
                 for r in pq.read_table(p, columns=["hard"]).to_pylist()]
        assert sum(flags) == hard
