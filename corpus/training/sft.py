"""R-SFT: TRL ``SFTTrainer`` on the export stage's TRL file (conversational prompt / completion / images).

The loss is on the completion (the assistant turn) only: TRL's ``completion_only_loss`` for prompt-completion
data. Rows with and without images share batches (TRL's vision collator); text-only rows carry ``images: []``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from corpus.models import load_model
from corpus.models import load_training_processor as load_processor
from corpus.training.config import TrainSFTConfig


def _resolve_images(paths: list[str] | None, base: Path) -> list[str]:
    out = []
    for p in paths or []:
        q = Path(p)
        out.append(str(q if q.is_absolute() else base / q))
    return out


def load_sft_dataset(path: Path, run_dir: Path, limit: int | None = None):
    """The export's ``trl/train.jsonl`` as a ``datasets.Dataset`` with decoded images (paths resolved
    against the run directory when relative), and the number of rows with images."""
    from datasets import Dataset, Image, List

    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            r = json.loads(line)
            missing = [k for k in ("prompt", "completion") if k not in r]
            if missing:
                raise ValueError(f"{path}: row {i} has no {missing} (not a TRL prompt-completion file)")
            rows.append({"prompt": r["prompt"], "completion": r["completion"],
                         "images": _resolve_images(r.get("images"), run_dir)})
    if not rows:
        raise ValueError(f"{path}: no training rows")
    for i, r in enumerate(rows):
        gone = [p for p in r["images"] if not Path(p).is_file()]
        if gone:
            raise FileNotFoundError(f"{path}: row {i}: image files missing: {gone[:3]}")
    ds = Dataset.from_list(rows)
    if not any(r["images"] for r in rows):
        ds = ds.remove_columns("images")  # a text-only set: TRL's text collator
        return ds, 0
    return ds.cast_column("images", List(Image())), sum(1 for r in rows if r["images"])


def sft_args(cfg: TrainSFTConfig, out_dir: Path, seed: int):
    from trl import SFTConfig

    return SFTConfig(
        **common_trainer_args(cfg, out_dir, seed),
        max_length=cfg.max_length,
        completion_only_loss=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )


def common_trainer_args(cfg: Any, out_dir: Path, seed: int) -> dict[str, Any]:
    """The TrainingArguments both reference trainers (SFT and GRPO) take from their recipe section.

    ``warmup_ratio`` goes to ``warmup_steps``: transformers 5 reads a float below 1 there as a ratio.
    """
    return dict(
        output_dir=str(out_dir),
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        logging_steps=cfg.logging_steps,
        save_strategy="steps" if cfg.save_steps else "no",
        save_steps=cfg.save_steps or 500,
        report_to=[],
        seed=seed,
        use_cpu=not _has_accelerator(),
    )


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def save_checkpoint(trainer, processor, out: Path) -> None:
    """Model weights (gathered under DeepSpeed ZeRO-3 by ``trainer.save_model``) + processor in one folder."""
    import transformers

    trainer.save_model(str(out))
    if not trainer.is_world_process_zero():
        return
    if getattr(transformers, type(processor).__name__, None) is None:
        # the image-only stand-in (no torchvision): save its parts so AutoProcessor / load_processor read them
        (out / "processor_config.json").unlink(missing_ok=True)
        for part in ("tokenizer", "image_processor"):
            if getattr(processor, part, None) is not None:
                getattr(processor, part).save_pretrained(out)
        for name in ("tokenizer_config.json", "preprocessor_config.json"):  # drop the unloadable class name
            path = out / name
            if path.is_file():
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.pop("processor_class", None) is not None:
                    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        processor.save_pretrained(out)


def train_sft(cfg: TrainSFTConfig, model_path: Path, data_file: Path, run_dir: Path, out_dir: Path,
              seed: int = 0) -> dict[str, Any]:
    """Train and write ``out_dir/model`` (checkpoint + processor) and ``out_dir/logs/``; returns figures."""
    from trl import SFTTrainer

    dataset, with_images = load_sft_dataset(data_file, run_dir, cfg.limit)
    processor = load_processor(model_path)
    model = load_model(model_path, cfg.bf16)
    args = sft_args(cfg, out_dir / "checkpoints", seed)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    started = time.time()
    result = trainer.train()
    seconds = time.time() - started
    save_checkpoint(trainer, processor, out_dir / "model")
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n", encoding="utf-8")
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {
        "rows": len(dataset),
        "rows_with_images": with_images,
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "seconds": round(seconds, 3),
        "steps_per_second": round(trainer.state.global_step / seconds, 4) if seconds else None,
    }
