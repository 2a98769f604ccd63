"""The paper recipe's composition (Table 6) and RL step arithmetic, as `corpus check --counts` prints them."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from realdata_path import REALDATA

from corpus.composition import KNOWN, PAPER_TABLE6, VLGUARD_PREFIXES, expected_counts
from corpus.recipe import load_recipe, parse_recipe
from corpus.training.config import PAPER_RL, TrainRLConfig

PAPER = Path(__file__).resolve().parents[2] / "pipelines" / "guardreasoner_vl.yaml"


def _check(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "corpus.cli", "check", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_paper_recipe_lands_on_table6():
    report = expected_counts(load_recipe(PAPER))
    train = {m["modality"]: m["train"] for m in report["modalities"]}
    assert {k: round(v) for k, v in train.items()} == PAPER_TABLE6 == {"text": 63_799, "image": 13_267,
                                                                        "text_image": 46_030}
    assert round(report["train_total"]) == 123_096 and not report["unknown_sizes"]
    image = next(m for m in report["modalities"] if m["modality"] == "image")
    assert round(image["pool"]) == 16_562 and image["eval_removed"] == 3_295 and image["heldout"] == 0
    assert report["eval_sets_inside_pool"] == ["HarmImageTest"]


def test_check_counts_prints_the_composition():
    out = _check("--counts", str(PAPER))
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert rows["text"][-2:] == ["63,799.0", "63,799"]
    assert rows["image"][-2:] == ["13,267.0", "13,267"] and rows["image"][1:3] == ["16,562.0", "3,295"]
    assert rows["text_image"][-2:] == ["46,030.0", "46,030"]
    assert rows["hod"][3:5] == ["10,631", "0.682062"] and rows["unsafebench_train"][3] == "8,109"
    assert "unsafebench_test" not in rows
    assert "clip schedule: product eps 0.2, one step per rollout batch (24 steps over 48 updates" in out
    assert "= train" not in _check(str(PAPER))  # the table only with --counts


def test_the_former_composition_came_out_short():
    """Both UnsafeBench splits, VLGuard train only, 60% HOD and a fresh 20% hold-out: ~11.2K, not 13,267."""
    rec = load_recipe(PAPER).model_dump()
    ing = rec["ingest"]
    ing["sources"] = [s for s in ing["sources"] if not s["name"].endswith("_test")]
    ing["sources"].append({**next(s for s in ing["sources"] if s["name"] == "unsafebench_train"),
                           "name": "unsafebench_test", "split": "test"})
    next(s for s in ing["sources"] if s["name"] == "hod")["fraction"] = 0.6
    ing["heldout"] = {"name": "harm_image_test", "modalities": ["image"], "fraction": 0.2}
    rec.pop("base_dir", None)
    report = expected_counts(parse_recipe(rec))
    image = next(m for m in report["modalities"] if m["modality"] == "image")
    assert image["pool"] == pytest.approx(10_146 + 800 + 0.6 * 10_631)
    assert image["train"] == pytest.approx((image["pool"] - 3_295) * 0.8)
    assert 11_000 < image["train"] < 11_700


def test_unknown_sources_are_listed_not_guessed():
    rec = parse_recipe({"name": "x", "ingest": {"heldout": None, "sources": [
        {"name": "mine", "adapter": "hod", "path": "x", "fraction": 0.5},
        {"name": "other", "adapter": "guardreasoner", "path": "y.json"}]}})
    report = expected_counts(rec)
    assert report["unknown_sizes"] == ["other"]
    assert report["modalities"] == [{"modality": "image", "pool": 10_631 * 0.5, "eval_removed": 0, "heldout": 0.0,
                                     "train": 10_631 * 0.5, "paper": 13_267}]


def test_known_sizes_are_the_ones_in_sources_md():
    doc = REALDATA.parent / "sources.md"
    if not doc.is_file():
        pytest.skip("shared/sources.md not beside the checkout")
    text = doc.read_text(encoding="utf-8")
    for k in KNOWN:
        assert f"{k.size:,d}" in text, k
    train, test = VLGUARD_PREFIXES["train.json"], VLGUARD_PREFIXES["test.json"]
    for prefix in train:
        assert f"{prefix} {train[prefix]}+{test[prefix]}" in text, prefix
    assert "3,295" in text and "16,562" not in text  # the pool size is derived, not quoted


@pytest.mark.parametrize("settings", [PAPER_RL, "recipe"])
def test_rl_max_steps_is_one_epoch_of_the_12k_set(settings):
    recipe = load_recipe(PAPER)
    rl = recipe.train_rl if settings == "recipe" else TrainRLConfig(**PAPER_RL)
    procs = rl.accelerate.num_processes * rl.accelerate.num_machines
    prompts_per_update = rl.per_device_train_batch_size * rl.gradient_accumulation_steps * procs // rl.num_generations
    prompts_per_rollout = prompts_per_update * rl.updates_per_rollout
    assert (prompts_per_update, prompts_per_rollout) == (256, 512)
    rollouts = math.ceil(recipe.concat.total / prompts_per_rollout)
    assert recipe.concat.total == 12_000 and rollouts == 24
    assert rl.max_steps == rollouts * rl.updates_per_rollout == 48


def test_trl_pin_is_the_tested_range():
    """pyproject pins trl to the minor release whose internals the GRPO subclass overrides (installed here)."""
    import inspect
    from importlib.metadata import version

    import tomllib
    from packaging.requirements import Requirement
    from trl import GRPOTrainer

    project = tomllib.loads((PAPER.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    (trl,) = [Requirement(r) for r in project["project"]["optional-dependencies"]["train"] if r.startswith("trl")]
    assert trl.specifier.contains(version("trl"))
    assert not trl.specifier.contains("0.17.0") and not trl.specifier.contains("1.17.0")
    # the internals the subclass overrides, with the arguments it passes
    sig = inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies)
    assert {"pixel_values", "image_grid_thw", "num_images", "compute_entropy", "batch_size"} <= set(sig.parameters)
    assert hasattr(GRPOTrainer, "_generate")
