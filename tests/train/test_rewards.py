"""The guard reward: format indicator, label terms (the judge's rule), bounded length-aware shaping."""

from __future__ import annotations

import math

import pytest

from corpus.guard_format import judge_labels, parse_answers, sft_target
from corpus.sampling.judge import judge_answer
from corpus.training.config import TrainRLConfig, reward_settings
from corpus.training.rewards import (
    RewardSettings,
    labels_from_answer,
    safety_reward,
    score,
    settings_from,
    trl_reward_func,
)

GOOD = sft_target("The request asks how to hurt someone.", "harmful", "unharmful")
BOTH_WRONG = sft_target("x", "unharmful", "harmful")
REQ_ONLY = sft_target("x", "harmful", "harmful")
RESP_ONLY = sft_target("x", "unharmful", "unharmful")
NO_FORMAT = "Request: harmful\nResponse: unharmful"  # right labels, no <think>/<result>
NO_THINK = "<result>\nRequest: harmful\nResponse: unharmful\n</result>"
PREAMBLE = "Let me look at this.\n" + GOOD  # the paper family's search reading still counts it
S = RewardSettings(max_length=100, beta=1.0, length_floor=0.01)
ECO = RewardSettings(max_length=100, beta=1 / 6, length_floor=0.01)
FULL = RewardSettings(max_length=100, beta=1.0, length_floor=0.01, format="fullmatch")


# text, length (tokens), settings, expected r_safety, expected overall
CASES = [
    ("both right, any length", GOOD, 30, S, 1.0, 0.0),
    ("both right, eco", GOOD, 5, ECO, 1.0, 0.0),
    ("format missing, labels right", NO_FORMAT, 50, S, 0.0, -1 / 0.5**2),
    ("format missing, no think", NO_THINK, 100, S, 0.0, -1.0),
    ("request right only", REQ_ONLY, 50, S, 0.5, -0.5 / 0.5**2),
    ("response right only", RESP_ONLY, 25, S, 0.5, -0.5 / 0.25**2),
    ("both wrong, full length", BOTH_WRONG, 100, S, 0.0, -1.0),
    ("both wrong, short", BOTH_WRONG, 10, S, 0.0, -1 / 0.1**2),
    ("eco: length below beta", BOTH_WRONG, 10, ECO, 0.0, -1 / 0.1**2),
    ("eco: length above beta is capped", BOTH_WRONG, 50, ECO, 0.0, -36.0),
    ("eco: length far above beta, same", BOTH_WRONG, 100, ECO, 0.0, -36.0),
    ("empty output hits the floor", "", 0, S, 0.0, -1 / 0.01**2),
    ("preamble: search counts it", PREAMBLE, 50, S, 1.0, 0.0),
    ("preamble: fullmatch does not", PREAMBLE, 50, FULL, 0.0, -1 / 0.5**2),
]


@pytest.mark.parametrize(("name", "text", "length", "settings", "safety", "overall"), CASES, ids=[c[0] for c in CASES])
def test_reward_table(name, text, length, settings, safety, overall):
    parts = score(text, "harmful", "unharmful", length=length, settings=settings)
    assert parts.safety == pytest.approx(safety)
    assert parts.overall == pytest.approx(overall)
    assert safety_reward(text, "harmful", "unharmful", settings) == pytest.approx(safety)


def test_default_format_is_search_and_fullmatch_is_offered():
    assert RewardSettings().format == "search" and TrainRLConfig().reward.format == "search"
    trailing = GOOD + "\nThanks!"
    assert score(trailing, "harmful", "unharmful", length=50).format == 1.0
    assert score(trailing, "harmful", "unharmful", length=50, settings=FULL).format == 0.0
    # no <result> right after </think>: no reading counts it
    assert score("<think>a</think> then <result>Request: harmful</result>", "harmful", None).format == 0.0
    with pytest.raises(ValueError, match="format"):
        RewardSettings(format="regex")


LENGTHS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 204, 205, 300, 512, 1000, 1500, 2047, 2048, 4096, 10**6]


@pytest.mark.parametrize("beta", [1.0, 1 / 6])
@pytest.mark.parametrize("text", [GOOD, REQ_ONLY, BOTH_WRONG, NO_FORMAT, ""], ids=["right", "half", "wrong",
                                                                                    "unformatted", "empty"])
def test_reward_is_bounded_over_a_grid_of_lengths(text, beta):
    """Default settings: every reward lies in [-1/length_floor², 0] = [-100, 0], never below, and a longer
    output never scores worse than a shorter one with the same answer."""
    s = RewardSettings(beta=beta)  # default length_floor 0.1, max_length 2048
    low, high = s.bounds
    assert (low, high) == (pytest.approx(-100.0), 0.0)
    rewards = [score(text, "harmful", "unharmful", length=n, settings=s).overall for n in LENGTHS]
    assert all(math.isfinite(r) and low - 1e-9 <= r <= high for r in rewards)
    assert rewards == sorted(rewards)  # non-decreasing in length
    safety = score(text, "harmful", "unharmful", length=1, settings=s).safety
    # the penalty at the floor and past beta, exactly as the formula says
    assert rewards[0] == pytest.approx((safety - 1) / min(0.1, beta) ** 2)
    assert rewards[-1] == pytest.approx((safety - 1) / beta ** 2)


def test_a_short_unformatted_output_no_longer_scores_minus_ten_thousand():
    assert score("harmful", "harmful", None, length=3).overall == pytest.approx(-100.0)
    old_floor = RewardSettings(length_floor=0.01)  # the former default
    assert score("harmful", "harmful", None, length=3, settings=old_floor).overall == pytest.approx(-10_000.0)


# ---- one rule: the rejection-sampling judge and the reward agree


def _answer(request: str, response: str | None, *, key: bool = True) -> str:
    lines = f"Request: {request}\n" + (f"Response: {response}\n" if key else "")
    return f"<think>\nstep\n</think>\n<result>\n{lines}</result>"


NO_RESPONSE_OUTPUTS = {
    "Response: None": (_answer("harmful", "None"), {"none_or_missing": True, "none": True, "ignore": True}),
    "no Response key": (_answer("harmful", None, key=False), {"none_or_missing": True, "none": False, "ignore": True}),
    "Response: unharmful": (_answer("harmful", "unharmful"), {"none_or_missing": False, "none": False,
                                                              "ignore": True}),
    "Response: ambiguous": (_answer("harmful", "ambiguous"), {"none_or_missing": False, "none": False,
                                                              "ignore": True}),
}


@pytest.mark.parametrize("policy", ["none_or_missing", "none", "ignore"])
@pytest.mark.parametrize("name", list(NO_RESPONSE_OUTPUTS))
def test_judge_and_reward_agree_on_a_sample_without_response(name, policy):
    text, expected = NO_RESPONSE_OUTPUTS[name]
    judged = judge_answer(text, "harmful", None, absent_response=policy)
    parts = score(text, "harmful", None, length=50, settings=RewardSettings(max_length=100, absent_response=policy))
    assert judged.correct is expected[policy]
    assert (parts.safety == 1.0) is judged.correct
    assert (parts.overall == 0.0) is judged.correct


def test_default_policy_counts_none_and_missing_alike():
    assert RewardSettings().absent_response == "none_or_missing"
    for text in (_answer("unharmful", "None"), _answer("unharmful", None, key=False)):
        assert judge_answer(text, "unharmful", None).correct
        assert score(text, "unharmful", None, length=10).overall == 0.0
    # the case of the issue: right when mining hard samples, punished as reward. Now both say wrong.
    text = _answer("unharmful", "unharmful")
    assert not judge_answer(text, "unharmful", None).correct
    assert score(text, "unharmful", None, length=10).overall < 0


@pytest.mark.parametrize("req", ["harmful", "unharmful"])
@pytest.mark.parametrize("resp", ["harmful", "unharmful", None])
@pytest.mark.parametrize("text", [GOOD, BOTH_WRONG, REQ_ONLY, RESP_ONLY, _answer("harmful", "None"),
                                  _answer("unharmful", None, key=False), "no answer", ""])
def test_sampling_correct_iff_reward_gives_full_safety(text, req, resp):
    """Over every label combination: a formatted answer is right for the judge iff its safety term is 1."""
    right = judge_answer(text, req, resp).correct
    parts = score(text, req, resp, length=10)
    assert right is (parts.request == 1.0 and parts.response == 1.0)
    if parts.format:
        assert right is (parts.safety == 1.0)


def test_last_result_block_counts_not_a_draft_inside_think():
    """A rollout that drafts a <result> inside <think> and then gives a different final one."""
    text = ("<think>\nFirst guess:\n<result>\nRequest: unharmful\nResponse: None\n</result>\nNo, look again.\n"
            "</think>\n<result>\nRequest: harmful\nResponse: None\n</result>")
    assert (parse_answers(text).request, parse_answers(text).response) == ("harmful", None)
    assert judge_labels(text, "harmful", None).correct
    assert score(text, "harmful", None, length=30).safety == 1.0
    assert score(text, "unharmful", None, length=30).request == 0.0


# ---- settings


def test_plain_safety_when_not_length_aware():
    s = RewardSettings(length_aware=False, max_length=100)
    assert score(REQ_ONLY, "harmful", "unharmful", length=3, settings=s).overall == 0.5
    assert s.bounds == (0.0, 1.0)


def test_length_estimated_from_characters_without_token_count():
    parts = score(GOOD * 40, "harmful", "unharmful", settings=RewardSettings(max_length=1000, chars_per_token=4))
    assert parts.l_norm == pytest.approx(len(GOOD * 40) / 4 / 1000)


def test_trainer_length_replaces_the_recipe_value():
    d = {"max_length": 2048}
    assert settings_from(d, {"max_response_length": 512}).max_length == 512
    assert settings_from(d, {"max_completion_length": 300}).max_length == 300
    assert settings_from(d, {"max_completion_length": None, "unrelated": 1}).max_length == 2048


def test_recipe_section_maps_onto_the_settings():
    cfg = TrainRLConfig(max_completion_length=777, reward={"beta": 0.5, "format": "fullmatch",
                                                           "absent_response": "none", "length_floor": 0.2})
    s = reward_settings(cfg)
    assert (s.max_length, s.beta, s.format, s.absent_response, s.length_floor) == (777, 0.5, "fullmatch", "none", 0.2)


def test_bad_settings_and_labels_are_refused():
    with pytest.raises(ValueError, match="beta"):
        RewardSettings(beta=0)
    with pytest.raises(ValueError, match="length_floor"):
        RewardSettings(beta=0.1, length_floor=0.2)
    with pytest.raises(ValueError, match="absent_response"):
        RewardSettings(absent_response="maybe")
    with pytest.raises(ValueError, match="gold request"):
        score(GOOD, "maybe", None)
    with pytest.raises(ValueError, match="no readable request"):
        labels_from_answer("<result>\nResponse: None\n</result>")


def test_trl_reward_func_reads_label_columns_and_logs_terms():
    logged = {}
    fn = trl_reward_func(S)
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": BOTH_WRONG}]]
    out = fn(completions=completions, request_label=["harmful"] * 2, response_label=["unharmful"] * 2,
             completion_ids=[[1] * 40, [1] * 20], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == pytest.approx([0.0, -1 / 0.2**2])
    assert logged["guard/format"] == 1.0 and logged["guard/safety"] == 0.5


def test_unknown_response_label_on_a_row_with_a_response_is_not_judged():
    """Ingest pool: a row with a response whose gold label is unknown. The response answer is not judged;
    without a response the policy applies."""
    text = _answer("unharmful", "harmful")
    assert judge_answer(text, "unharmful", None, has_response=True).correct
    assert not judge_answer(text, "unharmful", None, has_response=False).correct
    assert not judge_answer(text, "unharmful", None).correct  # not said: a null label means no response
    assert not judge_answer(text, None, None, has_response=True).correct  # nothing to judge
