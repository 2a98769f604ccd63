"""Online RL: TRL ``GRPOTrainer`` on the rl-export stage's TRL file, with the guard reward and dynamic clipping.

Paper defaults (design §2): no KL (``beta 0``), 16 rollouts at temperature 1.2, lr 1e-6, weight decay 1e-2,
two policy updates per rollout batch (so the clip range acts), clip range scheduled per step
(corpus.training.clipping), reward = length-aware safety reward (corpus.training.rewards). Rows with and
without images share batches.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from corpus.models import load_model
from corpus.models import load_training_processor as load_processor
from corpus.training.clipping import DynamicClipCallback
from corpus.training.config import TrainRLConfig
from corpus.training.config import reward_settings as config_reward_settings
from corpus.training.rewards import RewardSettings, trl_reward_func
from corpus.training.sft import common_trainer_args, save_checkpoint

REQUIRED = ("prompt", "images", "request_label", "response_label")


def load_rl_dataset(path: Path, limit: int | None = None):
    """The rl-export's ``trl/train.parquet`` (images as ``datasets.Image`` by path, decoded on access)."""
    from datasets import Dataset

    ds = Dataset.from_parquet(str(path))
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise ValueError(f"{path}: columns {missing} missing (not the rl-export TRL GRPO file)")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if len(ds) == 0:
        raise ValueError(f"{path}: no training rows")
    return ds


def reward_settings(cfg: TrainRLConfig) -> RewardSettings:
    return config_reward_settings(cfg)


def grpo_args(cfg: TrainRLConfig, out_dir: Path, seed: int):
    from trl import GRPOConfig

    v = cfg.vllm
    return GRPOConfig(
        **common_trainer_args(cfg, out_dir, seed),
        steps_per_generation=cfg.steps_per_generation,
        num_iterations=cfg.num_iterations,
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,
        epsilon=cfg.clip.epsilon,
        epsilon_high=cfg.clip.epsilon_high,
        loss_type=cfg.loss_type,
        scale_rewards=cfg.scale_rewards,
        use_liger_kernel=cfg.use_liger_kernel,
        use_vllm=v.enabled,
        vllm_mode=v.mode,
        vllm_gpu_memory_utilization=v.gpu_memory_utilization,
        vllm_tensor_parallel_size=v.tensor_parallel_size,
        vllm_server_host=v.server_host,
        vllm_server_port=v.server_port,
        vllm_server_timeout=v.server_timeout,
        vllm_importance_sampling_correction=v.importance_sampling_correction,
    )


def _trainer_class():
    from trl import GRPOTrainer

    class GuardGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that accepts rollout batches mixing image and text-only rows.

        TRL 1.16 marks a text-only prompt's image list as None and then hands ``[[img], None, ...]`` to the
        processor, which raises (``fetch_images`` gets None); an empty list is what the processor accepts.
        """

        def _generate(self, prompts: list):
            out = list(super()._generate(prompts))
            if out[6] is not None:
                out[6] = [imgs if imgs is not None else [] for imgs in out[6]]
            return tuple(out)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               pixel_values=None, image_grid_thw=None, num_images=None, **kwargs):
            """Run each chunk of rows on its own, without vision inputs when the chunk has no image.

            TRL slices ``pixel_values`` per chunk; a chunk of text-only rows gets empty vision tensors, which
            Qwen2.5-VL's vision tower cannot take (``torch.cat`` of an empty list).
            """
            base = super()._get_per_token_logps_and_entropies
            other = {k: v for k, v in kwargs.items() if v is not None}
            if (pixel_values is None or image_grid_thw is None or num_images is None
                    or set(other) - {"token_type_ids", "mm_token_type_ids"} or all(num_images)):
                return base(model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                            compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss,
                            pixel_values=pixel_values, image_grid_thw=image_grid_thw, num_images=num_images,
                            **kwargs)
            import torch

            n = input_ids.size(0)
            step = batch_size or n
            img_cum = [0]
            for k in num_images:
                img_cum.append(img_cum[-1] + k)
            row_cum = torch.cat([image_grid_thw.new_zeros(1), image_grid_thw.prod(dim=-1).cumsum(0)]).tolist()
            logps, ents, auxs = [], [], []
            for start in range(0, n, step):
                end = min(start + step, n)
                i0, i1 = img_cum[start], img_cum[end]
                vision = {}
                if i1 > i0:
                    vision = {"pixel_values": pixel_values[row_cum[i0]:row_cum[i1]],
                              "image_grid_thw": image_grid_thw[i0:i1], "num_images": num_images[start:end]}
                lp, ent, aux = base(model, input_ids[start:end], attention_mask[start:end], logits_to_keep,
                                    batch_size=end - start, compute_entropy=compute_entropy,
                                    compute_aux_loss=compute_aux_loss, **vision,
                                    **{k: v[start:end] for k, v in other.items()})
                logps.append(lp)
                ents.append(ent)
                auxs.append(aux)
            return (torch.cat(logps, dim=0), torch.cat(ents, dim=0) if compute_entropy else None,
                    torch.stack(auxs).mean() if compute_aux_loss else None)

    return GuardGRPOTrainer


def build_trainer(cfg: TrainRLConfig, model_path: Path, dataset, out_dir: Path, seed: int = 0):
    """A GRPOTrainer with the guard reward and the clip schedule attached (refuses ineffective clipping)."""
    processor = load_processor(model_path)
    model = load_model(model_path, cfg.bf16)
    trainer = _trainer_class()(model=model, reward_funcs=[trl_reward_func(reward_settings(cfg))],
                               args=grpo_args(cfg, out_dir / "checkpoints", seed), train_dataset=dataset,
                               processing_class=processor)
    clip = DynamicClipCallback.attach(trainer, epsilon=cfg.clip.epsilon, schedule=cfg.clip.schedule,
                                      epsilon_high=cfg.clip.epsilon_high, floor=cfg.clip.floor,
                                      per=cfg.clip.per)
    return trainer, clip, processor


def train_grpo(cfg: TrainRLConfig, model_path: Path, data_file: Path, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Train and write ``out_dir/model`` and ``out_dir/logs/``; returns figures (rewards, clip fractions)."""
    dataset = load_rl_dataset(data_file, cfg.limit)
    trainer, clip, processor = build_trainer(cfg, model_path, dataset, out_dir, seed)
    started = time.time()
    result = trainer.train()
    seconds = time.time() - started
    save_checkpoint(trainer, processor, out_dir / "model")
    logs = out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    history = trainer.state.log_history
    (logs / "log_history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    (logs / "clip_schedule.json").write_text(json.dumps(clip.history) + "\n", encoding="utf-8")
    rows = [r for r in history if "reward" in r]
    return {
        "rows": len(dataset),
        "rows_with_images": sum(1 for n in dataset.with_format("arrow")["images"].to_pylist() if n),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "reward_first": rows[0]["reward"] if rows else None,
        "reward_last": rows[-1]["reward"] if rows else None,
        "clip_range_first": clip.history[0][1] if clip.history else None,
        "clip_range_last": clip.history[-1][1] if clip.history else None,
        "clip_ratio_region_max": max((r.get("clip_ratio/region_mean") or 0.0 for r in history), default=None),
        "seconds": round(seconds, 3),
        "steps_per_second": round(trainer.state.global_step / seconds, 4) if seconds else None,
    }
