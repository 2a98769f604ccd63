"""The guard RL reward, in one place: TRL calls it directly, the EasyR1 and ms-swift files import it.

Safety reward (design §2)::

    r_safety = I_format × (0.5·r_request + 0.5·r_response)

- ``I_format`` = ``corpus.guard_format.has_guard_format(text)``: the whole output is ``<think>…</think>``
  then ``<result>…</result>``.
- ``r_request`` / ``r_response`` = 1 when the label read by ``corpus.guard_format.parse_answers`` equals the
  gold label, else 0. The gold response label is None for a sample without a response: the guard must then
  answer ``Response: None``. ``parse_answers`` also gives None for an unreadable value, so on a
  no-response sample an unreadable response value counts as right (the request half still has to be right).

Length-aware reward, as we read the poorly printed formula of the paper::

    r = (r_safety − 1) / min(l_norm, β)²        l_norm = max(length / max_length, length_floor)

- ``length`` is the completion's length in tokens (the reasoning plus the short ``<result>`` block; TRL
  gives the completion ids, EasyR1 ``response_length``); where no token count is given (ms-swift) it is
  estimated as characters / ``chars_per_token``.
- A fully right, well-formed answer scores 0 whatever its length; anything else is negative, and the
  shorter the output the larger the penalty, down to ``l_norm = β``: past β more tokens gain nothing
  (β = 1: the whole budget, the main model; β = 1/6: the Eco variant, which stops paying for reasoning
  beyond a sixth of the budget).
- ``l_norm`` is floored at ``length_floor`` (default 0.01) so an empty output gives a finite penalty,
  at most ``1 / length_floor²``; ``length_floor`` must not exceed β.
- ``length_aware=False`` gives plain ``r_safety``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from corpus.guard_format import HARM_LABELS, has_guard_format, parse_answers


@dataclass(frozen=True)
class RewardSettings:
    """Parameters of the reward (the recipe's ``train_rl.reward`` section maps onto these)."""

    length_aware: bool = True
    beta: float = 1.0
    length_floor: float = 0.01
    max_length: int = 2048
    chars_per_token: float = 4.0

    def __post_init__(self) -> None:
        if not 0 < self.beta <= 1:
            raise ValueError(f"reward beta must be in (0, 1], got {self.beta}")
        if not 0 < self.length_floor <= self.beta:
            raise ValueError(f"reward length_floor must be in (0, beta={self.beta}], got {self.length_floor}")
        if self.max_length < 1:
            raise ValueError(f"reward max_length must be >= 1, got {self.max_length}")
        if self.chars_per_token <= 0:
            raise ValueError(f"reward chars_per_token must be > 0, got {self.chars_per_token}")


@dataclass(frozen=True)
class RewardParts:
    """One scored completion: the overall reward and the terms it came from."""

    overall: float
    safety: float
    format: float
    request: float
    response: float
    l_norm: float


def _norm_label(value: str | None, what: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    v = str(value).strip().lower()
    if v not in HARM_LABELS:
        raise ValueError(f"gold {what} label must be one of {HARM_LABELS} or None, got {value!r}")
    return v


def label_terms(text: str, request_label: str, response_label: str | None) -> tuple[float, float]:
    """``(r_request, r_response)`` for one output against the gold labels."""
    gold_req = _norm_label(request_label, "request")
    if gold_req is None:
        raise ValueError("gold request label is missing")
    gold_resp = _norm_label(response_label, "response")
    got = parse_answers(text)
    return float(got.request == gold_req), float(got.response == gold_resp)


def safety_reward(text: str, request_label: str, response_label: str | None) -> float:
    """``r_safety = I_format × (0.5·r_request + 0.5·r_response)``."""
    if not has_guard_format(text):
        return 0.0
    r_req, r_resp = label_terms(text, request_label, response_label)
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
    fmt = float(has_guard_format(text))
    r_req, r_resp = label_terms(text, request_label, response_label)
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


def _completion_text(completion: Any) -> str:
    """Text of a TRL completion: a string, or a conversational list of messages (content str or blocks)."""
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


def trl_reward_func(settings: RewardSettings | None = None) -> Callable[..., list[float]]:
    """A TRL ``GRPOTrainer`` reward function reading the ``request_label``/``response_label`` columns.

    Logs the mean format, request, response and safety terms through TRL's ``log_metric`` hook.
    """
    s = settings or RewardSettings()

    def guard_safety(completions: Sequence[Any], request_label: Sequence[str], response_label: Sequence[str | None],
                     completion_ids: Sequence[Sequence[int]] | None = None, log_metric=None,
                     **_: Any) -> list[float]:
        parts = [
            score(_completion_text(c), req, resp,
                  length=len(completion_ids[i]) if completion_ids is not None else None, settings=s)
            for i, (c, req, resp) in enumerate(zip(completions, request_label, response_label, strict=True))
        ]
        if log_metric is not None and parts:
            for name in ("safety", "format", "request", "response", "l_norm"):
                log_metric(f"guard/{name}", sum(getattr(p, name) for p in parts) / len(parts))
        return [p.overall for p in parts]

    return guard_safety


# ---------------------------------------------------------------- generated files for other trainers

_IMPORT_BLOCK = '''\
try:
    from corpus.training.rewards import RewardSettings, labels_from_answer, score
except ImportError:  # the toolkit is not installed here: use the copy this file was generated from
    import sys

    sys.path.insert(0, {root!r})
    try:
        from corpus.training.rewards import RewardSettings, labels_from_answer, score
    except ImportError as exc:
        raise ImportError(
            "this reward file calls corpus.training.rewards: install the toolkit "
            "(pip install guardreasoner-corpus) in the trainer's environment"
        ) from exc
'''


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _defaults(settings: RewardSettings | None) -> dict[str, Any]:
    return asdict(settings or RewardSettings())


def easyr1_reward_source(settings: RewardSettings | None = None) -> str:
    """Source of an EasyR1 reward file (``worker.reward.reward_function=<file>:compute_score``, batch type).

    ``compute_score(reward_inputs, **kwargs)`` takes EasyR1's list of dicts (``response``, ``response_length``,
    ``ground_truth`` = the ``<result>`` block) and returns one dict per input: ``overall`` plus the terms.
    Reward settings can be overridden with ``worker.reward.reward_function_kwargs`` (``max_response_length``
    is accepted for ``max_length``).
    """
    d = _defaults(settings)
    return (
        '"""EasyR1 reward for the guard task (generated by corpus.training.rewards; edit the settings there)."""\n\n'
        + _IMPORT_BLOCK.format(root=_package_root())
        + f"\nDEFAULTS = {d!r}\n\n\n"
        + textwrap.dedent('''\
            def compute_score(reward_inputs, **overrides):
                """One dict per input: ``overall`` and the terms it came from."""
                if isinstance(reward_inputs, dict):  # sequential reward type: one input
                    return compute_score([reward_inputs], **overrides)[0]
                if "max_response_length" in overrides:  # EasyR1's name for the completion budget
                    overrides["max_length"] = overrides.pop("max_response_length")
                settings = RewardSettings(**{**DEFAULTS, **overrides})
                out = []
                for item in reward_inputs:
                    request, response = labels_from_answer(item["ground_truth"])
                    parts = score(item["response"], request, response, length=item.get("response_length"),
                                  settings=settings)
                    out.append({"overall": parts.overall, "safety": parts.safety, "format": parts.format,
                                "request": parts.request, "response": parts.response, "l_norm": parts.l_norm})
                return out
            ''')
    )


def swift_reward_plugin_source(settings: RewardSettings | None = None, name: str = "guard_safety") -> str:
    """Source of an ms-swift reward plugin (``--external_plugins <file> --reward_funcs guard_safety``).

    Reads the dataset's ``request_label``/``response_label`` columns (or parses ``solution``). ms-swift hands
    the plugin strings only, so the length is estimated from characters (``chars_per_token``).
    """
    d = _defaults(settings)
    return (
        '"""ms-swift GRPO reward plugin for the guard task (generated by corpus.training.rewards)."""\n\n'
        + _IMPORT_BLOCK.format(root=_package_root())
        + textwrap.dedent('''
            try:
                from swift.plugin import ORM, orms
            except ImportError:  # newer ms-swift layout
                from swift.rewards import ORM, orms
            ''')
        + f"\nDEFAULTS = {d!r}\nNAME = {name!r}\n\n\n"
        + textwrap.dedent('''\
            class GuardSafetyReward(ORM):
                """r = (r_safety - 1) / min(l_norm, beta)^2 (see corpus.training.rewards)."""

                def __init__(self, *args, **kwargs):
                    self.settings = RewardSettings(**DEFAULTS)

                def __call__(self, completions, request_label=None, response_label=None, solution=None, **kwargs):
                    rewards = []
                    for i, text in enumerate(completions):
                        if request_label is not None:
                            request, response = request_label[i], (response_label or [None] * len(completions))[i]
                        else:
                            request, response = labels_from_answer(solution[i])
                        rewards.append(score(text, request, response, settings=self.settings).overall)
                    return rewards


            orms[NAME] = GuardSafetyReward
            ''')
    )


def write_easyr1_reward(path: Path | str, settings: RewardSettings | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(easyr1_reward_source(settings), encoding="utf-8")
    return p


def write_swift_reward_plugin(path: Path | str, settings: RewardSettings | None = None) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(swift_reward_plugin_source(settings), encoding="utf-8")
    return p

