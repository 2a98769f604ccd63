"""End to end on CPU with the tiny model: the train-sft and train-rl stages, mixed image/text-only batches,
clipping observed active, checkpoints that load back, skip on rerun, multi-GPU launch files."""

from __future__ import annotations

import json

import pytest
import yaml

from corpus.recipe import parse_recipe
from corpus.stages import train_rl, train_sft
from corpus.training.config import PAPER_RL, PAPER_SFT, TrainRLConfig

SFT = {"max_steps": 8, "per_device_train_batch_size": 2, "learning_rate": 2e-2, "lr_scheduler_type": "constant",
       "max_length": 512}
# 2 RL rows (one with an image, one text-only) and a rollout batch of 2 prompts x 4 generations: every rollout
# batch mixes both kinds, and each micro-batch (4 completions = 1 prompt) has one kind only
RL = {"max_steps": 4, "num_generations": 4, "per_device_train_batch_size": 4, "learning_rate": 5e-2,
      "max_completion_length": 32}


def _recipe(**sections):
    return parse_recipe({"name": "train-test", "seed": 0, **sections})


@pytest.mark.slow
def test_sft_then_grpo_stages_end_to_end(train_run):
    recipe = _recipe(train_sft=SFT, train_rl=RL)
    m = train_sft.run(recipe, train_run)
    model = train_run / "train-sft" / "model"
    assert (model / "model.safetensors").is_file() and (model / "config.json").is_file()
    f = m["figures"]
    assert f["steps"] == 8 and f["rows"] == 4 and f["rows_with_images"] == 2
    assert f["last_loss"] < f["first_loss"]
    assert train_sft.run(recipe, train_run)["timings"] == m["timings"]  # up to date: skipped

    from corpus.models import load_model
    from corpus.models import load_training_processor as load_processor

    proc = load_processor(model)
    assert proc.image_processor is not None and type(load_model(model)).__name__.startswith("Qwen2_5_VL")

    r = train_rl.run(recipe, train_run)
    assert r["base_model"] == "train-sft:" + m["output_fingerprint"]
    assert (train_run / "train-rl" / "model" / "model.safetensors").is_file()
    fig = r["figures"]
    assert fig["steps"] == 4 and fig["rows"] == 2 and fig["rows_with_images"] == 1  # mixed batches ran
    history = json.loads((train_run / "train-rl" / "logs" / "log_history.json").read_text())
    steps = [h for h in history if "clip_range" in h]
    # product schedule, one step per rollout batch (2 updates each): S = 2 rollout batches
    assert [h["clip_range"] for h in steps] == pytest.approx([0.2, 0.2, 0.1, 0.1])
    # updates on a fresh rollout have ratio 1; the second update on each rollout clips some tokens
    assert all(h["clip_ratio/region_mean"] == 0 for h in steps[0::2])
    assert any(h["clip_ratio/region_mean"] > 0 for h in steps[1::2])
    assert fig["clip_ratio_region_max"] > 0
    schedule = json.loads((train_run / "train-rl" / "logs" / "clip_schedule.json").read_text())
    assert [s for s, _ in schedule] == [0, 1, 2, 3]


def test_stage_errors_name_the_missing_input(tmp_path, train_run):
    with pytest.raises(FileNotFoundError, match="export"):
        train_sft.run(_recipe(), tmp_path)
    with pytest.raises(FileNotFoundError, match="not a local model folder"):
        train_sft.run(_recipe(train_sft={**SFT, "model": str(tmp_path / "nope")}), train_run)


def test_multi_gpu_config_writes_launch_files_and_asks_for_a_launch(tmp_path, train_run, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    recipe = _recipe(train_sft={**SFT, "accelerate": {"num_processes": 4, "deepspeed_stage": 3,
                                                      "mixed_precision": "bf16", "offload_optimizer": True}})
    with pytest.raises(RuntimeError, match="launch.sh"):
        train_sft.run(recipe, train_run)
    launch_dir = train_run / "_launch-train-sft"
    acc = yaml.safe_load((launch_dir / "accelerate.yaml").read_text())
    assert acc["distributed_type"] == "DEEPSPEED" and acc["num_processes"] == 4
    ds = json.loads((launch_dir / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "accelerate launch --config_file" in (launch_dir / "launch.sh").read_text()
    assert "-m corpus.cli train sft" in (launch_dir / "launch.sh").read_text()


def test_paper_settings_validate_and_bad_rl_configs_are_refused():
    recipe = _recipe(train_sft=PAPER_SFT, train_rl=PAPER_RL)
    rl = recipe.train_rl
    per_update = rl.per_device_train_batch_size * rl.gradient_accumulation_steps * rl.accelerate.num_processes
    assert per_update // rl.num_generations == 256  # actor batch 256 prompts
    assert per_update * rl.updates_per_rollout // rl.num_generations == 512  # rollout batch 512 prompts
    with pytest.raises(ValueError, match="two policy updates"):
        TrainRLConfig(updates_per_rollout=1)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        TrainRLConfig(per_device_train_batch_size=3, num_generations=4)
    with pytest.raises(ValueError, match="length_floor"):
        TrainRLConfig(reward={"beta": 0.1, "length_floor": 0.2})


def test_gpu_check_script_runs_at_toy_scale(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check_train.py"
    spec = importlib.util.spec_from_file_location("gpu_check_train", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    report = mod.main(["--tiny", "--steps", "2", "--out", str(tmp_path)])
    assert report["steps"] == 2 and report["steps_per_second"] > 0 and report["peak_rss_gib"] > 0
    assert report["clip_ranges"] == pytest.approx([0.2, 0.2])  # 2 updates = one rollout batch (per: rollout)
