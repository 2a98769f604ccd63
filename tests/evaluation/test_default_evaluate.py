"""The default recipe's evaluate section: a few rows of the embedded eval set and of ingest's held-out image
rows answered by a guard, and the shipped real GuardReasoner-8B predictions scored in the released protocol;
`corpus stats` shows the results. (The full `corpus run`, with the RL checkpoint as the guard, is
tests/core/test_default_run.py.)"""

from __future__ import annotations

import json

import pytest
from eval_helpers import REFERENCE_8B, cli

from corpus.evaluation.predictions import read_predictions
from corpus.guard_format import IMAGE_TOKEN
from corpus.resources import resource


def test_default_evaluate_section_on_an_ingested_run(tmp_path):
    text = resource("pipelines", "default.yaml").read_text(encoding="utf-8")
    assert "evaluate:\n  model: auto\n" in text
    recipe = tmp_path / "default-tiny.yaml"
    recipe.write_text(text.replace("evaluate:\n  model: auto\n", "evaluate:\n  model: tiny\n"), encoding="utf-8")
    run = tmp_path / "run"
    res = cli("ingest", str(recipe), "--out", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    # without a trained model, `auto` says what is missing
    auto = cli("evaluate", "--out", str(run))
    assert auto.returncode == 2 and "train-rl" in auto.stderr and "Traceback" not in auto.stderr
    res = cli("evaluate", str(recipe), "--json", "--out", str(run), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    model, released = json.loads(res.stdout)["reports"]
    assert model["name"] == "tiny" and model["protocol"] == "strict"
    got = {r["benchmark"]: r for r in model["results"]}
    assert got["OpenAIModeration"]["n"] == 8 and 1 <= got["HarmImageTest"]["n"] <= 4
    vl = read_predictions(run / "evaluate" / "predictions" / "HarmImageTest" / "generated_predictions.jsonl")
    assert all(x["prompt"].count(IMAGE_TOKEN) == len(x["images"]) == 1 for x in vl)
    assert released["name"] == "GuardReasoner-8B" and released["protocol"] == "guardreasoner"
    figures = {(r["benchmark"], r["task"]): r["f1"] for r in released["results"]}
    assert {k: round(v, 2) for k, v in figures.items()} == {k: f1 for k, (_, f1) in REFERENCE_8B.items()}
    assert released["published"]["model"] == "GuardReasoner 8B"
    # corpus stats shows both reports
    stats = cli("stats", str(run), "--json")
    details = json.loads(stats.stdout)["stages"]["evaluate"]["details"]
    rows = details["GuardReasoner-8B (guardreasoner)"]["results"]
    aegis = next(r for r in rows if r["benchmark"] == "AegisSafetyTest")
    assert aegis["f1_guardreasoner"] == pytest.approx(88.77) and aegis["published"] == 90.18
    assert "tiny (strict)" in details
    text_stats = cli("stats", str(run)).stdout
    assert "== evaluate (complete)" in text_stats and "AegisSafetyTest" in text_stats
    assert "output predictions" not in text_stats


def test_scoring_a_folder_keeps_the_models_checkpoint(tmp_path):
    """`--predictions` into a run whose evaluate stage generated answers leaves those answers alone."""
    from eval_helpers import eval_recipe, released_layout

    from corpus.store import StageDir

    recipe = eval_recipe(tmp_path, text_limit=1, vl=False)
    run = tmp_path / "run"
    res = cli("evaluate", str(recipe), "--model", "tiny", "--out", str(run), env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    before = StageDir(run, "evaluate").manifest()
    preds = released_layout(tmp_path / "8B")
    res = cli("evaluate", str(recipe), "--predictions", str(preds), "--name", "GuardReasoner-8B", "--out", str(run))
    assert res.returncode == 0, res.stderr[-2000:]
    assert StageDir(run, "evaluate").manifest() == before
    assert (run / "evaluate" / "predictions" / "SimpleSafetyTests" / "generated_predictions.jsonl").is_file()
    details = json.loads(cli("stats", str(run), "--json").stdout)["stages"]["evaluate"]["details"]
    assert {"tiny (strict)", "GuardReasoner-8B (strict)"} <= set(details)
