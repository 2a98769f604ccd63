"""Per-answer correctness and the hardness rules."""

from __future__ import annotations

import pytest
from sample_helpers import guard_answer

from corpus.sampling.judge import RULES, is_hard, judge_answer

H, U = "harmful", "unharmful"


@pytest.mark.parametrize("text,req,resp,correct", [
    (guard_answer(H, U), H, U, True),
    (guard_answer(H, H), H, U, False),                # response label wrong
    (guard_answer(U, U), H, U, False),                # request label wrong
    (guard_answer(H, "None"), H, None, True),         # no response: `None` is right (reward's rule too)
    (guard_answer(H, H), H, None, False),             # a label where there is no response is wrong
    (guard_answer("None", U), None, U, True),         # request label unknown: only the response is judged
    (guard_answer(H, "None"), H, U, False),           # None where the reference has a label
    ("no answer at all", H, None, False),             # unparsable = wrong
    ("<think>x</think>\n<result>\nRequest: harmful/unharmful\nResponse: None\n</result>", H, None, False),
    ("", U, None, False),
    (guard_answer(H, U), None, None, False),          # nothing to judge against: never right
])
def test_judge_answer(text, req, resp, correct):
    j = judge_answer(text, req, resp)
    assert j.correct is correct
    assert j.as_row()["text"] == text


def test_judge_keeps_parsed_labels():
    j = judge_answer("<think>\nhm\n</think>\n<result>\nRequest: Harmless\nResponse: harmful\n</result>", U, H)
    assert (j.request, j.response, j.correct) == (U, H, True)


@pytest.mark.parametrize("n_right,expected", [
    (0, {"all_wrong": True, "mixed": False, "not_all_right": True}),
    (1, {"all_wrong": False, "mixed": True, "not_all_right": True}),
    (3, {"all_wrong": False, "mixed": True, "not_all_right": True}),
    (4, {"all_wrong": False, "mixed": False, "not_all_right": False}),
])
def test_rules(n_right, expected):
    assert {r: is_hard(n_right, 4, r) for r in RULES} == expected


def test_unknown_rule():
    with pytest.raises(ValueError, match="unknown hardness rule"):
        is_hard(0, 4, "some_wrong")
