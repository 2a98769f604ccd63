"""The guard RL reward, in one place: TRL calls it directly; the files exported for EasyR1, verl and ms-swift
(and a stand-alone TRL file) are generated from this module and import nothing from the toolkit.

Safety reward (design §2)::

    r_safety = I_format × (0.5·r_request + 0.5·r_response)

- ``I_format`` = ``corpus.guard_format.format_indicator(text, settings.format)``: ``search`` (default, the
  released GuardReasoner-family reading: ``<think>…</think>`` then ``<result>…</result>`` occurs in the
  output; a preamble before ``<think>`` still counts) or ``fullmatch`` (the whole output is the two blocks).
- ``r_request`` / ``r_response`` = the two halves of ``corpus.guard_format.judge_labels``, the rule the
  rejection-sampling judge uses too. On a sample without a response the ``absent_response`` policy
  decides (default ``none_or_missing``: ``Response: None`` and a missing ``Response:`` key count alike).

Length-aware reward, as we read the poorly printed formula of the paper::

    r = (r_safety − 1) / min(l_norm, β)²        l_norm = max(length / max_length, length_floor)

- ``length`` is the completion's length in tokens (TRL gives the completion ids, EasyR1
  ``response_length``, ms-swift a tokenizer); where no token count is given (verl) it is estimated as
  characters / ``chars_per_token``. ``max_length`` is the trainer's completion budget where the trainer
  passes it (EasyR1 / verl ``max_response_length``, ms-swift ``max_completion_length``), else the recipe's.
- A fully right answer scores 0 whatever its length; anything else is negative, and the shorter the output
  the larger the penalty, down to ``l_norm = β``: past β more tokens gain nothing (β = 1: the main model;
  β = 1/6: the Eco variant).
- The numerator lies in ``[−1, 0]`` and ``l_norm`` is floored at ``length_floor`` (default 0.1, at most β),
  so the reward is bounded: it lies in ``[−1 / length_floor², 0]`` = ``[−100, 0]`` by default (a floor of
  0.01 let a short unformatted output score −10,000 and dominate a GRPO group's advantage).
- ``length_aware=False`` gives plain ``r_safety`` in ``[0, 1]``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from corpus import guard_format
from corpus.guard_format import (
    ABSENT_RESPONSE_POLICIES,
    DEFAULT_ABSENT_RESPONSE,
    DEFAULT_FORMAT,
    FORMAT_MODES,
    format_indicator,
    gold_label,
    judge_labels,
    parse_answers,
)

# <portable> ---- standard library only (with the guard_format portable section): copied verbatim into the
# exported reward files, see ``reward_file_source``


@dataclass(frozen=True)
class RewardSettings:
    """Parameters of the reward (the recipe's ``train_rl.reward`` section maps onto these)."""

    length_aware: bool = True
    beta: float = 1.0
    length_floor: float = 0.1
    max_length: int = 2048
    chars_per_token: float = 4.0
    format: str = DEFAULT_FORMAT
    absent_response: str = DEFAULT_ABSENT_RESPONSE

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise ValueError(f"reward beta must be in (0, 1], got {self.beta}")
        if not 0 < self.length_floor <= self.beta:
            raise ValueError(f"reward length_floor must be in (0, beta={self.beta}], got {self.length_floor}")
        if self.max_length < 1:
            raise ValueError(f"reward max_length must be >= 1, got {self.max_length}")
        if self.chars_per_token <= 0:
            raise ValueError(f"reward chars_per_token must be > 0, got {self.chars_per_token}")
        if self.format not in FORMAT_MODES:
            raise ValueError(f"reward format must be one of {list(FORMAT_MODES)}, got {self.format!r}")
        if self.absent_response not in ABSENT_RESPONSE_POLICIES:
            raise ValueError(f"reward absent_response must be one of {list(ABSENT_RESPONSE_POLICIES)}, "
                             f"got {self.absent_response!r}")

    @property
    def bounds(self) -> tuple[float, float]:
        """``(lowest, highest)`` reward: ``(−1/length_floor², 0)`` length-aware, ``(0, 1)`` plain."""
        return (-1.0 / self.length_floor ** 2, 0.0) if self.length_aware else (0.0, 1.0)


#: the trainers' names for the completion budget, read in place of ``max_length`` where a trainer passes one
TRAINER_LENGTH_KEYS = ("max_response_length", "max_completion_length")


def settings_from(defaults: dict[str, Any], overrides: dict[str, Any] | None = None) -> RewardSettings:
    """Settings from ``defaults`` updated by ``overrides``: setting names, or a trainer's completion budget
    (``max_response_length``, ``max_completion_length``) for ``max_length``; other keys are ignored."""
    names = {f.name for f in fields(RewardSettings)}
    values = dict(defaults)
    for key, value in (overrides or {}).items():
        if key in names:
            values[key] = value
        elif key in TRAINER_LENGTH_KEYS and value:
            values["max_length"] = int(value)
    return RewardSettings(**values)


@dataclass(frozen=True)
class RewardParts:
    """One scored completion: the overall reward and the terms it came from."""

    overall: float
    safety: float
    format: float
    request: float
    response: float
    l_norm: float

    def as_dict(self) -> dict[str, float]:
        return {"overall": self.overall, "safety": self.safety, "format": self.format, "request": self.request,
                "response": self.response, "l_norm": self.l_norm}


def label_terms(text: str, request_label: str, response_label: str | None,
                absent_response: str = DEFAULT_ABSENT_RESPONSE) -> tuple[float, float]:
    """``(r_request, r_response)`` for one output against the gold labels (``judge_labels``)."""
    if gold_label(request_label, "request") is None:
        raise ValueError("gold request label is missing")
    v = judge_labels(text, request_label, response_label, absent_response)
    return float(v.request), float(v.response)


def safety_reward(text: str, request_label: str, response_label: str | None,
                  settings: RewardSettings | None = None) -> float:
    """``r_safety = I_format × (0.5·r_request + 0.5·r_response)``."""
    s = settings or RewardSettings()
    if not format_indicator(text, s.format):
        return 0.0
    r_req, r_resp = label_terms(text, request_label, response_label, s.absent_response)
    return 0.5 * r_req + 0.5 * r_resp


def normalised_length(length: float, settings: RewardSettings) -> float:
    """``l_norm = max(length / max_length, length_floor)``."""
    return max(float(length) / settings.max_length, settings.length_floor)


def length_aware(r_safety: float, l_norm: float, beta: float) -> float:
    """``(r_safety − 1) / min(l_norm, β)²``."""
    return (r_safety - 1.0) / min(l_norm, beta) ** 2


def score(
    text: str,
    request_label: str,
    response_label: str | None,
    *,
    length: float | None = None,
    settings: RewardSettings | None = None,
) -> RewardParts:
    """Score one completion; ``length`` in tokens (None: estimated from characters)."""
    s = settings or RewardSettings()
    text = text or ""
    fmt = float(format_indicator(text, s.format))
    r_req, r_resp = label_terms(text, request_label, response_label, s.absent_response)
    safety = fmt * (0.5 * r_req + 0.5 * r_resp)
    n = len(text) / s.chars_per_token if length is None else float(length)
    l_norm = normalised_length(n, s)
    overall = length_aware(safety, l_norm, s.beta) if s.length_aware else safety
    return RewardParts(overall, safety, fmt, r_req, r_resp, l_norm)


def labels_from_answer(answer: str) -> tuple[str, str | None]:
    """Gold labels from an answer string (the ``<result>`` block the RL exports carry as ground truth)."""
    got = parse_answers(answer)
    if got.request is None:
        raise ValueError(f"ground truth has no readable request label: {answer[:200]!r}")
    return got.request, got.response


def completion_text(completion: Any) -> str:
    """Text of a completion: a string, or a conversational list of messages (content str or blocks)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for msg in completion:
        content = msg.get("content") if isinstance(msg, dict) else msg
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    return "".join(parts)


# ---- the trainers' calling conventions (each exported file binds one of these to its written settings)


def trl_scores(settings: RewardSettings, completions: Sequence[Any], request_label: Sequence[str],
               response_label: Sequence[str | None],
               completion_ids: Sequence[Sequence[int]] | None = None) -> list[RewardParts]:
    """TRL GRPO: label columns, token counts from ``completion_ids``."""
    return [score(completion_text(c), req, resp,
                  length=len(completion_ids[i]) if completion_ids is not None else None, settings=settings)
            for i, (c, req, resp) in enumerate(zip(completions, request_label, response_label, strict=True))]


def easyr1_scores(settings: RewardSettings, reward_inputs: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """EasyR1 (batch reward type): ``response``, ``response_length``, ``ground_truth`` (the ``<result>`` block)."""
    out = []
    for item in reward_inputs:
        request, response = labels_from_answer(item["ground_truth"])
        out.append(score(item["response"], request, response, length=item.get("response_length"),
                         settings=settings).as_dict())
    return out


def verl_score(settings: RewardSettings, solution_str: str, ground_truth: str,
               extra_info: dict[str, Any] | None = None) -> dict[str, float]:
    """verl: the decoded response and ``reward_model.ground_truth``; ``score`` is what verl optimises.

    verl passes no token count: ``extra_info["response_length"]`` is used when present, else characters."""
    request, response = labels_from_answer(ground_truth)
    length = (extra_info or {}).get("response_length")
    parts = score(solution_str, request, response, length=length, settings=settings)
    return {"score": parts.overall, **parts.as_dict()}


def swift_scores(settings: RewardSettings, completions: Sequence[Any], request_label: Sequence[str] | None = None,
                 response_label: Sequence[str | None] | None = None, solution: Sequence[str] | None = None,
                 tokenizer: Any = None) -> list[float]:
    """ms-swift GRPO: label columns (or ``solution``); token counts from ms-swift's tokenizer when it gives one."""
    encode = getattr(getattr(tokenizer, "tokenizer", tokenizer), "encode", None)
    rewards = []
    for i, completion in enumerate(completions):
        text = completion_text(completion)
        if request_label is not None:
            request, response = request_label[i], (response_label or [None] * len(completions))[i]
        else:
            request, response = labels_from_answer(solution[i])
        length = len(encode(text, add_special_tokens=False)) if encode is not None else None
        rewards.append(score(text, request, response, length=length, settings=settings).overall)
    return rewards
# </portable>


def trl_reward_func(settings: RewardSettings | None = None) -> Callable[..., list[float]]:
    """A TRL ``GRPOTrainer`` reward function reading the ``request_label``/``response_label`` columns.

    Logs the mean format, request, response and safety terms through TRL's ``log_metric`` hook.
    """
    s = settings or RewardSettings()

    def guard_safety(completions: Sequence[Any], request_label: Sequence[str], response_label: Sequence[str | None],
                     completion_ids: Sequence[Sequence[int]] | None = None, log_metric=None,
                     **_: Any) -> list[float]:
        parts = trl_scores(s, completions, request_label, response_label, completion_ids)
        if log_metric is not None and parts:
            for name in ("safety", "format", "request", "response", "l_norm"):
                log_metric(f"guard/{name}", sum(getattr(p, name) for p in parts) / len(parts))
        return [p.overall for p in parts]

    return guard_safety


# ---------------------------------------------------------------- generated files for other trainers

_PORTABLE_BEGIN = "# <portable>"
_PORTABLE_END = "# </portable>"
#: the standard-library names the two portable sections use
_FILE_IMPORTS = ("import re\nfrom collections.abc import Sequence\nfrom dataclasses import dataclass, field, fields\n"
                 "from typing import Any, Literal\n")


def portable_section(module: Any) -> str:
    """The text between ``# <portable>`` and ``# </portable>`` of a module's source file (the marker lines
    and the comment block right after the opening marker left out)."""
    text = Path(module.__file__).read_text(encoding="utf-8")
    begin, end = text.find(_PORTABLE_BEGIN), text.find(_PORTABLE_END)
    if begin < 0 or end < begin:
        raise RuntimeError(f"{module.__name__} has no portable section")
    lines = text[begin:end].split("\n")[1:]
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n"


_ENTRYPOINTS = {
    "trl": '''
def guard_reward(completions, request_label, response_label, completion_ids=None, **kwargs):
    """TRL GRPOTrainer reward function (``reward_funcs=[guard_reward]``): the rl-export's label columns,
    lengths from ``completion_ids``."""
    return [p.overall for p in trl_scores(SETTINGS, completions, request_label, response_label, completion_ids)]
''',
    "easyr1": '''
def compute_score(reward_inputs, **kwargs):
    """EasyR1 reward (``worker.reward.reward_function=<this file>:compute_score``, batch or sequential type).

    ``kwargs`` come from ``worker.reward.reward_function_kwargs``: setting names, or ``max_response_length``
    (the trainer's ``data.max_response_length``) for the completion budget. One dict per input: ``overall``
    (the reward) and the terms it came from."""
    settings = settings_from(DEFAULTS, kwargs)
    if isinstance(reward_inputs, dict):  # sequential reward type: one input
        return easyr1_scores(settings, [reward_inputs])[0]
    return easyr1_scores(settings, reward_inputs)
''',
    "verl": '''
def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    """verl custom reward (``custom_reward_function.path=<this file>``, ``name=compute_score``).

    ``kwargs`` come from ``custom_reward_function.reward_kwargs``: setting names, or ``max_response_length``
    (pass ``${data.max_response_length}``). Returns a dict: ``score`` (the reward) and the terms."""
    return verl_score(settings_from(DEFAULTS, kwargs), solution_str, ground_truth, extra_info)
''',
    "swift": '''
try:
    from swift.plugin import ORM, orms
except ImportError:  # newer ms-swift layout
    from swift.rewards import ORM, orms


class GuardSafetyReward(ORM):
    """ms-swift ORM (``--external_plugins <this file> --reward_funcs guard_safety``).

    ms-swift passes the ``__init__`` parameters it knows from its arguments: ``max_completion_length`` (the
    completion budget) and ``tokenizer`` (token counts); without them the written settings and a character
    estimate apply."""

    def __init__(self, max_completion_length=None, tokenizer=None, args=None, **kwargs):
        budget = max_completion_length or getattr(args, "max_completion_length", None)
        self.settings = settings_from(DEFAULTS, {"max_completion_length": budget})
        self.tokenizer = tokenizer

    def __call__(self, completions, request_label=None, response_label=None, solution=None, **kwargs):
        return swift_scores(self.settings, completions, request_label, response_label, solution, self.tokenizer)


orms[NAME] = GuardSafetyReward
''',
}
REWARD_FILES: dict[str, str] = {"trl": "trl/guard_reward.py", "easyr1": "easyr1/guard_reward.py",
                                "verl": "verl/guard_reward.py", "swift": "swift/guard_reward_plugin.py"}


def reward_file_source(trainer: str, settings: RewardSettings | None = None, name: str = "guard_safety") -> str:
    """Source of the stand-alone reward file for ``trainer`` (trl, easyr1, verl, swift).

    Standard library only: the guard parser (``corpus.guard_format``'s portable section), this module's
    portable section, the settings as ``DEFAULTS``, and the trainer's entry point. Nothing is imported from
    the toolkit, so the file runs wherever the trainer runs."""
    if trainer not in _ENTRYPOINTS:
        raise ValueError(f"unknown trainer {trainer!r}; choose from {sorted(_ENTRYPOINTS)}")
    d = asdict(settings or RewardSettings())
    return (
        f'"""Guard reward for {trainer}: r = (r_safety - 1) / min(l_norm, beta)^2, written by corpus rl-export.\n\n'
        "Generated from corpus.training.rewards and corpus.guard_format (do not edit: change the recipe's\n"
        "train_rl.reward section and export again). Standard library only, Python 3.10+.\n"
        f"Settings: {json.dumps(d, sort_keys=True)}\n"
        '"""\n\n' + _FILE_IMPORTS + "\n\n"
        "# ---------------------------------------------------------------- from corpus/guard_format.py\n\n"
        + portable_section(guard_format) + "\n\n"
        "# ---------------------------------------------------------------- from corpus/training/rewards.py\n\n"
        + portable_section(sys.modules[__name__]) + "\n\n"
        "# ---------------------------------------------------------------- settings and entry point\n\n"
        f"DEFAULTS = {d!r}\nSETTINGS = RewardSettings(**DEFAULTS)\nNAME = {name!r}\n\n"
        + _ENTRYPOINTS[trainer]
    )


def easyr1_reward_source(settings: RewardSettings | None = None) -> str:
    """Source of the EasyR1 reward file (see ``reward_file_source``)."""
    return reward_file_source("easyr1", settings)


def swift_reward_plugin_source(settings: RewardSettings | None = None, name: str = "guard_safety") -> str:
    """Source of the ms-swift reward plugin (see ``reward_file_source``)."""
    return reward_file_source("swift", settings, name)


def verl_reward_source(settings: RewardSettings | None = None) -> str:
    """Source of the verl reward file (see ``reward_file_source``)."""
    return reward_file_source("verl", settings)


def trl_reward_source(settings: RewardSettings | None = None) -> str:
    """Source of the stand-alone TRL reward file (see ``reward_file_source``)."""
    return reward_file_source("trl", settings)


def write_reward_file(trainer: str, path: Path | str, settings: RewardSettings | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(reward_file_source(trainer, settings), encoding="utf-8")
    return p


def write_easyr1_reward(path: Path | str, settings: RewardSettings | None = None) -> Path:
    return write_reward_file("easyr1", path, settings)


def write_swift_reward_plugin(path: Path | str, settings: RewardSettings | None = None) -> Path:
    return write_reward_file("swift", path, settings)
