"""Typed recipe sections ``train_sft:`` and ``train_rl:`` and the multi-GPU launch files they generate.

Defaults are the tiny CPU run of the default recipe (seconds); ``PAPER_SFT`` / ``PAPER_RL`` hold the
paper's settings (design §2) as section overrides, see pipelines/ for full recipes.

Batch sizes follow TRL: ``per_device_train_batch_size`` counts completions, the optimizer batch is
``per_device × gradient_accumulation_steps × processes`` completions, and one rollout batch feeds
``updates_per_rollout`` optimizer steps (TRL ``steps_per_generation = updates_per_rollout × grad_accum``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccelerateConfig(_Strict):
    """How many processes and which sharding; ``num_processes > 1`` means launching with ``accelerate``."""

    num_processes: int = Field(1, ge=1, description="GPUs (processes) on this machine.")
    num_machines: int = Field(1, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    deepspeed_stage: Literal[0, 1, 2, 3] = Field(0, description="DeepSpeed ZeRO stage; 0 = plain DDP.")
    offload_optimizer: bool = Field(False, description="ZeRO: optimizer state to CPU.")
    offload_params: bool = Field(False, description="ZeRO-3: parameters to CPU.")
    gradient_clipping: float = Field(1.0, gt=0)

    @property
    def distributed(self) -> bool:
        return self.num_processes * self.num_machines > 1


class VllmConfig(_Strict):
    """Rollout generation with vLLM (GPU only): ``colocate`` shares the training GPUs, ``server`` talks to
    ``trl vllm-serve`` running on other GPUs."""

    enabled: bool = False
    mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate: share of GPU memory for vLLM.")
    tensor_parallel_size: int = Field(1, ge=1)
    server_host: str = "127.0.0.1"
    server_port: int = Field(8000, ge=1, le=65535)
    server_timeout: float = Field(240.0, gt=0)
    importance_sampling_correction: bool = True


class ClipSettings(_Strict):
    """Dynamic clipping (corpus.training.clipping)."""

    schedule: Literal["product", "linear", "constant"] = "product"
    epsilon: float = Field(0.2, gt=0, lt=1)
    epsilon_high: float | None = Field(None, gt=0, description="Asymmetric upper range (scaled alike).")
    floor: float = Field(0.0, ge=0, description="Lower bound of the scheduled range.")
    per: Literal["rollout", "update"] = Field(
        "rollout", description="Schedule step unit: rollout (the paper's EasyR1 trainer: one step per rollout "
        "batch, every update on it uses the same range) or update (one step per optimizer step).")


class RewardConfig(_Strict):
    """Length-aware safety reward (corpus.training.rewards); the same settings go into every exported reward file."""

    length_aware: bool = True
    beta: float = Field(1.0, gt=0, le=1, description="1 = main model; 1/6 ≈ 0.1667 = Eco variant.")
    length_floor: float = Field(
        0.1, gt=0, le=1, description="Floor of l_norm: the reward lies in [-1/length_floor², 0] ([-100, 0]).")
    chars_per_token: float = Field(4.0, gt=0, description="Length estimate where no token count is given.")
    format: Literal["search", "fullmatch"] = Field(
        "search", description="I_format: search (paper family: <think>…</think><result>…</result> anywhere, a "
        "preamble still counts) or fullmatch (the whole output is the two blocks).")
    absent_response: Literal["none_or_missing", "none", "ignore"] = Field(
        "none_or_missing", description="A sample without a response: `Response: None` and a missing Response "
        "count alike (paper family), only `none`, or `ignore` the Response answer. The sampling judge uses the "
        "same rule (corpus.guard_format.judge_labels).")

    @model_validator(mode="after")
    def _floor_below_beta(self) -> RewardConfig:
        if self.length_floor > self.beta:
            raise ValueError(f"length_floor ({self.length_floor}) must not exceed beta ({self.beta})")
        return self


class _TrainCommon(_Strict):
    model: str = Field("tiny", description="`tiny` (build the offline tiny Qwen2.5-VL), or a local model folder.")
    learning_rate: float = Field(..., gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps for linear warmup.")
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="> 0 overrides epochs.")
    per_device_train_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(0, ge=0, description="Intermediate checkpoints every N steps; 0 = only the final model.")
    limit: int | None = Field(None, gt=0, description="Train on the first N rows only.")
    seed: int | None = Field(None, description="None: the recipe seed.")
    accelerate: AccelerateConfig = Field(default_factory=AccelerateConfig)


class TrainSFTConfig(_TrainCommon):
    """Recipe section ``train_sft:`` (R-SFT with TRL SFTTrainer, loss on the assistant turn only)."""

    learning_rate: float = Field(5e-5, gt=0)
    max_length: int = Field(2048, ge=16, description="Cutoff length in tokens.")
    max_steps: int = 30
    per_device_train_batch_size: int = Field(2, ge=1)


class TrainRLConfig(_TrainCommon):
    """Recipe section ``train_rl:`` (GRPO with TRL GRPOTrainer, dynamic clipping, length-aware reward)."""

    model: str = Field("sft", description="`sft` (<run>/train-sft/model), `tiny`, or a local model folder.")
    learning_rate: float = Field(1e-6, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    lr_scheduler_type: str = "constant"
    max_steps: int = 4
    beta: float = Field(0.0, ge=0, description="KL coefficient (paper: no KL).")
    num_generations: int = Field(4, ge=2, description="Rollouts per prompt (paper: 16).")
    temperature: float = Field(1.2, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_completion_length: int = Field(32, ge=1)
    per_device_train_batch_size: int = Field(4, ge=1)
    updates_per_rollout: int = Field(2, ge=1, description="Optimizer steps per rollout batch (paper: 512/256 = 2).")
    num_iterations: int = Field(1, ge=1, description="Passes over each rollout batch (PPO epochs).")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    use_liger_kernel: bool = Field(False, description="Liger layer kernels (TRL keeps its own loss, clip stays live).")
    clip: ClipSettings = Field(default_factory=ClipSettings)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    vllm: VllmConfig = Field(default_factory=VllmConfig)

    @model_validator(mode="after")
    def _batches(self) -> TrainRLConfig:
        procs = self.accelerate.num_processes * self.accelerate.num_machines
        per_update = self.per_device_train_batch_size * procs * self.gradient_accumulation_steps
        if per_update % self.num_generations:
            raise ValueError(f"the optimizer batch ({per_update} completions = per_device_train_batch_size × "
                             f"processes × gradient_accumulation_steps) must be a multiple of num_generations "
                             f"({self.num_generations})")
        if self.updates_per_rollout * self.num_iterations < 2:
            raise ValueError("dynamic clipping needs at least two policy updates per rollout batch: set "
                             "updates_per_rollout >= 2 or num_iterations >= 2")
        if self.max_steps < 1:
            raise ValueError("train_rl.max_steps must be set (> 0): the clip schedule needs the total step count")
        return self

    @property
    def steps_per_generation(self) -> int:
        return self.updates_per_rollout * self.gradient_accumulation_steps


def reward_settings(cfg: TrainRLConfig):
    """``corpus.training.rewards.RewardSettings`` of a ``train_rl`` section (``max_length`` =
    ``max_completion_length``)."""
    from corpus.training.rewards import RewardSettings

    return RewardSettings(**cfg.reward.model_dump(), max_length=cfg.max_completion_length)


def clip_schedule(cfg: TrainRLConfig, values: bool = False) -> dict[str, Any]:
    """The run's clip schedule: unit, steps, the range at first / 10% / 25% / 50% / last update (and, with
    ``values``, at every schedule step)."""
    from corpus.training.clip_schedule import schedule_points, schedule_step, schedule_values

    c = cfg.clip
    per_rollout = cfg.updates_per_rollout * cfg.num_iterations
    _, steps = schedule_step(0, cfg.max_steps, c.per, per_rollout)
    out: dict[str, Any] = {
        "schedule": c.schedule, "epsilon": c.epsilon, "epsilon_high": c.epsilon_high, "floor": c.floor,
        "per": c.per, "updates": cfg.max_steps, "updates_per_rollout": per_rollout, "steps": steps,
        "points": schedule_points(cfg.max_steps, per_rollout, c.epsilon, c.schedule, c.per, c.floor),
    }
    if values:
        out["values"] = schedule_values(cfg.max_steps, per_rollout, c.epsilon, c.schedule, c.per, c.floor)
    return out


def clip_schedule_line(cfg: TrainRLConfig) -> str:
    """One line for ``corpus check``."""
    s = clip_schedule(cfg)
    unit = "rollout batch" if s["per"] == "rollout" else "update"
    pts = ", ".join(f"{p['point']} {p['clip_range']:.4g}" for p in s["points"])
    return (f"clip schedule: {s['schedule']} eps {s['epsilon']:g}, one step per {unit} ({s['steps']} steps over "
            f"{s['updates']} updates, {s['updates_per_rollout']:g} updates per rollout): {pts}")


#: the paper's settings (design §2), as overrides of the sections (8 GPUs, ZeRO-3, vLLM colocate for RL)
PAPER_SFT: dict[str, Any] = {
    "learning_rate": 5e-5, "lr_scheduler_type": "cosine", "num_train_epochs": 3, "max_steps": -1,
    "max_length": 2048, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 6, "warmup_ratio": 0.03,
    "bf16": True, "gradient_checkpointing": True,
    "accelerate": {"num_processes": 8, "mixed_precision": "bf16", "deepspeed_stage": 3},
}
PAPER_RL: dict[str, Any] = {
    "learning_rate": 1e-6, "weight_decay": 1e-2, "beta": 0.0, "num_generations": 16, "temperature": 1.2,
    "max_completion_length": 2048, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 32,
    "updates_per_rollout": 2, "num_iterations": 1,
    # one epoch of the 12K RL set in whole rollout batches: ceil(12,000 / 512) = 24 rollouts x 2 updates
    "max_steps": 48,
    "bf16": True, "gradient_checkpointing": True,
    "clip": {"schedule": "product", "epsilon": 0.2}, "reward": {"length_aware": True, "beta": 1.0},
    "vllm": {"enabled": True, "mode": "colocate", "gpu_memory_utilization": 0.4},
    "accelerate": {"num_processes": 8, "mixed_precision": "bf16", "deepspeed_stage": 3},
}


# ---------------------------------------------------------------- launch files


def deepspeed_config(acc: AccelerateConfig) -> dict[str, Any]:
    """A DeepSpeed JSON config for ZeRO ``acc.deepspeed_stage`` (batch sizes left to the HF integration)."""
    zero: dict[str, Any] = {"stage": acc.deepspeed_stage, "overlap_comm": True, "contiguous_gradients": True}
    if acc.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if acc.offload_params and acc.deepspeed_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if acc.deepspeed_stage == 3:
        zero.update({"stage3_gather_16bit_weights_on_model_save": True, "reduce_bucket_size": "auto",
                     "stage3_prefetch_bucket_size": "auto", "stage3_param_persistence_threshold": "auto"})
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
    }


def accelerate_config(acc: AccelerateConfig, deepspeed_file: str | None = None) -> dict[str, Any]:
    """An ``accelerate launch --config_file`` mapping."""
    cfg: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_machines": acc.num_machines,
        "num_processes": acc.num_processes * acc.num_machines,
        "machine_rank": 0,
        "main_training_function": "main",
        "mixed_precision": acc.mixed_precision,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": False,
        "downcast_bf16": "no",
    }
    if acc.deepspeed_stage:
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = {"deepspeed_config_file": deepspeed_file or "deepspeed.json",
                                   "zero3_init_flag": acc.deepspeed_stage == 3}
    else:
        cfg["distributed_type"] = "MULTI_GPU" if acc.distributed else "NO"
    return cfg


def write_launch_files(acc: AccelerateConfig, out_dir: Path, stage: str, run_dir: Path) -> dict[str, str]:
    """Write ``accelerate.yaml`` (+ ``deepspeed.json``) and ``launch.sh RECIPE`` running ``stage`` on every GPU."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    ds_path = None
    if acc.deepspeed_stage:
        ds_path = out_dir / "deepspeed.json"
        ds_path.write_text(json.dumps(deepspeed_config(acc), indent=2) + "\n", encoding="utf-8")
        files["deepspeed"] = str(ds_path)
    acc_path = out_dir / "accelerate.yaml"
    acc_path.write_text(yaml.safe_dump(accelerate_config(acc, str(ds_path) if ds_path else None), sort_keys=False),
                        encoding="utf-8")
    files["accelerate"] = str(acc_path)
    command = stage.replace("train-", "train ", 1) if stage.startswith("train-") else stage  # `corpus train sft`
    launch = out_dir / "launch.sh"
    launch.write_text(
        "#!/bin/sh\n# usage: launch.sh RECIPE.yaml  (written by corpus: runs this stage on every GPU)\n"
        f'exec accelerate launch --config_file {acc_path} -m corpus.cli {command} "$@" --out {run_dir} --force\n',
        encoding="utf-8")
    launch.chmod(0o755)
    files["launch"] = str(launch)
    return files
