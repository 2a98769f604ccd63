"""Stage ``train-rl``: reference GRPO (TRL GRPOTrainer) on the rl-export stage's TRL file.

Reads ``<run>/rl-export/trl/train.parquet`` and, by default, the SFT model ``<run>/train-sft/model``
(``train_rl.model: sft``; or `tiny`, or a local folder). Reward: the length-aware safety reward
(corpus.training.rewards); clip range: the dynamic schedule (corpus.training.clipping), refused when it
could not act. Writes ``<run>/train-rl/model``, ``logs/log_history.json`` (rewards, clip fractions,
``clip_range`` per step), ``logs/clip_schedule.json`` and ``_manifest.json``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from corpus.stages.train_sft import (
    build_tiny,
    finish,
    is_main_process,
    model_dir,
    prepare_launch,
    resolve_base_model,
    up_to_date,
)
from corpus.store import StageDir, stable_hash

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
    up = StageDir(run_dir, UPSTREAM)
    if not up.complete:
        raise FileNotFoundError(f"train-rl needs the finished `{UPSTREAM}` stage in {run_dir}; run `corpus rl-export`")
    data = up.path / DATA
    if not data.is_file():
        raise FileNotFoundError(f"train-rl reads {data}, which rl-export did not write: add `trl` to rl_export.formats")
    stage_dir = run_dir / STAGE
    if cfg.model == "sft":
        sft = StageDir(run_dir, "train-sft")
        if not sft.complete or not (model_dir(run_dir) / "config.json").is_file():
            raise FileNotFoundError(f"train_rl.model: sft needs the finished `train-sft` stage in {run_dir}; run "
                                    "`corpus train-sft` or set train_rl.model to `tiny` or a model folder")
        base, identity = model_dir(run_dir), "train-sft:" + sft.fingerprint()
    else:
        base, identity = resolve_base_model(recipe, cfg.model, stage_dir, "train_rl")
    seed = recipe.seed if cfg.seed is None else cfg.seed
    key = {"config_hash": stable_hash(cfg.model_dump()), "seed": seed, "input_fingerprint": up.fingerprint(),
           "base_model": identity}
    if not force and (m := up_to_date(stage_dir, key)) is not None:
        return m
    launch = prepare_launch(cfg.accelerate, STAGE, run_dir)
    if stage_dir.exists() and is_main_process():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    base = base or build_tiny(stage_dir)
    figures = train_grpo(cfg, base, data, stage_dir, seed=seed)
    if not is_main_process():
        return {}
    return finish(stage_dir, key, figures, started, {"launch": launch} if launch else None)


def stats(run_dir: Path | str) -> dict:
    m = StageDir(run_dir, STAGE).manifest()
    if m is None:
        return {}
    return {"model_dir": m.get("model_dir"), **m.get("figures", {})}
