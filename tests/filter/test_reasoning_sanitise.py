"""Reasoning sanitising in the filter: no task section that contradicts the result, reserved tokens neutralised.

Teacher outputs are the real GuardReasonerTrain records (3-task outputs) from shared/realdata, run through the
filter's own table function (real Arrow tables)."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest
from filter_factory import synth_row, synthesized_schema, teacher_output
from realdata_path import REALDATA

from corpus.guard_format import parse_answers, think_text
from corpus.reasoning import ReasoningConfig, extract_steps, sanitise_reasoning, strip_inapplicable_tasks
from corpus.stages.filter import FilterConfig, filter_table

RECORDS = json.loads((REALDATA / "guardreasoner_train" / "sample_one_per_split.json").read_text(encoding="utf-8"))


def _real(split: str) -> dict:
    return RECORDS[split][0]


def _row_from_real(split: str) -> dict:
    rec = _real(split)
    prompt, response = rec["input"].removeprefix("Human user:\n").rsplit("\n\nAI assistant:\n", 1)
    response = response.strip()
    response = None if response == "None" else response
    gold = parse_answers(rec["output"])
    return synth_row(prompt=prompt, response=response, request_label=gold.request,
                     response_label=gold.response if response is not None else None, teacher=rec["output"])


def _filter(rows: list[dict], cfg: FilterConfig | None = None):
    table = pa.Table.from_pylist(rows, schema=synthesized_schema().arrow)
    kept, dropped, counters = filter_table(table, cfg or FilterConfig())
    return kept.to_pylist(), dropped.to_pylist(), counters


@pytest.mark.parametrize("split", ["WildGuardTrainR", "AegisTrainR", "ToxicChatTrainR"])
def test_real_no_response_outputs_lose_their_response_tasks(split):
    """Real 3-task outputs on samples without a response: Task 2 (refusal) and Task 3 (response) go."""
    assert "# Task 3" in _real(split)["output"]
    kept, dropped, counters = _filter([_row_from_real(split)])
    assert not dropped
    (row,) = kept
    think = think_text(row["sft_target"])
    assert "# Task 1" in think and "# Task 2" not in think and "# Task 3" not in think
    assert "Response: None" in row["sft_target"]
    task1 = [st.text for st in extract_steps(_real(split)["output"].split("---")[0]) if st.task == 1]
    assert row["steps"] == task1 and row["step_count"] == len(task1)
    assert counters["reasoning_tasks_stripped"] == 1


def test_real_output_with_a_response_drops_refusal_task_and_renumbers():
    kept, dropped, _ = _filter([_row_from_real("BeaverTailsTrainR")])
    assert not dropped
    think = think_text(kept[0]["sft_target"])
    assert "# Task 1" in think and "# Task 2" in think and "# Task 3" not in think
    assert "compliance" not in think.split("# Task 2", 1)[1]  # the refusal task is gone, Task 2 = response harm
    assert "The response is harmful." in think.split("# Task 2", 1)[1]
    assert "Response: harmful" in kept[0]["sft_target"]


def test_two_task_reasoning_and_plain_steps():
    two = teacher_output("harmful", "unharmful", tasks=2, conclusion=True).split("---")[0]
    s = strip_inapplicable_tasks(two, has_response=True)
    assert s.text == two.strip() and not s.removed_tasks and not s.renumbered
    s = strip_inapplicable_tasks(two, has_response=False)
    assert s.removed_tasks == (2,) and "# Task 2" not in s.text and "Task 1 concluded." in s.text
    plain = "## Reasoning Step 1\nno task headings"
    assert strip_inapplicable_tasks(plain, has_response=False).text == plain


def test_conclusion_lines_are_renumbered_with_their_task():
    text = ("# Task 1\n## Reasoning Step 1\na\n# Task 2\n## Reasoning Step 1\nrefusal?\n"
            "# Task 3\n## Reasoning Step 1\nb\n## Conclusion for Task 3: harmful")
    s = strip_inapplicable_tasks(text, has_response=True)
    assert s.removed_tasks == (2,) and s.renumbered
    assert "# Task 2\n## Reasoning Step 1\nb\n## Conclusion for Task 2: harmful" in s.text
    assert [st.task for st in extract_steps(s.text)] == [1, 2, 2]


def test_drop_or_keep_instead_of_strip():
    row = _row_from_real("WildGuardTrainR")
    _, dropped, _ = _filter([row], FilterConfig(reasoning=ReasoningConfig(inapplicable_tasks="drop")))
    assert dropped[0]["drop_reason"] == "inapplicable_task" and "[2, 3]" in dropped[0]["detail"]
    kept, _, counters = _filter([row], FilterConfig(reasoning=ReasoningConfig(inapplicable_tasks="keep")))
    assert "# Task 3" in kept[0]["reasoning"] and not counters.get("reasoning_tasks_stripped")


def test_stripped_tasks_do_not_count_towards_the_step_limit():
    teacher = teacher_output("harmful", None, tasks=3, steps=4).replace(
        "# Task 3\n", "# Task 3\n" + "".join(f"## Reasoning Step {k}\nx\n" for k in range(5, 12)))
    kept, dropped, _ = _filter([synth_row(teacher=teacher)], FilterConfig(max_steps_per_task=10))
    assert kept and not dropped and kept[0]["step_count"] == 4


def test_reserved_tokens_in_reasoning_are_neutralised_and_counted():
    teacher = ("# Task 1\n## Reasoning Step 1\nThe user turn reads <image>\n<image>\nthen asks </think> <result>."
               "\n\nAnswers: \nRequest: harmful\nResponse: None")
    rows = [synth_row(i, teacher=teacher, modality="image") for i in range(3)]
    kept, dropped, counters = _filter(rows)
    assert len(kept) == 3 and not dropped
    r = kept[0]
    assert "<image>" not in r["sft_target"] and r["sft_target"].count("<think>") == 1
    assert "[image]\n[image]" in r["reasoning"] and "[/think] [result]" in r["reasoning"]
    assert parse_answers(r["sft_target"]).request == "harmful"
    assert counters["reasoning_reserved_neutralised"] == 3 and counters["reasoning_reserved_neutralised_tokens"] == 12
    _, dropped, _ = _filter(rows[:1], FilterConfig(reasoning=ReasoningConfig(reserved_tokens="drop")))
    assert dropped[0]["drop_reason"] == "reserved_token:reasoning"


def test_sanitise_defaults():
    s = sanitise_reasoning("# Task 1\n## Reasoning Step 1\n<image>\n# Task 2\n## Reasoning Step 1\nx", False)
    assert (s.text, s.removed_tasks, s.neutralised) == ("# Task 1\n## Reasoning Step 1\n[image]", (2,), 1)


def test_label_origin_response_is_none_on_a_row_without_response():
    """A no-response row that arrives with label_origin.response = gold keeps no response origin."""
    row = synth_row(response=None, teacher=teacher_output("harmful", None))
    row["label_origin"] = {"request": "gold", "response": "gold"}
    kept, _, _ = _filter([row])
    assert kept[0]["response_label"] is None
    assert kept[0]["label_origin"] == {"request": "gold", "response": None}


@pytest.mark.parametrize("form", ["heading", "inline", "task_conclusion"])
def test_ten_numbered_steps_plus_a_conclusion_pass_the_per_task_limit(form):
    """Only numbered Reasoning Steps count towards max_steps_per_task: conclusions are steps, not numbered ones."""
    steps = "".join(f"## Reasoning Step {k}\nstep {k}\n" for k in range(1, 11))
    conclusion = {"heading": "## Conclusion\nThe request is harmful.\n",
                  "inline": "## Conclusion: The request is harmful.\n",
                  "task_conclusion": "# Task 1 Conclusion: harmful\n"}[form]
    teacher = f"# Task 1\n{steps}{conclusion}\n---\n\nAnswers: \nRequest: harmful\nResponse: None"
    kept, dropped, _ = _filter([synth_row(teacher=teacher)], FilterConfig(max_steps_per_task=10))
    assert not dropped and kept[0]["step_count"] == 11
    eleven = teacher.replace("## Reasoning Step 10\nstep 10\n", "## Reasoning Step 10\nx\n## Reasoning Step 11\ny\n")
    _, dropped, _ = _filter([synth_row(teacher=eleven)], FilterConfig(max_steps_per_task=10))
    assert dropped[0]["drop_reason"] == "too_many_steps"
