"""The exported reward files: one stand-alone file per trainer, standard library only, same scores as the package.

Each file is copied into an empty temporary directory and loaded in a separate ``python -I -S`` process
(no site-packages, no current directory, no PYTHONPATH: ``sys.path`` holds only the standard library), the
way the trainers load a reward file by path. Its scores over a grid of outputs x labels x lengths must equal
``corpus.training.rewards.score``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corpus.guard_format import result_block, sft_target
from corpus.training.rewards import REWARD_FILES, RewardSettings, reward_file_source, score

OUTPUTS = [
    sft_target("The request asks for a weapon.", "harmful", "unharmful"),
    sft_target("x", "unharmful", None),
    sft_target("x", "harmful", "harmful"),
    "Preamble first.\n" + sft_target("y", "harmful", None),
    "<think>\ndraft\n<result>\nRequest: unharmful\nResponse: None\n</result>\n</think>\n"
    "<result>\nRequest: harmful\nResponse: None\n</result>",
    "<think>\nz\n</think>\n<result>\nRequest: harmful\n</result>",  # no Response key
    "<think>\nz\n</think>\n<result>\nRequest: harmful\nResponse: ambiguous\n</result>",
    "Request: harmful\nResponse: unharmful",
    "",
]
LABELS = [("harmful", None), ("unharmful", None), ("harmful", "unharmful"), ("unharmful", "harmful")]
LENGTHS = [0, 3, 50, 300, 2048, 5000]
SETTINGS = {
    "default": RewardSettings(),
    "eco-fullmatch-strict": RewardSettings(beta=1 / 6, length_floor=0.05, max_length=512, format="fullmatch",
                                           absent_response="none"),
    "plain-ignore": RewardSettings(length_aware=False, absent_response="ignore"),
}

STDLIB_OR_TRAINER = {"re", "collections", "dataclasses", "typing", "swift"}

DRIVER = r'''
import importlib.util, json, sys, types

assert not any("site-packages" in p or "dist-packages" in p for p in sys.path), sys.path
try:
    import corpus  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the toolkit is importable: the test would not prove the file is stand-alone")

trainer, path = sys.argv[1], sys.argv[2]
grid = json.load(sys.stdin)
if trainer == "swift":  # ms-swift is not installed: give the plugin its two names
    plugin = types.ModuleType("swift.plugin")
    plugin.ORM, plugin.orms = type("ORM", (), {}), {}
    sys.modules["swift"], sys.modules["swift.plugin"] = types.ModuleType("swift"), plugin
spec = importlib.util.spec_from_file_location("guard_reward_under_test", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)  # not registered in sys.modules, as verl loads it


class Tok:  # counts whitespace-separated words as tokens
    def encode(self, text, add_special_tokens=False):
        return text.split()


out = []
for case in grid["cases"]:
    text, req, resp, answer, n, budget = (case[k] for k in ("text", "req", "resp", "answer", "length", "budget"))
    kw = {} if budget is None else {"max_response_length": budget}
    if trainer == "easyr1":
        got = mod.compute_score([{"response": text, "response_length": n, "ground_truth": answer}], **kw)[0]["overall"]
    elif trainer == "verl":
        got = mod.compute_score("guardreasoner_vl", text, answer, {"response_length": n}, **kw)["score"]
    elif trainer == "swift":
        orm = plugin.orms["guard_safety"](max_completion_length=budget, tokenizer=Tok())
        got = orm([text], request_label=[req], response_label=[resp])[0]
        assert got == orm([text], solution=[answer])[0]
    else:
        ids = [[0] * n]
        got = mod.guard_reward([[{"role": "assistant", "content": text}]], [req], [resp], completion_ids=ids)[0]
    out.append(got)
json.dump(out, sys.stdout)
'''


def _grid(trainer: str) -> list[dict]:
    budgets = [None] if trainer == "trl" else [None, 300]
    return [{"text": t, "req": req, "resp": resp, "answer": result_block(req, resp), "length": n, "budget": b}
            for t in OUTPUTS for req, resp in LABELS for n in LENGTHS for b in budgets]


def _expected(case: dict, settings: RewardSettings, trainer: str) -> float:
    if case["budget"] is not None:
        settings = RewardSettings(**{**settings.__dict__, "max_length": case["budget"]})
    length = len(case["text"].split()) if trainer == "swift" else case["length"]
    return score(case["text"], case["req"], case["resp"], length=length, settings=settings).overall


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("trainer", sorted(REWARD_FILES))
def test_exported_file_runs_alone_and_scores_like_the_package(tmp_path, trainer, setting):
    settings = SETTINGS[setting]
    src = tmp_path / "written" / "guard_reward.py"
    src.parent.mkdir()
    src.write_text(reward_file_source(trainer, settings), encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    copy = shutil.copy(src, empty / Path(REWARD_FILES[trainer]).name)
    driver = tmp_path / "driver" / "drive.py"
    driver.parent.mkdir()
    driver.write_text(DRIVER, encoding="utf-8")
    grid = _grid(trainer)
    proc = subprocess.run([sys.executable, "-I", "-S", str(driver), trainer, str(copy)], cwd=empty,
                          input=json.dumps({"cases": grid}), capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    expected = [_expected(c, settings, trainer) for c in grid]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    distinct = {round(g, 6) for g in got}
    assert distinct == {0.0, 0.5, 1.0} if not settings.length_aware else len(distinct) >= 3  # the grid varies


def test_files_import_nothing_from_the_toolkit_and_carry_the_settings():
    s = RewardSettings(beta=0.5, max_length=1234, format="fullmatch")
    for trainer in REWARD_FILES:
        text = reward_file_source(trainer, s)
        imports = [line.strip() for line in text.splitlines() if line.lstrip().startswith(("import ", "from "))]
        assert imports and all(i.split()[1].split(".")[0] in STDLIB_OR_TRAINER for i in imports), imports
        assert "sys.path" not in text
        assert "'max_length': 1234" in text and "'format': 'fullmatch'" in text and "'beta': 0.5" in text
        compile(text, REWARD_FILES[trainer], "exec")
    verl = reward_file_source("verl", s)
    assert "def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):" in verl
