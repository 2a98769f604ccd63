"""Judge one sampled answer against the row's labels, and classify a row by its right answers.

Correctness of one answer is :func:`corpus.guard_format.judge_labels`, the rule the RL reward uses too:

- the reference labels are the row's ``request_label`` and ``response_label`` (gold, or in the SFT pool
  the teacher's where the gold was unknown: the labels the SFT model was trained to give);
- the request label must equal the reference (a null reference request label is not judged);
- a reference response label must be matched; a null one on a row that has a response (label unknown, e.g.
  in the ingest pool) is not judged; on a sample without a response the ``absent_response``
  policy decides (default ``none_or_missing``: ``Response: None`` or no ``Response:`` key, as the released
  GuardReasoner-family reward; ``none``; ``ignore``), so an answer counted right here is not punished by
  the reward;
- an unparsable answer (no final block, or an unreadable value) is wrong wherever a label is judged.

A row with no reference label at all cannot be judged and is dropped by the stage (``no_label``).

Hardness rules over ``n_right`` right answers out of ``k``:

- ``all_wrong`` (paper): ``n_right == 0``;
- ``mixed``: at least one right and one wrong, ``0 < n_right < k``;
- ``not_all_right``: ``n_right < k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from corpus.guard_format import DEFAULT_ABSENT_RESPONSE, judge_labels, parse_answers

Rule = Literal["all_wrong", "mixed", "not_all_right"]
RULES: tuple[str, ...] = ("all_wrong", "mixed", "not_all_right")


@dataclass(frozen=True)
class Judged:
    """One rollout as stored: the text, the parsed labels and whether it is right."""

    text: str
    request: str | None
    response: str | None
    correct: bool

    def as_row(self) -> dict:
        return {"text": self.text, "request": self.request, "response": self.response, "correct": self.correct}


def judge_answer(text: str | None, request_label: str | None, response_label: str | None,
                 absent_response: str = DEFAULT_ABSENT_RESPONSE, has_response: bool | None = None) -> Judged:
    """Parse ``text`` and judge it against the reference labels (see the module docstring)."""
    answers = parse_answers(text or "")
    verdict = judge_labels(answers, request_label, response_label, absent_response, has_response)
    return Judged(text or "", answers.request, answers.response, verdict.correct)


def is_hard(n_right: int, k: int, rule: str) -> bool:
    """Whether a row with ``n_right`` right answers out of ``k`` is hard under ``rule``."""
    if rule == "all_wrong":
        return n_right == 0
    if rule == "mixed":
        return 0 < n_right < k
    if rule == "not_all_right":
        return n_right < k
    raise ValueError(f"unknown hardness rule {rule!r}; known: {list(RULES)}")
