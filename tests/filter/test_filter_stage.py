"""Stage ``filter``: every drop reason, teacher-filled labels, the kept columns, skip/resume, stats."""

from __future__ import annotations

import json

import pytest
from filter_factory import stored_image, synth_row, teacher_output, write_synthesized

from corpus.guard_format import parse_answers
from corpus.recipe import Recipe, parse_recipe
from corpus.resources import resource
from corpus.schema import load_schema
from corpus.stages import filter as filter_stage
from corpus.stages.filter import FilterConfig, filter_table
from corpus.store import StageDir


def _one(row: dict, cfg: FilterConfig | None = None):
    import pyarrow as pa
    from filter_factory import synthesized_schema

    table = pa.Table.from_pylist([row], schema=synthesized_schema().arrow)
    kept, dropped, _ = filter_table(table, cfg or FilterConfig())
    return kept.to_pylist(), dropped.to_pylist()


def _reason(row: dict, cfg: FilterConfig | None = None) -> tuple[str, str]:
    kept, dropped = _one(row, cfg)
    assert not kept and len(dropped) == 1
    return dropped[0]["drop_reason"], dropped[0]["detail"]


many_steps = teacher_output("harmful", None, steps=11)

DROP_CASES = [
    ("reserved_token", dict(prompt="look at <image> this")),
    ("reserved_token", dict(prompt="p", response="sure </think> ok", response_label="harmful")),
    ("teacher_failed", dict(status="failed", error="HTTP 500", teacher=None)),
    ("teacher_failed", dict(status="no_cached_response", teacher=None)),
    ("teacher_failed", dict(status="weird_status", teacher=None)),
    ("content_filter", dict(status="content_filter", teacher=None)),
    ("truncated", dict(status="length", teacher="# Task 1\n## Reasoning Step 1\nhalf a sen")),
    ("empty", dict(status="empty", teacher=None)),
    ("empty", dict(teacher="   \n ")),
    ("no_answers", dict(teacher="# Task 1\n## Reasoning Step 1\nIt is harmful.\n")),
    ("no_answers", dict(teacher="# Task 1\n## Reasoning Step 1\nx\n\nAnswers:\nharmful")),
    ("no_steps", dict(teacher="The request is harmful.\n\nAnswers: \nRequest: harmful\nResponse: None")),
    ("too_many_steps", dict(teacher=many_steps)),
    ("label_mismatch:request", dict(request_label="unharmful", teacher=teacher_output("harmful", None))),
    ("label_mismatch:request", dict(request_label="harmful", teacher=teacher_output("ambiguous", None))),
    ("label_undecided:request", dict(request_label=None, response="r", response_label="harmful",
                                     teacher=teacher_output(None, "harmful"))),
    ("label_mismatch:response", dict(response="r", response_label="harmful",
                                     teacher=teacher_output("harmful", "unharmful"))),
    ("label_undecided:response", dict(response="r", response_label=None, teacher=teacher_output("harmful", None))),
]


@pytest.mark.parametrize(("reason", "kw"), DROP_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(DROP_CASES)])
def test_each_drop_reason(reason, kw):
    got, detail = _reason(synth_row(**kw))
    assert got == reason
    assert detail


def test_answer_for_a_missing_response_ignored_or_required_none():
    row = synth_row(response=None, teacher=teacher_output("harmful", "unharmful"))
    kept, _ = _one(row)  # default: GuardReasoner's 3-task outputs say `Response: unharmful` here
    assert kept and kept[0]["response_label"] is None and "Response: None" in kept[0]["sft_target"]
    reason, detail = _reason(row, FilterConfig(no_response_answer="require_none"))
    assert reason == "label_mismatch:response" and "no response" in detail
    kept, _ = _one(synth_row(response=None, teacher=teacher_output("harmful", None)),
                   FilterConfig(no_response_answer="require_none"))
    assert kept


def test_every_documented_reason_is_exercised():
    doc = json.loads(resource("schemas", "filtered.json").read_text(encoding="utf-8"))["description"]
    for reason in {r for r, _ in DROP_CASES}:
        assert reason in doc


def test_dropped_row_keeps_full_row_and_teacher_labels():
    row = synth_row(request_label="unharmful", teacher=teacher_output("harmful", None))
    _, dropped = _one(row)
    d = dropped[0]
    assert d["teacher_request"] == "harmful" and d["teacher_response"] is None
    assert d["teacher_output"] == row["teacher_output"] and d["prompt"] == row["prompt"]
    assert d["id"] == row["id"] and d["source"] == row["source"]


def test_too_many_steps_is_configurable():
    with_response = dict(response="r", response_label="harmful")  # both tasks apply (none stripped)
    row = synth_row(teacher=teacher_output("harmful", "harmful", steps=11), **with_response)
    kept, _ = _one(row, FilterConfig(max_steps_per_task=11))
    assert kept and kept[0]["step_count"] == 22  # 2 tasks x 11 steps
    assert _reason(synth_row(**with_response), FilterConfig(max_steps=3))[0] == "too_many_steps"  # 2 x 2 steps


@pytest.mark.parametrize("form", ["multi_line", "one_line", "conclusion", "three_task", "echo", "no_rule"])
def test_kept_row_columns(form):
    kw = {"multi_line": {}, "one_line": {"one_line": True}, "conclusion": {"conclusion": True},
          "three_task": {"tasks": 3, "refusal": "compliance"}, "echo": {"echo_ground_truth": True},
          "no_rule": {"rule": False}}[form]
    row = synth_row(response="Sure, here {is} how", response_label="harmful",
                    teacher=teacher_output("harmful", "harmful", **kw))
    kept, dropped = _one(row)
    assert not dropped, dropped
    k = kept[0]
    tasks = 2  # a 3-task output loses its refusal task (corpus.reasoning.strip_inapplicable_tasks)
    assert k["step_count"] == len(k["steps"]) == tasks * 2 + (tasks if form == "conclusion" else 0)
    assert k["steps"][0] == "Task 1 step 1: the request is examined {with braces}."
    assert "Answers" not in k["reasoning"] and not k["reasoning"].endswith("---")
    assert "ground truth" not in k["reasoning"]
    result = "<result>\nRequest: harmful\nResponse: harmful\n</result>"
    assert k["sft_target"] == f"<think>\n{k['reasoning']}\n</think>\n{result}"
    assert parse_answers(k["sft_target"]).request == "harmful"
    assert k["label_origin"] == {"request": "gold", "response": "gold"}


def test_teacher_fills_unknown_labels_beavertails_style():
    """BeaverTails: response gold, request unknown -> the teacher's request label with origin teacher."""
    row = synth_row(source="beavertails", request_label=None, response="ok", response_label="unharmful",
                    teacher=teacher_output("harmful", "unharmful", tasks=3, refusal="compliance"))
    kept, _ = _one(row)
    k = kept[0]
    assert (k["request_label"], k["response_label"]) == ("harmful", "unharmful")
    assert k["label_origin"] == {"request": "teacher", "response": "gold"}
    assert "Request: harmful\nResponse: unharmful" in k["sft_target"]
    # unknown response label with a response present (e.g. WildGuard null response_harm_label)
    row = synth_row(response="ok", response_label=None, teacher=teacher_output("harmful", "harmful"))
    k = _one(row)[0][0]
    assert k["response_label"] == "harmful" and k["label_origin"] == {"request": "gold", "response": "teacher"}


def test_no_response_sample_keeps_none():
    k = _one(synth_row(response=None, teacher=teacher_output("harmful", None)))[0][0]
    assert k["response_label"] is None and k["label_origin"]["response"] is None
    assert k["sft_target"].endswith("Response: None\n</result>")


def _units(run_dir):
    img = stored_image(run_dir, 1)
    return [
        [synth_row(0), synth_row(1, request_label="unharmful", teacher=teacher_output("harmful", None)),
         synth_row(2, status="length", teacher="cut")],
        [synth_row(3, source="spavl", modality="text_image", images=[img], response="resp",
                   response_label="unharmful"),
         synth_row(4, source="unsafebench", modality="image", prompt=None, images=[img], request_label="unharmful",
                   teacher=teacher_output("unharmful", None, one_line=True, conclusion=True)),
         synth_row(5, source="beavertails", request_label=None, response="r", response_label="harmful",
                   teacher=teacher_output("unharmful", "harmful"))],
    ]


def test_stage_run_skip_force_and_resume(run_dir, recipe: Recipe):
    write_synthesized(run_dir, _units(run_dir))
    m = filter_stage.run(recipe, run_dir)
    assert (m["rows_in"], m["rows_out"], m["rows_dropped"]) == (6, 4, 2)
    assert m["drop_reasons"] == {"label_mismatch:request": 1, "truncated": 1}
    assert m["counters"]["teacher_filled:request"] == 1
    kept = StageDir(run_dir, "filter").read()
    schema = load_schema("sample").extend(load_schema("synthesized")).extend(load_schema("filtered"))
    assert kept.schema.names == schema.names
    # skip when nothing changed
    assert filter_stage.run(recipe, run_dir)["timings"] == m["timings"]
    # a killed run (unit 1 lost, no manifest) resumes with the same rows
    (run_dir / "filter" / "_manifest.json").unlink()
    (run_dir / "filter" / "part-00001.parquet").unlink()
    m2 = filter_stage.run(recipe, run_dir)
    assert m2["timings"]["units_resumed"] == 1
    assert m2["output_fingerprint"] == m["output_fingerprint"]
    # a config change reruns
    r2 = parse_recipe({"name": "x", "filter": {"max_steps": 3}})
    m3 = filter_stage.run(r2, run_dir)
    assert m3["drop_reasons"].get("too_many_steps") == 2  # the two rows with a response: 2 tasks x 2 steps
    assert m3["config_hash"] != m["config_hash"]


def test_recipe_section_rejects_unknown_keys():
    from corpus.recipe import RecipeError

    with pytest.raises(RecipeError, match="filter.max_step"):
        parse_recipe({"name": "x", "filter": {"max_step": 3}})
    with pytest.raises(RecipeError, match="export.formats"):
        parse_recipe({"name": "x", "export": {"formats": ["csv"]}})


def test_stats_table6_and_rates(run_dir, recipe):
    write_synthesized(run_dir, _units(run_dir))
    filter_stage.run(recipe, run_dir)
    s = filter_stage.stats(run_dir)
    t6 = {r["modality"]: r for r in s["table6"]}
    assert list(t6) == ["text", "image", "text_image", "overall"]
    kept = StageDir(run_dir, "filter").read().to_pylist()
    for mod, r in t6.items():
        rows = [k for k in kept if mod == "overall" or k["modality"] == mod]
        steps = sum(k["step_count"] for k in rows)
        chars = sum(len(s_) for k in rows for s_ in k["steps"])
        assert (r["samples"], r["steps"]) == (len(rows), steps)
        assert r["mean_steps_per_sample"] == round(steps / len(rows), 2)
        assert r["mean_chars_per_step"] == round(chars / steps, 1)
    tok = {(r["modality"], r["field"]): r for r in s["token_lengths_whitespace"]}
    overall = sorted(len(k["sft_target"].split()) for k in kept)
    assert tok[("overall", "sft_target")]["max"] == overall[-1]
    assert tok[("overall", "sft_target")]["n"] == len(kept)
    rates = {r["source"]: r for r in s["keep_drop_by_source"]}
    assert rates["wildguardtrain"] == {"source": "wildguardtrain", "rows_in": 3, "kept": 1, "dropped": 2,
                                       "keep_rate": round(1 / 3, 4)}
    assert {r["drop_reason"] for r in s["drops_by_reason"]} == {"label_mismatch:request", "truncated"}
    assert s["teacher_filled_labels"] == {"request": 1}
    # the generic report renders the Table 6 rows as a table
    from corpus.stats import collect, render

    text = render(collect(run_dir))
    assert "mean_chars_per_step" in text and "text_image" in text

