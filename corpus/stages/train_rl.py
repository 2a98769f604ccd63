"""Stage ``train-rl``: reference GRPO (TRL GRPOTrainer) on the rl-export stage's TRL file.

Reads ``<run>/rl-export/trl/train.parquet`` and, by default, the SFT model ``<run>/train-sft/model``
(``train_rl.model: sft``; or `tiny`, or a local folder). Reward: the length-aware safety reward
(corpus.training.rewards); clip range: the dynamic schedule (corpus.training.clipping), refused when it
could not act. Writes ``<run>/train-rl/model``, ``logs/log_history.json`` (rewards, clip fractions,
``clip_range`` per step), ``logs/clip_schedule.json`` and ``_manifest.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from corpus.stages.train_sft import model_dir, resolve_base_model, run_training
from corpus.store import StageDir

if TYPE_CHECKING:
    from corpus.recipe import Recipe

HELP = (
    "Reference GRPO: TRL GRPOTrainer on <run>/rl-export/trl with the length-aware safety reward and the dynamic "
    "clip schedule (no KL, several updates per rollout), from the SFT model; writes <run>/train-rl/model, logs, "
    "manifest."
)
STAGE = "train-rl"
UPSTREAM = "rl-export"
DATA = "trl/train.parquet"


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    from corpus.training.grpo import train_grpo

    run_dir = Path(run_dir)
    cfg = recipe.train_rl
    if cfg.model == "sft":
        sft = StageDir(run_dir, "train-sft")
        if not sft.complete or not (model_dir(run_dir) / "config.json").is_file():
            raise FileNotFoundError(f"train_rl.model: sft needs the finished `train-sft` stage in {run_dir}; run "
                                    "`corpus train sft` or set train_rl.model to `tiny` or a model folder")
        base, identity = model_dir(run_dir), "train-sft:" + sft.fingerprint()
    else:
        base, identity = resolve_base_model(recipe, cfg.model, run_dir / STAGE, "train_rl")
    return run_training(
        recipe, run_dir, cfg, force, base=base, identity=identity, stage=STAGE, upstream=UPSTREAM, data=DATA,
        format_hint="add `trl` to rl_export.formats",
        train=lambda base, data, stage_dir, seed: train_grpo(cfg, base, data, stage_dir, seed=seed),
    )


def stats(run_dir: Path | str) -> dict:
    m = StageDir(run_dir, STAGE).manifest()
    if m is None:
        return {}
    return {"model_dir": m.get("model_dir"), **m.get("figures", {})}
