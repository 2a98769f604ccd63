"""`corpus audit-labels`: blind re-ask of the label-mismatch drops through a real OpenAI-compatible server,
the review file, and its round trip back as `ingest.label_overrides` (label_origin: reviewed)."""

from __future__ import annotations

import csv
import json
import shutil

import polars as pl
import pytest

from corpus.resources import resource
from corpus.testing.fake_openai import FakeOpenAI, request_text


def _answer(request: str, response: str) -> str:
    return ("# Task 1\n\n## Reasoning Step 1\nI read the request myself.\n\n## Conclusion\nDone.\n\n"
            f"---\n\nAnswers: \nRequest: {request}\nResponse: {response}\n")


@pytest.fixture()
def audited(default_run, run_cli, tmp_path):
    """A copy of the default run, audited against a local server whose blind answers are scripted per row."""
    run = tmp_path / "run"
    shutil.copytree(default_run.out, run, ignore=shutil.ignore_patterns("train-*", "report"))
    dropped = pl.read_parquet(run / "filter" / "dropped" / "*.parquet")
    mism = dropped.filter(pl.col("drop_reason").str.starts_with("label_mismatch:")).to_dicts()
    assert len(mism) >= 2
    # blind teacher: agrees with its guided answer on every row but the last (where it agrees with the gold)
    plan = {}
    for i, r in enumerate(mism):
        req = r["teacher_request"] or "unharmful"
        resp = r["teacher_response"] or "None"
        if i == len(mism) - 1:
            req = r["request_label"] or req
            resp = r["response_label"] or resp
        plan[r["prompt"]] = (req, resp)

    def answer(body: dict) -> str:
        text = request_text(body)
        assert "The ground truth" not in text or "None" in text  # no gold label in a blind request
        prompt = next(p for p in plan if p in text)
        return _answer(*plan[prompt])

    recipe = tmp_path / "online.yaml"
    default = resource("pipelines", "default.yaml").read_text(encoding="utf-8")
    with FakeOpenAI(answers=answer) as srv:
        recipe.write_text(default.replace("synthesize:\n  mode: replay\n", "synthesize:\n  mode: online\n"
                                          f"  base_url: {srv.base_url}\n  api_key_env: FAKE_TEACHER_KEY\n"))
        env = {**default_run.env, "FAKE_TEACHER_KEY": "sk-test", "CORPUS_CACHE_DIR": str(tmp_path / "cache")}
        res = run_cli("audit-labels", str(run), str(recipe), env=env)
        first = srv.total_requests
        # resumable and cached: a second audit asks the server nothing
        run_cli("audit-labels", str(run), str(recipe), env=env)
        assert srv.total_requests == first == len(mism)
    return run, mism, plan, res.stdout


def test_audit_review_file_and_rates(audited):
    run, mism, plan, stdout = audited
    review = [json.loads(line) for line in (run / "audit-labels" / "review.jsonl").read_text().splitlines()]
    assert [r["id"] for r in review] == [r["id"] for r in mism]
    for r, m in zip(review, mism):
        kind = m["drop_reason"].split(":")[1]
        assert r["blind_status"] == "ok" and r["blind_reasoning"]
        assert r["gold_request_label"] == m["request_label"] and r["prompt"] == m["prompt"]
        assert r["suspected_label_noise"] == (r[f"blind_{kind}"] != m[f"{kind}_label"])
        assert r["reviewed_request_label"] is None
    assert [r["suspected_label_noise"] for r in review] == [True] * (len(mism) - 1) + [False]
    with (run / "audit-labels" / "review.csv").open() as f:
        assert [r["id"] for r in csv.DictReader(f)] == [r["id"] for r in mism]
    summary = json.loads((run / "audit-labels" / "summary.json").read_text())
    assert summary["audited"] == len(mism) and summary["suspected"] == len(mism) - 1
    by_source = {r["source"]: r for r in summary["by_source"]}
    for src in {m["source"] for m in mism}:
        s = by_source[src]
        assert s["suspected_rate"] == round(s["suspected"] / s["answered"], 4)
    assert summary["by_category"]
    assert f"{len(mism) - 1} suspected label noise" in stdout


def test_reviewed_labels_round_trip(audited, run_cli, tmp_path, default_run):
    run, mism, plan, _ = audited
    # a person accepts the blind teacher's label on the suspected rows (in the CSV, as a spreadsheet would)
    with (run / "audit-labels" / "review.csv").open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r["suspected_label_noise"] == "True":
            kind = r["drop_reason"].split(":")[1]
            r[f"reviewed_{kind}_label"] = r[f"blind_{kind}"]
    reviewed = tmp_path / "reviewed.csv"
    with reviewed.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    fixed = {r["id"] for r in rows if r["suspected_label_noise"] == "True"}
    recipe = tmp_path / "reviewed.yaml"
    recipe.write_text(resource("pipelines", "default.yaml").read_text(encoding="utf-8")
                      .replace("ingest:\n", f"ingest:\n  label_overrides: {reviewed}\n", 1))
    before = json.loads((run / "filter" / "_manifest.json").read_text())
    ingest_fp = json.loads((run / "ingest" / "_manifest.json").read_text())["output_fingerprint"]
    run_cli("run", str(recipe), "--out", str(run), "--until", "filter", env=default_run.env)
    assert json.loads((run / "ingest" / "_manifest.json").read_text())["output_fingerprint"] == ingest_fp
    after = json.loads((run / "filter" / "_manifest.json").read_text())
    assert after["rows_out"] == before["rows_out"] + len(fixed)  # the cached answers now agree: no re-buying
    kept = pl.read_parquet(run / "filter" / "*.parquet").filter(pl.col("id").is_in(list(fixed)))
    assert kept.height == len(fixed)
    for r in kept.to_dicts():
        assert "reviewed" in r["label_origin"].values()
    # an unfixed mismatch is still dropped
    still = pl.read_parquet(run / "filter" / "dropped" / "*.parquet")["id"].to_list()
    assert mism[-1]["id"] in still
    # the report shows the audit
    run_cli("report", str(run), env=default_run.env)
    assert "Label-noise audit" in (run / "report" / "index.html").read_text(encoding="utf-8")
    # a value that is not a label is a clear error
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": mism[0]["id"], "reviewed_request_label": "maybe"}) + "\n")
    recipe.write_text(recipe.read_text().replace(str(reviewed), str(bad)))
    res = run_cli("filter", str(recipe), "--out", str(run), env=default_run.env, check=False)
    assert res.returncode == 2 and "reviewed_request_label='maybe'" in res.stderr
