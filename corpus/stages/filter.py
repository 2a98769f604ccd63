"""Stage ``filter``: label-consistency and format filter over the teacher outputs.

A synthesized row is kept only if the teacher call succeeded, its output has steps and a final answers
block, and every gold label equals the teacher's; where the gold is unknown (null, but the thing judged
exists) the teacher's label is filled in with ``label_origin = teacher``. Kept rows gain ``steps``,
``step_count``, ``reasoning`` and ``sft_target``; every other row goes to ``filter/dropped/`` with its
reason (the list is in schemas/filtered.json). One unit per synthesize part, so memory is bounded by
the part size and an interrupted run resumes at the first unfinished part.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from corpus.engine.units import UnitResult, UnitTask, part_tasks, run_units
from corpus.guard_format import Answers, read_output, reserved_tokens_in, sft_target
from corpus.label_overrides import apply_override, load_overrides
from corpus.reasoning import ReasoningConfig, extract_steps, numbered_steps_per_task, sanitise_reasoning
from corpus.schema import Schema, load_schema
from corpus.store import StageDir, StageWriter

if TYPE_CHECKING:
    from corpus.recipe import Recipe

HELP = (
    "Keep a synthesized sample only if the teacher's labels agree with every gold label and its output has "
    "reasoning steps and a final answers block; fill teacher-decided labels where the gold is unknown; "
    "extract the steps and build the SFT target (<think> reasoning </think><result> labels </result>). "
    "Dropped rows keep their reason (label_mismatch:*, no_answers, no_steps, truncated, ...)."
)
STAGE = "filter"
UPSTREAM = "synthesize"

#: teacher_status values and the drop reason each gives ("ok" is checked further)
STATUS_REASONS = {
    "failed": "teacher_failed",
    "no_cached_response": "teacher_failed",
    "content_filter": "content_filter",
    "length": "truncated",
    "empty": "empty",
}


class FilterConfig(BaseModel):
    """Recipe section ``filter:``."""

    model_config = ConfigDict(extra="forbid")

    max_steps_per_task: int = Field(
        10, ge=1, description="Drop (too_many_steps) when a task has more numbered reasoning steps than this; "
        "the teacher is told to use 1 to 10 steps per task.")
    max_steps: int | None = Field(
        None, ge=1, description="Optional cap on step_count (numbered steps + conclusions of all tasks).")
    no_response_answer: Literal["ignore", "require_none"] = Field(
        "ignore", description="A sample without a response: `ignore` the teacher's Response answer (GuardReasoner's "
        "3-task outputs answer `Response: unharmful` there, and its evaluation skips Response when the gold is "
        "None); `require_none` drops the row (label_mismatch:response) unless the teacher answered None.")
    reasoning: ReasoningConfig = Field(default_factory=ReasoningConfig,
                                       description="Sanitising of the kept reasoning (corpus.reasoning).")


def filtered_schema() -> Schema:
    """sample columns + synthesize columns + filter columns."""
    return load_schema("sample").extend(load_schema("synthesized")).extend(load_schema("filtered"))


def dropped_table_schema() -> pa.Schema:
    """Arrow schema of a dropped row: drop columns, then the full synthesized row and the teacher's labels."""
    return load_schema("sample").extend(load_schema("synthesized")).dropped_arrow(
        pa.field("teacher_request", pa.string()), pa.field("teacher_response", pa.string()))


class Drop(Exception):
    def __init__(self, reason: str, detail: str, answers: Answers | None = None):
        super().__init__(reason)
        self.reason, self.detail, self.answers = reason, detail, answers


def _has_response(row: dict) -> bool:
    return row.get("response") is not None


def _check_label(kind: str, gold: str | None, teacher: str | None, exists: bool, ans: Answers,
                 strict_absent: bool = True) -> str | None:
    """The label to keep for ``kind`` (request/response), or raise Drop.

    Where the judged thing does not exist (no response) the label is None; with ``strict_absent`` the
    teacher must have answered None too.
    """
    if not exists:
        if strict_absent and teacher is not None:
            raise Drop(f"label_mismatch:{kind}", f"sample has no {kind} but the teacher answered {teacher!r}", ans)
        return None
    if gold is not None:
        if teacher != gold:
            raise Drop(f"label_mismatch:{kind}", f"gold {gold!r}, teacher {teacher!r}", ans)
        return gold
    if teacher is None:
        raise Drop(f"label_undecided:{kind}", f"gold {kind} label unknown and the teacher gave none", ans)
    return teacher


def filter_row(row: dict, cfg: FilterConfig, notes: Counter | None = None) -> dict:
    """The kept row (labels filled, filter columns added) or raise Drop with the reason; ``notes`` counts the
    reasoning sanitising (``reasoning_tasks_stripped``, ``reasoning_reserved_neutralised`` rows / ``_tokens``)."""
    for field in ("prompt", "response"):
        bad = reserved_tokens_in(row.get(field))
        if bad:
            raise Drop("reserved_token", f"{field} contains {bad}")
    status = row.get("teacher_status")
    if status != "ok":
        reason = STATUS_REASONS.get(status, "teacher_failed")
        detail = f"teacher_status {status!r}" + (f": {row.get('teacher_error')}" if row.get("teacher_error") else "")
        raise Drop(reason, detail)
    output = row.get("teacher_output")
    if output is None or not output.strip():
        raise Drop("empty", "teacher_status ok but the output is empty")
    ans, reasoning = read_output(output)
    if not ans.found:
        raise Drop("no_answers", "no final Answers:/<result> block with Request/Response keys")
    clean = sanitise_reasoning(reasoning, _has_response(row), cfg.reasoning)
    reasoning = clean.text
    steps = extract_steps(reasoning)
    if not steps:
        raise Drop("no_steps", "no '## Reasoning Step k' or conclusion before the answers block", ans)
    per_task = numbered_steps_per_task(steps)
    worst = max(per_task.values(), default=0)
    if worst > cfg.max_steps_per_task:
        raise Drop("too_many_steps", f"{worst} numbered steps in one task (max {cfg.max_steps_per_task})", ans)
    if cfg.max_steps is not None and len(steps) > cfg.max_steps:
        raise Drop("too_many_steps", f"{len(steps)} steps (max {cfg.max_steps})", ans)
    request = _check_label("request", row.get("request_label"), ans.request, True, ans)
    response = _check_label("response", row.get("response_label"), ans.response, _has_response(row), ans,
                            strict_absent=cfg.no_response_answer == "require_none")
    bad = reserved_tokens_in(reasoning)
    if bad:
        raise Drop("reserved_token:reasoning", f"teacher reasoning contains {bad}", ans)
    if clean.removed_tasks and cfg.reasoning.inapplicable_tasks == "drop":
        raise Drop("inapplicable_task", f"reasoning has task section(s) {list(clean.removed_tasks)} that do not "
                   "apply to the sample", ans)
    if notes is not None:
        notes["reasoning_tasks_stripped"] += bool(clean.removed_tasks) and cfg.reasoning.inapplicable_tasks == "strip"
        notes["reasoning_reserved_neutralised"] += bool(clean.neutralised)
        notes["reasoning_reserved_neutralised_tokens"] += clean.neutralised
    origin = dict(row.get("label_origin") or {})
    if row.get("request_label") is None:
        origin["request"] = "teacher"
    if response is not None and row.get("response_label") is None:
        origin["response"] = "teacher"
    return {
        **row,
        "request_label": request,
        "response_label": response,
        "label_origin": {"request": origin.get("request"), "response": origin.get("response") if response else None},
        "steps": [s.text for s in steps],
        "step_count": len(steps),
        "reasoning": reasoning,
        "sft_target": sft_target(reasoning, request, response),
    }


def filter_table(table: pa.Table, cfg: FilterConfig,
                 overrides: dict | None = None) -> tuple[pa.Table, pa.Table, Counter]:
    """Split one synthesized table into (kept, dropped, counters); ``overrides``: reviewed labels by row id."""
    schema = filtered_schema()
    kept: list[dict] = []
    dropped: list[dict] = []
    counters: Counter[str] = Counter()
    for row in table.to_pylist():
        counters["rows_in"] += 1
        row = apply_override(row, overrides or {})
        try:
            notes: Counter[str] = Counter()
            out = filter_row(row, cfg, notes)
        except Drop as d:
            dropped.append({**row, "drop_reason": d.reason, "detail": d.detail, "record": None,
                            "teacher_request": d.answers.request if d.answers else None,
                            "teacher_response": d.answers.response if d.answers else None})
            continue
        kept.append(out)
        counters.update({k: v for k, v in notes.items() if v})
        counters[f"kept:{out['modality']}"] += 1
        counters["steps"] += out["step_count"]
        for kind in ("request", "response"):
            if out["label_origin"][kind] == "teacher":
                counters[f"teacher_filled:{kind}"] += 1
    kept_t = pa.Table.from_pylist(kept, schema=schema.arrow)
    dropped_t = pa.Table.from_pylist(dropped, schema=dropped_table_schema())
    return kept_t, dropped_t, counters


def transform(table: pa.Table, task: UnitTask, cfg: FilterConfig, overrides: Any = None) -> UnitResult:
    """The stage's transform: one synthesize part in, its kept and dropped rows out."""
    kept, dropped, counters = filter_table(table, cfg, overrides)
    return UnitResult(kept, dropped, counters=dict(counters))


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    cfg: FilterConfig = recipe.filter
    upstream = StageDir(run_dir, UPSTREAM)
    schema = filtered_schema()
    overrides = load_overrides(recipe.resolve(recipe.ingest.label_overrides))
    config = {"filter": cfg.model_dump(), **({"label_overrides": overrides} if overrides else {})}
    writer = StageWriter(run_dir, STAGE, schema, config=config,
                         input_fingerprint=upstream.fingerprint(), force=force)
    if writer.skipped:
        return writer.manifest()
    tasks = part_tasks(upstream.parts(), writer.done_units())
    run_units(writer, partial(transform, cfg=cfg, overrides=overrides), tasks, work="cpu", desc=STAGE,
              total_rows=upstream.num_rows())
    return writer.finish()


def stats(run_dir: Path | str) -> dict[str, Any]:
    """Reasoning statistics (paper Table 6 layout), token-length percentiles, keep/drop rates."""
    from corpus.reasoning_stats import reasoning_stats

    return reasoning_stats(run_dir)
