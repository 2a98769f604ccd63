"""The dynamic clip schedule as pure functions (no trainer import): see corpus.training.clipping."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Schedule = Callable[[int, int], float]


def product_factor(step: int, total: int) -> float:
    """∏_{i=1..s}(S − i)/S (1 at s = 0)."""
    _check(step, total)
    return math.prod((total - i) / total for i in range(1, step + 1))


def linear_factor(step: int, total: int) -> float:
    """(S − s)/S."""
    _check(step, total)
    return (total - step) / total


def constant_factor(step: int, total: int) -> float:
    _check(step, total)
    return 1.0


def _check(step: int, total: int) -> None:
    if total < 1:
        raise ValueError(f"dynamic clipping needs the total number of steps (got {total}); set max_steps")
    if not 0 <= step <= total:
        raise ValueError(f"step {step} outside [0, {total}]")


SCHEDULES: dict[str, Schedule] = {"product": product_factor, "linear": linear_factor, "constant": constant_factor}
UNITS = ("rollout", "update")
#: the points of a run ``schedule_points`` reports
REPORT_POINTS = (("first", 0.0), ("10%", 0.1), ("25%", 0.25), ("50%", 0.5), ("last", 1.0))


def updates_per_rollout_of(args: Any) -> float:
    """Optimizer updates per rollout batch in TRL: a generation batch feeds ``steps_per_generation ×
    num_iterations`` micro-steps, ``gradient_accumulation_steps`` of them per update."""
    gas = int(getattr(args, "gradient_accumulation_steps", 1))
    spg = int(getattr(args, "steps_per_generation", None) or gas)
    iters = int(getattr(args, "num_iterations", 1))
    return spg * iters / gas


def schedule_step(update: int, total_updates: int, per: str = "rollout",
                  updates_per_rollout: float = 1.0) -> tuple[int, int]:
    """``(s, S)`` of the schedule at optimizer step ``update`` of ``total_updates``, counted in ``per`` units."""
    if per not in UNITS:
        raise ValueError(f"unknown clip step unit {per!r}; choose from {list(UNITS)}")
    if per == "update":
        return update, total_updates
    if updates_per_rollout <= 0:
        raise ValueError(f"updates_per_rollout must be > 0, got {updates_per_rollout}")
    return int(update // updates_per_rollout), max(1, math.ceil(total_updates / updates_per_rollout))


def schedule_points(total_updates: int, updates_per_rollout: float, epsilon: float = 0.2,
                    schedule: str | Schedule = "product", per: str = "rollout",
                    floor: float = 0.0) -> list[dict[str, Any]]:
    """The clip range at the first update, 10%, 25%, 50% of the run and the last update (for ``corpus check``)."""
    out = []
    for label, frac in REPORT_POINTS:
        u = total_updates - 1 if frac >= 1 else int(frac * total_updates)
        s, n = schedule_step(u, total_updates, per, updates_per_rollout)
        out.append({"point": label, "update": u, "step": s, "steps": n,
                    "clip_range": clip_range(min(s, n), n, epsilon, schedule, floor)})
    return out


def schedule_values(total_updates: int, updates_per_rollout: float, epsilon: float = 0.2,
                    schedule: str | Schedule = "product", per: str = "rollout", floor: float = 0.0) -> list[float]:
    """The clip range at every schedule step (rollout batches or updates, as ``per`` says)."""
    _, n = schedule_step(0, total_updates, per, updates_per_rollout)
    return [clip_range(s, n, epsilon, schedule, floor) for s in range(n)]


def clip_range(step: int, total: int, epsilon: float = 0.2, schedule: str | Schedule = "product",
               floor: float = 0.0) -> float:
    """B_s for the named (or given) schedule: ``max(ε · factor(s, S), floor)``."""
    fn = SCHEDULES[schedule] if isinstance(schedule, str) else schedule
    return max(epsilon * fn(step, total), floor)
