"""The guard reward: format indicator, label terms, length-aware shaping, and the generated trainer files."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from corpus.guard_format import sft_target
from corpus.training.rewards import (
    RewardSettings,
    easyr1_reward_source,
    labels_from_answer,
    safety_reward,
    score,
    swift_reward_plugin_source,
    trl_reward_func,
    write_easyr1_reward,
    write_swift_reward_plugin,
)

GOOD = sft_target("The request asks how to hurt someone.", "harmful", "unharmful")
BOTH_WRONG = sft_target("x", "unharmful", "harmful")
REQ_ONLY = sft_target("x", "harmful", "harmful")
RESP_ONLY = sft_target("x", "unharmful", "unharmful")
NO_FORMAT = "Request: harmful\nResponse: unharmful"  # right labels, no <think>/<result>
NO_THINK = "<result>\nRequest: harmful\nResponse: unharmful\n</result>"
S = RewardSettings(max_length=100, beta=1.0, length_floor=0.01)
ECO = RewardSettings(max_length=100, beta=1 / 6, length_floor=0.01)


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
]


@pytest.mark.parametrize(("name", "text", "length", "settings", "safety", "overall"), CASES, ids=[c[0] for c in CASES])
def test_reward_table(name, text, length, settings, safety, overall):
    parts = score(text, "harmful", "unharmful", length=length, settings=settings)
    assert parts.safety == pytest.approx(safety)
    assert parts.overall == pytest.approx(overall)
    assert safety_reward(text, "harmful", "unharmful") == pytest.approx(safety)


def test_no_response_sample_needs_response_none():
    right = sft_target("r", "unharmful", None)
    wrong = sft_target("r", "unharmful", "harmful")
    assert safety_reward(right, "unharmful", None) == 1.0
    assert safety_reward(wrong, "unharmful", None) == 0.5


def test_plain_safety_when_not_length_aware():
    s = RewardSettings(length_aware=False, max_length=100)
    assert score(REQ_ONLY, "harmful", "unharmful", length=3, settings=s).overall == 0.5


def test_length_estimated_from_characters_without_token_count():
    parts = score(BOTH_WRONG, "harmful", "unharmful", settings=RewardSettings(max_length=1000, chars_per_token=4))
    assert parts.l_norm == pytest.approx(len(BOTH_WRONG) / 4 / 1000)


def test_bad_settings_and_labels_are_refused():
    with pytest.raises(ValueError, match="beta"):
        RewardSettings(beta=0)
    with pytest.raises(ValueError, match="length_floor"):
        RewardSettings(beta=0.1, length_floor=0.2)
    with pytest.raises(ValueError, match="gold request"):
        score(GOOD, "maybe", None)


def test_trl_reward_func_reads_label_columns_and_logs_terms():
    logged = {}
    fn = trl_reward_func(S)
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": BOTH_WRONG}]]
    out = fn(completions=completions, request_label=["harmful"] * 2, response_label=["unharmful"] * 2,
             completion_ids=[[1] * 40, [1] * 20], log_metric=lambda k, v: logged.__setitem__(k, v))
    assert out == pytest.approx([0.0, -1 / 0.2**2])
    assert logged["guard/format"] == 1.0 and logged["guard/safety"] == 0.5


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_easyr1_file_calls_the_same_reward(tmp_path):
    path = write_easyr1_reward(tmp_path / "guard_reward.py", RewardSettings(beta=1 / 6))
    assert path.read_text() == easyr1_reward_source(RewardSettings(beta=1 / 6))
    mod = _load(path, "easyr1_guard_reward")
    answer = sft_target("", "harmful", None).split("</think>\n", 1)[1]
    assert labels_from_answer(answer) == ("harmful", None)
    items = [{"response": sft_target("r", "harmful", None), "response_length": 10, "ground_truth": answer},
             {"response": "nonsense", "response_length": 2048, "ground_truth": answer}]
    got = mod.compute_score(items, max_response_length=2048)
    assert [g["overall"] for g in got] == pytest.approx([0.0, -36.0])
    assert got[0]["format"] == 1.0 and got[1]["format"] == 0.0
    assert mod.compute_score(items[0])["overall"] == 0.0  # sequential reward type


def test_swift_plugin_registers_the_same_reward(tmp_path, monkeypatch):
    # ms-swift is not installed here: provide its two plugin names so the generated file can register itself
    swift, plugin = types.ModuleType("swift"), types.ModuleType("swift.plugin")
    plugin.ORM, plugin.orms = type("ORM", (), {}), {}
    monkeypatch.setitem(sys.modules, "swift", swift)
    monkeypatch.setitem(sys.modules, "swift.plugin", plugin)
    path = write_swift_reward_plugin(tmp_path / "plugin.py", RewardSettings(max_length=100))
    assert path.read_text() == swift_reward_plugin_source(RewardSettings(max_length=100))
    _load(path, "swift_guard_plugin")
    reward = plugin.orms["guard_safety"]()
    texts = [GOOD, BOTH_WRONG]
    by_cols = reward(texts, request_label=["harmful"] * 2, response_label=["unharmful"] * 2)
    answer = sft_target("", "harmful", "unharmful").split("</think>\n", 1)[1]
    by_solution = reward(texts, solution=[answer] * 2)
    expected = [score(t, "harmful", "unharmful", settings=RewardSettings(max_length=100)).overall for t in texts]
    assert by_cols == pytest.approx(expected) and by_solution == pytest.approx(expected)
