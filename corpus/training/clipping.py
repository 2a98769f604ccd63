"""Dynamic clipping: the PPO/GRPO clip range as a function of (step, total steps), set on the trainer each step.

Schedules (design §2; the paper's formula is poorly printed, this is our reading)::

    product  B_s = ε · ∏_{i=1..s} (S − i) / S      (paper, default)
    linear   B_s = ε · (S − s) / S
    constant B_s = ε

The step unit is configurable (``per``):

- ``rollout`` (default, the paper's trainer, an EasyR1 fork): ``s`` counts rollout batches already taken and
  ``S`` the rollout batches of the run; every policy update on one rollout batch uses the same range. With
  ``k`` updates per rollout batch, ``s = ⌊global_step / k⌋`` and ``S = ⌈max_steps / k⌉``.
- ``update``: ``s`` is the number of optimizer steps already taken (``state.global_step``), ``S`` the total
  (``state.max_steps``); with two updates per rollout the product form then collapses twice as fast (ε at 10%
  of a 234-update run: 0.059 per update instead of 0.112 per rollout).

The first update clips at ε, and the last at a positive value (``s = S − 1``), so no update is made with a
zero clip range. The product form shrinks fast
(roughly ε·exp(−s²/2S)): wide exploration early, near-on-policy updates late. With an asymmetric range
(``epsilon_high``) both sides are scaled by the same factor.

The clip range only matters when the policy moves between the rollout and an update on it, i.e. when a
rollout batch feeds more than one optimizer step; otherwise the ratio is exactly 1 and the schedule would
silently do nothing. ``check_clipping_effective`` refuses such configurations, and loss kernels that fix the
range when they are built.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from corpus.training.clip_schedule import (  # noqa: F401  (re-exported: the schedule's public names)
    REPORT_POINTS,
    SCHEDULES,
    UNITS,
    Schedule,
    clip_range,
    constant_factor,
    linear_factor,
    product_factor,
    schedule_points,
    schedule_step,
    schedule_values,
    updates_per_rollout_of,
)

#: TRL loss types whose objective is the clipped ratio with epsilon_low / epsilon_high
CLIPPED_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")


class ClippingIneffective(ValueError):
    """The trainer configuration would make the clip range (and so the schedule) do nothing."""


def check_clipping_effective(args: Any, trainer: Any | None = None) -> None:
    """Refuse GRPO configurations where the clip range never acts (raise ClippingIneffective naming why).

    - a loss type without the clipped ratio (sapo, vespo, cispo);
    - a fused loss kernel that captures epsilon when built (``use_liger_loss`` of older TRL, or a
      ``liger_grpo_loss`` object on the trainer);
    - one policy update per rollout batch: TRL reuses a generation batch for
      ``steps_per_generation × num_iterations`` micro-steps; when ``gradient_accumulation_steps`` is a multiple
      of that, every update uses fresh samples, ``old_logps = logps`` and the ratio is exactly 1.
    """
    loss_type = getattr(args, "loss_type", "grpo")
    if loss_type not in CLIPPED_LOSS_TYPES:
        raise ClippingIneffective(
            f"loss_type={loss_type!r} does not use the clip range; dynamic clipping needs one of {CLIPPED_LOSS_TYPES}")
    if getattr(args, "use_liger_loss", False) or (trainer is not None and getattr(trainer, "liger_grpo_loss", None)):
        raise ClippingIneffective(
            "a fused GRPO loss kernel (liger) fixes epsilon when it is built, so a per-step clip range would be "
            "ignored; turn the fused loss off")
    gas = int(getattr(args, "gradient_accumulation_steps", 1))
    spg = int(getattr(args, "steps_per_generation", None) or gas)
    iters = int(getattr(args, "num_iterations", 1))
    if gas % (spg * iters) == 0:
        raise ClippingIneffective(
            f"one policy update per rollout batch (gradient_accumulation_steps={gas}, steps_per_generation={spg}, "
            f"num_iterations={iters}): the importance ratio is always 1 and clipping does nothing; use "
            "steps_per_generation > gradient_accumulation_steps (several updates per rollout) or num_iterations > 1")


class DynamicClipCallback(TrainerCallback):
    """Sets ``trainer.epsilon_low`` / ``epsilon_high`` from the schedule at the start of every optimizer step
    (the schedule advancing per rollout batch or per update, ``per``; updates per rollout from the trainer args).

    Attach with ``DynamicClipCallback.attach(trainer, ...)`` (it checks the configuration first). The range
    goes into the trainer's logged metrics as ``clip_range``; ``history`` keeps ``(step, range)`` pairs.
    """

    def __init__(self, trainer: Any, epsilon: float = 0.2, schedule: str | Schedule = "product",
                 epsilon_high: float | None = None, floor: float = 0.0, per: str = "rollout",
                 updates_per_rollout: float | None = None):
        if isinstance(schedule, str) and schedule not in SCHEDULES:
            raise ValueError(f"unknown clip schedule {schedule!r}; choose from {sorted(SCHEDULES)}")
        if epsilon <= 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon}")
        if per not in UNITS:
            raise ValueError(f"unknown clip step unit {per!r}; choose from {list(UNITS)}")
        self.trainer = trainer
        self.epsilon = epsilon
        self.high_ratio = (epsilon_high / epsilon) if epsilon_high is not None else 1.0
        self.schedule = schedule
        self.floor = floor
        self.per = per
        self.updates_per_rollout = (updates_per_rollout if updates_per_rollout is not None
                                    else updates_per_rollout_of(getattr(trainer, "args", None)))
        self.current = epsilon
        self.history: list[tuple[int, float]] = []

    @classmethod
    def attach(cls, trainer: Any, **kwargs: Any) -> DynamicClipCallback:
        check_clipping_effective(trainer.args, trainer)
        if not hasattr(trainer, "epsilon_low"):
            raise ClippingIneffective(f"{type(trainer).__name__} has no epsilon_low attribute to schedule")
        cb = cls(trainer, **kwargs)
        trainer.add_callback(cb)
        return cb

    def value(self, step: int, total: int) -> float:
        """The range at optimizer step ``step`` of ``total`` (converted to the schedule's unit)."""
        s, n = schedule_step(min(step, total), total, self.per, self.updates_per_rollout)
        return clip_range(min(s, n), n, self.epsilon, self.schedule, self.floor)

    def on_train_begin(self, args, state, control, **kwargs):
        self._set(state)

    def on_step_begin(self, args, state, control, **kwargs):
        self._set(state)

    def _set(self, state) -> None:
        b = self.value(state.global_step, state.max_steps)
        self.current = b
        self.trainer.epsilon_low = b
        self.trainer.epsilon_high = b * self.high_ratio
        if not self.history or self.history[-1][0] != state.global_step:
            self.history.append((state.global_step, b))
            metrics = getattr(self.trainer, "_metrics", None)
            if isinstance(metrics, dict) and "train" in metrics:
                metrics["train"]["clip_range"].append(b)  # averaged into the next logged row
