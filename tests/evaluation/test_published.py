"""The published tables ship as data and match ../shared/published_results.md; a named model's report shows
ours beside published."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from eval_helpers import cli, released_layout
from realdata_path import REALDATA

from corpus.evaluation.published import find_published, published_models

PUBLISHED_MD = REALDATA.parent / "published_results.md"
# column headers of the markdown tables -> the scorer's benchmark names
COLUMNS = {
    "prompt": ["ToxicChat", "HarmBenchPrompt", "OpenAIModeration", "AegisSafetyTest", "SimpleSafetyTests",
               "WildGuardTest"],
    "response": ["HarmBenchResponse", "SafeRLHF", "BeaverTails", "XSTestReponseHarmful", "WildGuardTest"],
    "refusal": ["XSTestResponseRefusal", "WildGuardTest"],
}


def _md_tables(text: str) -> dict[str, dict[str, list[float]]]:
    """{task: {model: [cells..., avg]}} of the three GuardReasoner tables in published_results.md."""
    out: dict[str, dict[str, list[float]]] = {}
    task = None
    for line in text.splitlines():
        head = re.match(r"(Prompt harmfulness|Response harmfulness|Refusal) \(", line)
        if head:
            task = {"Prompt harmfulness": "prompt", "Response harmfulness": "response", "Refusal": "refusal"}[
                head.group(1)]
        m = re.match(r"\| (GuardReasoner \dB) \|(.*)\|$", line)
        if m and task:
            out.setdefault(task, {})[m.group(1)] = [float(c) for c in m.group(2).split("|")]
    return out


@pytest.mark.skipif(not PUBLISHED_MD.is_file(), reason="shared/published_results.md not present")
def test_shipped_tables_match_the_published_document():
    tables = _md_tables(PUBLISHED_MD.read_text(encoding="utf-8"))
    assert set(tables) == {"prompt", "response", "refusal"}
    models = published_models()
    for task, by_model in tables.items():
        for model, cells in by_model.items():
            entry = models[model]
            assert [entry["results"][task][b] for b in COLUMNS[task]] == cells[:-1], (model, task)
            assert entry["weighted"][task] == cells[-1]
    vl = models["GuardReasoner-VL"]
    assert vl["results"]["response"]["XSTestReponseHarmful"] == 92.72 and "unknown" in vl["size"]


def test_lookup_by_name_and_alias():
    assert find_published("yueliu1999/GuardReasoner-8B")[0] == "GuardReasoner 8B"
    assert find_published("guardreasoner 3b")[0] == "GuardReasoner 3B"
    assert find_published("my-own-guard") is None


def test_named_model_shows_ours_vs_published(tmp_path: Path):
    preds = released_layout(tmp_path / "8B")
    res = cli("evaluate", "--predictions", str(preds), "--protocol", "guardreasoner", "--name", "GuardReasoner-8B",
              "--json", "--out", str(tmp_path / "run"))
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    pub = report["published"]
    assert pub["model"] == "GuardReasoner 8B" and pub["paper"] == "arXiv 2501.18492"
    entry = published_models()["GuardReasoner 8B"]
    for ours, theirs in zip(report["results"], pub["results"]):
        assert (ours["benchmark"], ours["task"]) == (theirs["benchmark"], theirs["task"])
        assert theirs["f1"] == entry["results"][ours["task"]][ours["benchmark"]]
    # head files cover part of each task: the paper's weighted average is not comparable, so it is not shown
    assert pub["weighted"] == {"prompt": None, "response": None, "refusal": None}
    table = cli("evaluate", "--predictions", str(preds), "--protocol", "guardreasoner", "--reference",
                "GuardReasoner 3B", "--out", str(tmp_path / "run"))
    assert table.returncode == 0, table.stderr[-2000:]
    assert "published: GuardReasoner 3B" in table.stdout and "ours-published" in table.stdout
    assert "91.39" in table.stdout  # GuardReasoner 3B's AegisSafetyTest
    # an unnamed folder gets no published block; an unknown reference is an error naming the known ones
    plain = json.loads(cli("evaluate", "--predictions", str(preds), "--json", "--out", str(tmp_path / "run")).stdout)
    assert "published" not in plain
    bad = cli("evaluate", "--predictions", str(preds), "--reference", "Nope 9B", "--out", str(tmp_path / "run"))
    assert bad.returncode == 2 and "GuardReasoner 8B" in bad.stderr


def test_published_weighted_shown_when_the_benchmarks_are_the_papers():
    from corpus.evaluation.report import build_report

    line = {"prompt": "p", "label": "harmful", "predict": "Answers:\nRequest: harmful\n", "request_label": "harmful",
            "response_label": None, "refusal_label": None}
    lines = {b: [line] for b in COLUMNS["prompt"]}
    report = build_report(lines, "strict", name="GuardReasoner 1B", published=find_published("GuardReasoner 1B"))
    assert report["published"]["weighted"]["prompt"] == 77.68
    assert report["published"]["weighted"]["response"] is None
