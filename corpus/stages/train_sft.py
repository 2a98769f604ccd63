"""Stage ``train-sft``: reference R-SFT (TRL SFTTrainer) on the export stage's TRL file.

Reads ``<run>/export/trl/train.jsonl``; writes ``<run>/train-sft/model`` (checkpoint + processor, loadable
with ``from_pretrained``), ``logs/log_history.json`` and ``_manifest.json`` (config hash, input fingerprint,
figures, output fingerprint over the model files). ``train_sft.model: tiny`` builds the offline tiny
Qwen2.5-VL first (the default run); any local Qwen2.5-VL folder works. With ``accelerate.num_processes > 1``
the stage writes ``accelerate.yaml`` (+ ``deepspeed.json``) and ``launch.sh`` and asks to be launched by it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpus.store import MANIFEST, StageDir, file_sha256, stable_hash, write_json_atomic

if TYPE_CHECKING:
    from corpus.recipe import Recipe
    from corpus.training.config import AccelerateConfig

HELP = (
    "Reference R-SFT: TRL SFTTrainer on <run>/export/trl (loss on the assistant turn only), from the tiny "
    "offline model or any local Qwen2.5-VL checkpoint; writes <run>/train-sft/model, logs and a manifest."
)
STAGE = "train-sft"
UPSTREAM = "export"
DATA = "trl/train.jsonl"


def model_dir(run_dir: Path | str) -> Path:
    """Where the stage leaves its checkpoint (the sample stage and train-rl read it)."""
    return Path(run_dir) / STAGE / "model"


def folder_fingerprint(path: Path) -> str:
    """sha256 over the files of a model folder (names and contents)."""
    return stable_hash([(p.relative_to(path).as_posix(), file_sha256(p))
                        for p in sorted(path.rglob("*")) if p.is_file()])


def resolve_base_model(recipe: Recipe, spec: str, stage_dir: Path, where: str) -> tuple[Path | None, str]:
    """``(folder or None for tiny, identity)`` for a ``model:`` value that is `tiny` or a local folder."""
    if spec == "tiny":
        return None, "tiny"
    path = recipe.resolve(spec)
    if path is None or not (path / "config.json").is_file():
        raise FileNotFoundError(f"{where}.model: {spec!r} is not a local model folder (no config.json at {path}); "
                                "use `tiny` or the path of a downloaded Qwen2.5-VL checkpoint")
    return path, str(path.resolve())


def build_tiny(stage_dir: Path) -> Path:
    from corpus.training.tiny_model import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(stage_dir / "base")


def launched_by_accelerate() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def prepare_launch(acc: AccelerateConfig, stage: str, run_dir: Path) -> dict[str, str]:
    """Write the multi-GPU launch files; refuse to train on one process when several are configured."""
    from corpus.training.config import write_launch_files

    if not acc.distributed:
        return {}
    files = write_launch_files(acc, run_dir / f"_launch-{stage}", stage, run_dir)
    if not launched_by_accelerate():
        raise RuntimeError(f"{stage}: accelerate.num_processes={acc.num_processes} needs a multi-process launch; "
                           f"run `{files['launch']} RECIPE.yaml` (accelerate config: {files['accelerate']})")
    return files


def finish(stage_dir: Path, key: dict[str, Any], figures: dict[str, Any], started: float,
           extra: dict[str, Any] | None = None) -> dict:
    model = stage_dir / "model"
    now = time.time()
    manifest = {
        "stage": stage_dir.name,
        **key,
        "rows_in": figures.get("rows", 0),
        "rows_out": figures.get("rows", 0),
        "rows_dropped": 0,
        "drop_reasons": {},
        "model_dir": f"{stage_dir.name}/model",
        "figures": figures,
        "output_fingerprint": folder_fingerprint(model),
        "timings": {"this_attempt_started": started, "finished": now, "this_attempt_seconds": round(now - started, 3)},
        **(extra or {}),
    }
    write_json_atomic(stage_dir / MANIFEST, manifest)
    return manifest


def up_to_date(stage_dir: Path, key: dict[str, Any]) -> dict | None:
    m = StageDir(stage_dir.parent, stage_dir.name).manifest()
    if m is None or not all(m.get(k) == v for k, v in key.items()):
        return None
    model = stage_dir / "model"
    if not (model / "config.json").is_file() or folder_fingerprint(model) != m.get("output_fingerprint"):
        return None
    return m


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    from corpus.training.sft import train_sft

    run_dir = Path(run_dir)
    cfg = recipe.train_sft
    base, identity = resolve_base_model(recipe, cfg.model, run_dir / STAGE, "train_sft")
    return run_training(
        recipe, run_dir, cfg, force, base=base, identity=identity, stage=STAGE, upstream=UPSTREAM, data=DATA,
        format_hint="add `trl` to export.formats",
        train=lambda base, data, stage_dir, seed: train_sft(cfg, base, data, run_dir, stage_dir, seed=seed),
    )


def run_training(recipe: Recipe, run_dir: Path, cfg: Any, force: bool, *, base: Path | None, identity: str,
                 stage: str, upstream: str, data: str, format_hint: str, train: Callable[..., dict]) -> dict:
    """The flow both training stages share: check the input, skip when up to date, train, write the manifest."""
    up = StageDir(run_dir, upstream)
    if not up.complete:
        raise FileNotFoundError(f"{stage} needs the finished `{upstream}` stage in {run_dir}; run `corpus {upstream}`")
    data_path = up.path / data
    if not data_path.is_file():
        raise FileNotFoundError(f"{stage} reads {data_path}, which the {upstream} stage did not write: {format_hint}")
    stage_dir = run_dir / stage
    seed = recipe.seed if cfg.seed is None else cfg.seed
    key = {"config_hash": stable_hash(cfg.model_dump()), "seed": seed, "input_fingerprint": up.fingerprint(),
           "base_model": identity}
    if not force and (m := up_to_date(stage_dir, key)) is not None:
        return m
    launch = prepare_launch(cfg.accelerate, stage, run_dir)
    if stage_dir.exists() and is_main_process():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    figures = train(base or build_tiny(stage_dir), data_path, stage_dir, seed)
    if not is_main_process():
        return {}
    return finish(stage_dir, key, figures, started, {"launch": launch} if launch else None)


def stats(run_dir: Path | str) -> dict:
    m = StageDir(run_dir, STAGE).manifest()
    if m is None:
        return {}
    return {"model_dir": m.get("model_dir"), **{k: v for k, v in m.get("figures", {}).items()}}
