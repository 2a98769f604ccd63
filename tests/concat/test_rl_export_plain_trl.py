"""The rl-export promise for plain TRL: its GRPOTrainer (no toolkit subclass) trains on each one-modality file
with the exported stand-alone reward file, and crashes on the mixed file, as rl-export/README.md says."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from concat_helpers import mixed_rows, recipe, write_sample_stage

from corpus.stages import concat, rl_export


@pytest.fixture(scope="module")
def exported(tmp_path_factory, one_torch_thread) -> tuple[Path, Path]:
    from corpus.training.tiny_model import build_tiny_qwen2_5_vl

    run = tmp_path_factory.mktemp("plain-trl")
    write_sample_stage(run, mixed_rows(run, 6, hard_every=1))
    rec = recipe(total=6, share=0.0, image_mode="list")
    concat.run(rec, run)
    rl_export.run(rec, run)
    return run / "rl-export", build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny"))


def _train_one_step(data: Path, reward_file: Path, model_dir: Path, out: Path, prompts_per_rollout: int = 2):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from corpus.training.sft import load_model, load_processor

    spec = importlib.util.spec_from_file_location("plain_trl_guard_reward", reward_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = GRPOConfig(output_dir=str(out), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
                      max_steps=1, steps_per_generation=prompts_per_rollout, report_to=[], use_cpu=True,
                      logging_steps=1, save_strategy="no", seed=0)
    trainer = GRPOTrainer(model=load_model(model_dir, False), reward_funcs=[mod.guard_reward], args=args,
                          train_dataset=Dataset.from_parquet(str(data)), processing_class=load_processor(model_dir))
    trainer.train()
    return trainer.state.log_history


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["text", "image"])
def test_plain_trl_trains_on_a_one_modality_file(exported, tmp_path, modality):
    out, model = exported
    data = out / rl_export.modality_file("trl", modality)
    assert data.is_file()
    history = _train_one_step(data, out / "trl" / "guard_reward.py", model, tmp_path)
    rewards = [h["reward"] for h in history if "reward" in h]
    # 8 new tokens of a 32-token recipe budget, nothing formatted: (0 - 1) / 0.25**2 = -16 at most
    assert rewards and all(-16.0 - 1e-6 <= r <= 0 for r in rewards)


@pytest.mark.slow
def test_plain_trl_crashes_on_the_mixed_file(exported, tmp_path):
    out, model = exported
    import pyarrow.parquet as pq

    mixed = out / "trl" / "train.parquet"
    n = pq.read_metadata(mixed).num_rows
    assert 0 < len(pq.read_table(out / rl_export.modality_file("trl", "text"))) < n
    with pytest.raises(TypeError, match="NoneType"):  # one rollout batch holds every row: image and text-only
        _train_one_step(mixed, out / "trl" / "guard_reward.py", model, tmp_path, prompts_per_rollout=n)
