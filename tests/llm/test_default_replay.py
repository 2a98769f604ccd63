"""The embedded default recipe synthesizes offline from the shipped replay cache; the examples are valid."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from corpus.recipe import load_recipe
from corpus.resources import samples_dir
from corpus.stages import get_stage
from corpus.store import StageDir

ROOT = Path(__file__).resolve().parents[2]


def test_default_recipe_replays_the_shipped_cache_offline(tmp_path):
    recipe = load_recipe()
    recipe.synthesize = recipe.synthesize.model_copy(
        update={"mode": "replay", "cache_dir": str(tmp_path / "cache"), "base_url": "http://127.0.0.1:9/v1",
                "progress": False})
    run = tmp_path / "run"
    get_stage("ingest").run(recipe, run)
    m = get_stage("synthesize").run(recipe, run)
    rows = StageDir(run, "synthesize").read().to_pylist()
    assert m["rows_out"] == StageDir(run, "ingest").num_rows() == len(rows)
    recorded = [json.loads(x) for x in (samples_dir() / "teacher_cache" / "recorded.jsonl").read_text().splitlines()]
    by_key = {e["key"]: e for e in recorded}
    text = [r for r in rows if r["request_key"] in by_key]
    assert len(text) == len(recorded) >= 60  # every recorded answer is used by a default text row
    for r in text:
        e = by_key[r["request_key"]]
        assert r["teacher_status"] == "ok" and r["teacher_output"] == e["output"] and r["modality"] == "text"
        assert "Answers:" in r["teacher_output"]
        assert r["prompt_tokens"] == e["prompt_tokens"] > 0 and r["cost_usd"] > 0
    # real outputs: nearly all carry numbered steps (one recorded 8B answer is a bare answers block)
    assert sum("## Reasoning Step 1" in r["teacher_output"] for r in text) >= 0.9 * len(text)
    status = Counter(r["teacher_status"] for r in rows)
    assert set(status) <= {"ok", "no_cached_response"} and status["ok"] >= len(recorded)
    assert Counter(r["modality"] for r in rows if r["teacher_status"] == "ok").keys() >= {"text", "image", "text_image"}
    assert m["teacher"]["this_attempt"]["paid_rows"] == 0


def test_recorded_answers_are_the_real_predictions():
    prov = json.loads((samples_dir() / "text_provenance.json").read_text())
    # shared/ lies beside the checkout (CI's clone too); the recorded absolute path is the fallback
    roots = [p for p in (ROOT.parent / "shared" / "realdata", Path(prov["realdata_root"])) if p.is_dir()]
    if not roots:
        pytest.skip("shared/realdata (the recorded GuardReasoner-8B predictions) is not beside this checkout")
    root = roots[0]
    for line in (samples_dir() / "teacher_cache" / "recorded.jsonl").read_text().splitlines()[:10]:
        e = json.loads(line)
        src = (root / e["prediction_file"]).read_text().splitlines()[e["line_index"]]
        assert json.loads(src)["predict"] == e["output"] and e["origin"] == "guardreasoner-8b-recorded"


def test_local_teacher_example_and_launcher():
    r = load_recipe(ROOT / "pipelines" / "examples" / "local_teacher.yaml")
    assert r.synthesize.base_url == "http://127.0.0.1:8000/v1" and r.synthesize.price() is None
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "serve_teacher_vllm.sh")]).returncode == 0
