"""The command line: help texts, recipe check, stats in text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from corpus.cli import app
from corpus.schema import load_schema
from corpus.store import StageWriter

runner = CliRunner()


def test_help_lists_stages_and_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("run", "ingest", "stats", "check", "adapters"):
        assert cmd in res.output
    res = runner.invoke(app, ["ingest", "--help"])
    assert res.exit_code == 0 and "dedup" in res.output and "--out" in res.output


def test_check_default_and_bad_recipe(tmp_path):
    res = runner.invoke(app, ["check"])
    assert res.exit_code == 0, res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ningest: {part_rows: -1}\n")
    res = runner.invoke(app, ["check", str(bad)])
    assert res.exit_code == 2
    assert "ingest.part_rows" in res.output and str(bad) in res.output
    assert "Traceback" not in res.output


def _fake_run(tmp_path):
    schema = load_schema("sample")
    rows = []
    for i, (mod, lab, cats) in enumerate([("text", "harmful", ["violence"]), ("text", "unharmful", []),
                                          ("image", "harmful", ["weapons", "violence"])]):
        rows.append({
            "id": f"{i:016x}", "source": "src", "source_split": "train", "source_id": str(i), "modality": mod,
            "prompt": "p" if mod == "text" else None, "response": None, "images": [], "request_label": lab,
            "response_label": None, "refusal_label": None,
            "label_origin": {"request": "gold", "response": None},
            "categories": cats, "raw_categories": cats, "meta": "{}",
        })
    w = StageWriter(tmp_path, "ingest", schema, {}, "fp")
    drops = pa.Table.from_pylist([{"drop_reason": "duplicate", "detail": None, "id": None, "source": "src",
                                   "source_split": "train", "source_id": "9", "record": "{}"}])
    w.write_unit(0, pa.Table.from_pylist(rows, schema=schema.arrow), drops, counters={"rows_in": 4})
    w.finish()


def test_stats_text_and_json(tmp_path):
    _fake_run(tmp_path)
    res = runner.invoke(app, ["stats", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)
    ingest = rep["stages"]["ingest"]
    assert ingest["kept"]["rows"] == 3
    assert ingest["kept"]["categories"] == {"violence": 2, "weapons": 1}
    assert ingest["dropped"]["by_reason"] == {"duplicate": 1}
    combos = {(r["modality"], r["request_label"]): r["rows"] for r in ingest["kept"]["by_source_modality_label"]}
    assert combos == {("text", "harmful"): 1, ("text", "unharmful"): 1, ("image", "harmful"): 1}
    text = runner.invoke(app, ["stats", str(tmp_path)]).output
    assert "duplicate" in text and "violence" in text and "image" in text


def test_stats_missing_dir(tmp_path):
    res = runner.invoke(app, ["stats", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no run directory" in res.output


def test_stage_selection_from_until_skip():
    from corpus.cli import select_stages

    stages = ["ingest", "synthesize", "filter", "export", "train-sft", "sample", "concat"]
    assert select_stages(stages, None, None, []) == stages
    assert select_stages(stages, "filter", "sample", ["train-sft"]) == ["filter", "export", "sample"]
    assert select_stages(stages, None, "export", ["synthesize"]) == ["ingest", "filter", "export"]
    for bad in (("nope", None, []), (None, "nope", []), (None, None, ["nope"])):
        with pytest.raises(ValueError, match="nope"):
            select_stages(stages, *bad)
    with pytest.raises(ValueError, match="comes after"):
        select_stages(stages, "sample", "filter", [])


def test_unknown_engine_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "corpus.cli", "filter", "--out", str(tmp_path), "--engine", "spark"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "--engine 'spark': not one of ['local', 'ray']" in res.stderr
