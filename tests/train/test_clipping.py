"""Dynamic clipping: schedule values, the per-step callback, and refusal of configurations where it does nothing."""

from __future__ import annotations

import math

import pytest
from transformers import TrainerControl, TrainerState
from trl import GRPOConfig

from corpus.training.clipping import (
    ClippingIneffective,
    DynamicClipCallback,
    check_clipping_effective,
    clip_range,
    linear_factor,
    product_factor,
)


@pytest.mark.parametrize(("step", "total", "expected"), [
    (0, 10, 0.2),
    (1, 10, 0.2 * 9 / 10),
    (2, 10, 0.2 * (9 / 10) * (8 / 10)),
    (3, 4, 0.2 * (3 / 4) * (2 / 4) * (1 / 4)),
    (4, 4, 0.0),
    (50, 100, 0.2 * math.prod((100 - i) / 100 for i in range(1, 51))),
])
def test_product_schedule(step, total, expected):
    assert clip_range(step, total, 0.2, "product") == pytest.approx(expected)


@pytest.mark.parametrize(("step", "total", "expected"), [(0, 10, 0.2), (1, 10, 0.18), (5, 10, 0.1), (9, 10, 0.02)])
def test_linear_schedule(step, total, expected):
    assert clip_range(step, total, 0.2, "linear") == pytest.approx(expected)


def test_schedules_shrink_and_product_is_below_linear():
    total = 20
    prod = [product_factor(s, total) for s in range(total)]
    lin = [linear_factor(s, total) for s in range(total)]
    assert all(a > b for a, b in zip(prod, prod[1:], strict=False))
    assert all(p <= q + 1e-12 for p, q in zip(prod, lin, strict=True))
    assert prod[-1] > 0  # the last update (s = S - 1) still clips at a positive range


def test_pluggable_schedule_and_floor():
    assert clip_range(3, 10, 0.2, lambda s, n: 0.5) == pytest.approx(0.1)
    assert clip_range(9, 10, 0.2, "product", floor=0.05) == 0.05
    with pytest.raises(ValueError, match="max_steps"):
        clip_range(0, 0)


class _Trainer:
    """The attributes TRL's GRPOTrainer reads the clip range from (the callback sets them)."""

    def __init__(self, args):
        self.args = args
        self.epsilon_low = self.epsilon_high = args.epsilon
        self.callbacks = []
        self._metrics = {"train": {"clip_range": []}, "eval": {}}

    def add_callback(self, cb):
        self.callbacks.append(cb)


def _args(tmp_path, **kw):
    base = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, report_to=[],
                use_cpu=True, gradient_accumulation_steps=1, steps_per_generation=2)
    return GRPOConfig(**{**base, **kw})


def test_callback_sets_the_range_every_step(tmp_path):
    trainer = _Trainer(_args(tmp_path, epsilon=0.2, epsilon_high=0.28))
    cb = DynamicClipCallback.attach(trainer, epsilon=0.2, schedule="linear", epsilon_high=0.28, per="update")
    assert trainer.callbacks == [cb]
    state, control = TrainerState(max_steps=4), TrainerControl()
    seen = []
    for step in range(4):
        state.global_step = step
        cb.on_step_begin(trainer.args, state, control)
        seen += [trainer.epsilon_low, trainer.epsilon_high]
    assert seen == pytest.approx([v * f for f in (1, 0.75, 0.5, 0.25) for v in (0.2, 0.28)])
    assert trainer._metrics["train"]["clip_range"] == pytest.approx([0.2, 0.15, 0.1, 0.05])


@pytest.mark.parametrize(("kw", "match"), [
    (dict(gradient_accumulation_steps=1, steps_per_generation=1), "one policy update per rollout"),
    (dict(gradient_accumulation_steps=2, steps_per_generation=2), "one policy update per rollout"),
    (dict(gradient_accumulation_steps=4, steps_per_generation=2), "one policy update per rollout"),
    (dict(loss_type="sapo"), "does not use the clip range"),
    (dict(loss_type="cispo"), "does not use the clip range"),
])
def test_refuses_configs_where_clipping_does_nothing(tmp_path, kw, match):
    args = _args(tmp_path, **kw)
    with pytest.raises(ClippingIneffective, match=match):
        check_clipping_effective(args)
    with pytest.raises(ClippingIneffective):
        DynamicClipCallback.attach(_Trainer(args))


def test_refuses_a_fused_loss_kernel(tmp_path):
    args = _args(tmp_path)
    args.use_liger_loss = True  # the flag older TRL versions use for the fused liger GRPO loss
    with pytest.raises(ClippingIneffective, match="fused"):
        check_clipping_effective(args)
    trainer = _Trainer(_args(tmp_path))
    trainer.liger_grpo_loss = object()  # a fused loss module built with a fixed epsilon
    with pytest.raises(ClippingIneffective, match="fused"):
        DynamicClipCallback.attach(trainer)


@pytest.mark.parametrize("kw", [
    dict(gradient_accumulation_steps=1, steps_per_generation=2),  # paper: two updates per rollout
    dict(gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=2),  # two passes
    dict(gradient_accumulation_steps=2, steps_per_generation=4),
    dict(gradient_accumulation_steps=3, steps_per_generation=2),  # a rollout straddles an update
])
def test_accepts_several_updates_per_rollout(tmp_path, kw):
    check_clipping_effective(_args(tmp_path, **kw))


def test_per_rollout_is_the_default_and_holds_the_range_over_a_rollouts_updates(tmp_path):
    """Two updates per rollout batch (steps_per_generation = 2 x gradient_accumulation_steps): the range
    steps once per rollout batch, so both updates on one batch share it."""
    trainer = _Trainer(_args(tmp_path, epsilon=0.2, gradient_accumulation_steps=2, steps_per_generation=4))
    cb = DynamicClipCallback.attach(trainer, epsilon=0.2, schedule="linear")
    assert cb.per == "rollout" and cb.updates_per_rollout == 2
    state, control = TrainerState(max_steps=8), TrainerControl()
    seen = []
    for step in range(8):
        state.global_step = step
        cb.on_step_begin(trainer.args, state, control)
        seen.append(trainer.epsilon_low)
    # 8 updates = 4 rollout batches: linear over S = 4
    assert seen == pytest.approx([0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.05, 0.05])


def test_per_update_collapses_twice_as_fast_as_the_paper_reading():
    """The issue's figure: ε at 10% of a 234-update run with two updates per rollout."""
    from corpus.training.clipping import schedule_points, schedule_step, schedule_values

    by_update = {p["point"]: p for p in schedule_points(234, 2, 0.2, "product", per="update")}
    by_rollout = {p["point"]: p for p in schedule_points(234, 2, 0.2, "product", per="rollout")}
    assert by_update["10%"]["clip_range"] == pytest.approx(0.059, abs=5e-4)
    assert by_rollout["10%"]["clip_range"] == pytest.approx(clip_range(11, 117, 0.2, "product"))
    assert by_rollout["10%"]["clip_range"] > 1.8 * by_update["10%"]["clip_range"]
    assert [p["point"] for p in by_rollout.values()] == ["first", "10%", "25%", "50%", "last"]
    assert by_rollout["first"]["clip_range"] == 0.2 and by_rollout["last"]["step"] == 116
    assert by_rollout["last"]["clip_range"] > 0  # the last update still clips
    assert schedule_step(233, 234, "rollout", 2) == (116, 117)
    assert schedule_step(7, 47, "rollout", 2) == (3, 24)  # an odd number of updates: 24 rollout batches
    vals = schedule_values(8, 2, 0.2, "linear")
    assert vals == pytest.approx([0.2, 0.15, 0.1, 0.05])
    with pytest.raises(ValueError, match="unit"):
        schedule_step(0, 4, "epoch")
