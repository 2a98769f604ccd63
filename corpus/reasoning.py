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
