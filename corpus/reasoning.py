"""Reasoning steps of a teacher (or guard) output: ``# Task n`` sections holding ``## Reasoning Step k`` units.

Recognised step headings (any case, 1-4 ``#`` or ``**bold**``):

- ``## Reasoning Step 1`` with the text on the next lines, and the one-line ``## Reasoning Step 1: text``;
- conclusions: ``## Conclusion``, ``## Conclusion: text``, ``## Conclusion for Task 2: text``,
  ``# Task 1 Conclusion: harmful``, ``## Reasoning Conclusion: text``.

A step's text is the heading's inline text plus the lines below it, up to the next heading or a ``---``
rule. Conclusions are steps too (kind ``conclusion``): they are units of the reasoning the guard learns, and
``step_count`` counts them. Only numbered ``Reasoning Step`` units count towards the per-task limit, since
that is the range the teacher is told to keep to (1 to 10). Text under other headings stays in the
reasoning but is no step.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_H = r"^[ \t]{0,3}(?:#{1,4}[ \t]*|\*\*[ \t]*)"  # heading start: markdown '#'s or bold
_SEP = r"[ \t]*(?:\*\*)?[ \t]*[:.)\-\u2013\u2014]?[ \t]*(?:\*\*)?[ \t]*"
_TASK = re.compile(_H + r"Task[ \t]*(\d+)\b(?:\*\*)?(.*)$", re.IGNORECASE)
_STEP = re.compile(_H + r"(?:Reasoning[ \t]+)?Step[ \t]*(\d+)\b" + _SEP + r"(.*)$", re.IGNORECASE)
_CONCLUSION = re.compile(
    _H + r"(?:Reasoning[ \t]+|Final[ \t]+)?Conclusion\b(?:[ \t]+(?:for|of)[ \t]+Task[ \t]*(\d+))?" + _SEP + r"(.*)$",
    re.IGNORECASE,
)
_TASK_CONCLUSION = re.compile(r"^[ \t:.\-]*Conclusion\b" + _SEP + r"(.*)$", re.IGNORECASE)
_OTHER_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]")
_RULE = re.compile(r"^[ \t]*(?:-{3,}|\*{3,}|_{3,})[ \t]*$")
#: the first non-blank character of every line a pattern above can match (a cheap test before the regexes)
_HEADING_CHARS = ("#", "*", "-", "_")


@dataclass(frozen=True)
class Step:
    task: int | None  #: task number of the enclosing ``# Task n`` (None before any task heading)
    number: int | None  #: k of ``Reasoning Step k``; None for a conclusion
    kind: str  #: "step" or "conclusion"
    text: str  #: the step's text without its heading marker


def extract_steps(reasoning: str | None) -> list[Step]:
    """The steps of a reasoning text, in order."""
    steps: list[Step] = []
    task: int | None = None
    cur: dict | None = None

    def close() -> None:
        nonlocal cur
        if cur is not None:
            text = "\n".join(cur["lines"]).strip()
            steps.append(Step(cur["task"], cur["number"], cur["kind"], text))
        cur = None

    for line in (reasoning or "").splitlines():
        if line.lstrip(" \t")[:1] not in _HEADING_CHARS:  # no heading or rule can start this line
            if cur is not None:
                cur["lines"].append(line)
            continue
        m = _STEP.match(line)
        if m:
            close()
            cur = {"task": task, "number": int(m.group(1)), "kind": "step", "lines": [m.group(2)]}
            continue
        m = _CONCLUSION.match(line)
        if m:
            close()
            t = int(m.group(1)) if m.group(1) else task
            cur = {"task": t, "number": None, "kind": "conclusion", "lines": [m.group(2)]}
            continue
        m = _TASK.match(line)
        if m:
            close()
            task = int(m.group(1))
            c = _TASK_CONCLUSION.match(m.group(2))
            if c:  # "# Task 1 Conclusion: harmful"
                cur = {"task": task, "number": None, "kind": "conclusion", "lines": [c.group(1)]}
            continue
        if _OTHER_HEADING.match(line) or _RULE.match(line):
            close()
            continue
        if cur is not None:
            cur["lines"].append(line)
    close()
    return steps


def numbered_steps_per_task(steps: list[Step]) -> dict[int | None, int]:
    """Count of numbered ``Reasoning Step`` units per task."""
    return dict(Counter(s.task for s in steps if s.kind == "step"))


# ---------------------------------------------------------------- sanitising a teacher reasoning for the SFT target

#: what a reserved guard token becomes inside a reasoning (it would break the target's format otherwise)
NEUTRAL_TOKENS = {"<image>": "[image]", "<think>": "[think]", "</think>": "[/think]", "<result>": "[result]",
                  "</result>": "[/result]"}


class ReasoningConfig(BaseModel):
    """Recipe section ``filter.reasoning:``: make a kept teacher reasoning agree with its sample and the format."""

    model_config = ConfigDict(extra="forbid")

    inapplicable_tasks: Literal["strip", "drop", "keep"] = Field(
        "strip", description="`# Task n` sections that do not apply to the 2-task guard sample (the refusal task "
        "of a 3-task GuardReasoner output; the response task(s) of a sample without a response): `strip` them "
        "and renumber the rest; `drop` the row (inapplicable_task); `keep` them (the reasoning may then "
        "contradict the <result> block).")
    reserved_tokens: Literal["neutralise", "drop"] = Field(
        "neutralise", description="Reserved guard tokens inside the reasoning (a teacher quoting the transcript's "
        "<image> lines): `neutralise` them (<image> -> [image], <think> -> [think], ...; the row is kept and "
        "counted) or `drop` the row (reserved_token:reasoning).")


@dataclass(frozen=True)
class Sanitised:
    """A reasoning after sanitising, and what was changed."""

    text: str
    removed_tasks: tuple[int, ...] = ()  #: original numbers of the task sections taken out
    renumbered: bool = False
    neutralised: int = 0  #: reserved tokens replaced


def task_roles(task_numbers: set[int]) -> dict[int, str]:
    """The role of each ``# Task n``: ``request`` (1), then ``refusal`` (2) and ``response`` (3) in a 3-task
    GuardReasoner output (one that has a Task 3), else ``response`` (2, the 2-task guard layout)."""
    three = 3 in task_numbers
    roles = {1: "request", 2: "refusal" if three else "response"}
    if three:
        roles[3] = "response"
    return {n: roles.get(n, "unknown") for n in task_numbers}


def _renumber(line: str, old: int, new: int) -> str:
    return re.sub(rf"(Task[ \t]*){old}\b", rf"\g<1>{new}", line, count=1, flags=re.IGNORECASE)


def strip_inapplicable_tasks(reasoning: str, has_response: bool) -> Sanitised:
    """Remove the task sections the 2-task guard sample does not have, and renumber the rest 1, 2.

    Kept: the text before the first ``# Task`` heading, Task 1 (request), and the response-harm task only when
    the sample has a response. Taken out: the refusal task of a 3-task output, the response task on a sample
    without a response, and tasks numbered beyond the layout. A reasoning without task headings is unchanged.
    """
    lines = reasoning.split("\n")
    sections: list[tuple[int | None, list[str]]] = [(None, [])]
    for line in lines:
        m = _TASK.match(line) if line.lstrip(" \t")[:1] in _HEADING_CHARS else None
        if m:
            sections.append((int(m.group(1)), [line]))
        else:
            sections[-1][1].append(line)
    numbers = {n for n, _ in sections if n is not None}
    if not numbers:
        return Sanitised(reasoning)
    roles = task_roles(numbers)
    wanted = {"request"} | ({"response"} if has_response else set())
    kept: list[str] = list(sections[0][1])
    removed: list[int] = []
    new_numbers = {n: i + 1 for i, n in enumerate(sorted(n for n in numbers if roles[n] in wanted))}
    for n, body in sections[1:]:
        if roles[n] not in wanted:
            removed.append(n)
            continue
        new = new_numbers[n]
        if new != n:
            body = [_renumber(body[0], n, new)] + [
                _renumber(x, n, new) if _CONCLUSION.match(x) else x for x in body[1:]]
        kept.extend(body)
    text = "\n".join(kept).strip()
    renumbered = any(new != n for n, new in new_numbers.items())
    return Sanitised(text, tuple(sorted(set(removed))), renumbered)


def neutralise_reserved(text: str) -> tuple[str, int]:
    """``text`` with every reserved guard token replaced by its bracketed form, and how many were replaced."""
    count = 0
    for token, neutral in NEUTRAL_TOKENS.items():
        count += text.count(token)
        text = text.replace(token, neutral)
    return text, count


def sanitise_reasoning(reasoning: str, has_response: bool, cfg: ReasoningConfig | None = None) -> Sanitised:
    """Apply ``cfg`` (default: strip inapplicable tasks, neutralise reserved tokens). The caller drops the row
    when ``cfg`` says ``drop`` and the result shows removed tasks or reserved tokens."""
    cfg = cfg or ReasoningConfig()
    s = strip_inapplicable_tasks(reasoning, has_response) if cfg.inapplicable_tasks != "keep" else Sanitised(reasoning)
    if cfg.inapplicable_tasks == "drop":
        s = Sanitised(reasoning, s.removed_tasks)
    text, n = neutralise_reserved(s.text) if cfg.reserved_tokens == "neutralise" else (s.text, 0)
    return Sanitised(text, s.removed_tasks, s.renumbered, n)
