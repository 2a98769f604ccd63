"""The README's main command: `corpus run` on the embedded default recipe runs every stage offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from corpus.stages import STAGE_ORDER
from corpus.store import StageDir

#: stages whose units run on the engine (a process pool or Ray Data tasks)
ENGINE_STAGES = ["filter", "concat"]


def test_corpus_run_default_every_stage(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "CORPUS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("OPENAI_API_KEY", None)
    res = subprocess.run([sys.executable, "-m", "corpus.cli", "run", "--out", str(out)], capture_output=True,
                         text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    for stage in STAGE_ORDER:
        assert StageDir(out, stage).complete, f"stage {stage} did not finish"
    assert (out / "train-rl" / "model").is_dir()
    assert "== ingest (complete)" in res.stdout and "table6" in res.stdout
    report = json.loads(subprocess.run([sys.executable, "-m", "corpus.cli", "stats", str(out), "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    ingest = report["stages"]["ingest"]
    assert {r["modality"] for r in ingest["kept"]["by_source_modality_label"]} == {"text", "image", "text_image"}
    assert "leak:OpenAIModeration" in ingest["dropped"]["by_reason"]
    assert report["stages"]["synthesize"]["manifest"]["rows_out"] == ingest["kept"]["rows"]
    assert report["stages"]["filter"]["kept"]["rows"] > 0
    # evaluate: the tiny RL checkpoint on the embedded eval sets, and the shipped GuardReasoner-8B predictions
    evaluate = report["stages"]["evaluate"]["details"]
    assert {"train-rl (strict)", "GuardReasoner-8B (guardreasoner)"} <= set(evaluate)
    assert (out / "evaluate" / "predictions" / "OpenAIModeration" / "generated_predictions.jsonl").is_file()
    # a second run is a no-op: every stage skipped, same fingerprints
    before = {s: StageDir(out, s).fingerprint() for s in STAGE_ORDER}
    res2 = subprocess.run([sys.executable, "-m", "corpus.cli", "run", "--out", str(out)], capture_output=True,
                          text=True, env=env, timeout=900)
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert {s: StageDir(out, s).fingerprint() for s in STAGE_ORDER} == before
    # the same run resumed on the other engine: the units of every stage that runs on the engine are redone on
    # a local Ray cluster and give byte-identical parts, so no later stage has anything to redo
    import shutil

    for stage in ENGINE_STAGES:
        (out / stage / "_manifest.json").unlink()
        for part in StageDir(out, stage).parts()[::2]:
            part.unlink()
    kept_before = {s: sorted(p.name for p in StageDir(out, s).parts()) for s in ENGINE_STAGES}
    assert kept_before["filter"]  # filter resumes from the local engine's parts
    skipped = ["train-rl", "evaluate"]  # --skip leaves them out: they are not run again
    for stage in skipped:
        shutil.rmtree(out / stage)
    res3 = subprocess.run([sys.executable, "-m", "corpus.cli", "run", "--out", str(out), "--engine", "ray",
                           "--workers", "2", "--skip", "train-rl", "--skip", "evaluate"], capture_output=True,
                          text=True, env=env, timeout=900)
    assert res3.returncode == 0, res3.stderr[-3000:]
    assert "ray engine: local cluster" in res3.stderr
    for stage in ENGINE_STAGES:
        assert StageDir(out, stage).manifest()["timings"]["units_resumed"] == len(kept_before[stage])
    after = {s: StageDir(out, s).fingerprint() for s in STAGE_ORDER if s not in skipped}
    assert after == {s: f for s, f in before.items() if s not in skipped}
    assert not any(StageDir(out, s).complete for s in skipped)
