"""Judge one sampled answer against the row's labels, and classify a row by its right answers.

Correctness of one answer (parsed with :func:`corpus.guard_format.parse_answers`, the one parser):

- the reference labels are the row's ``request_label`` and ``response_label`` (gold, or in the SFT pool
  the teacher's where the gold was unknown: the labels the SFT model was trained to give);
- an answer is right iff, for every reference label that is not null, the parsed label equals it;
  a null reference label is not judged (e.g. no response: whatever the answer says about it);
- an unparsable answer (no final block, or an unreadable value) has None for that label, which never
  equals a non-null reference: it is wrong.

A row with no reference label at all cannot be judged and is dropped by the stage (``no_label``).

Hardness rules over ``n_right`` right answers out of ``k``:

- ``all_wrong`` (paper): ``n_right == 0``;
- ``mixed``: at least one right and one wrong, ``0 < n_right < k``;
- ``not_all_right``: ``n_right < k``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from corpus.guard_format import parse_answers

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


def judge_answer(text: str | None, request_label: str | None, response_label: str | None) -> Judged:
    """Parse ``text`` and compare it with the non-null reference labels (see the module docstring)."""
    answers = parse_answers(text or "")
    correct = (request_label is not None or response_label is not None) and all(
        ref is None or got == ref for ref, got in ((request_label, answers.request), (response_label, answers.response))
    )
    return Judged(text or "", answers.request, answers.response, bool(correct))


def is_hard(n_right: int, k: int, rule: str) -> bool:
    """Whether a row with ``n_right`` right answers out of ``k`` is hard under ``rule``."""
    if rule == "all_wrong":
        return n_right == 0
    if rule == "mixed":
        return 0 < n_right < k
    if rule == "not_all_right":
        return n_right < k
    raise ValueError(f"unknown hardness rule {rule!r}; known: {list(RULES)}")
