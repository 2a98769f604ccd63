"""rl-export: every layout re-loads with its consumer's reader and validates; broken rows are caught."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
from concat_helpers import file_hashes, make_row, mixed_rows, recipe, write_sample_stage
from jinja2 import Template

from corpus.guard_format import guard_system_prompt, parse_answers
from corpus.stages import concat, rl_export
from corpus.stages.rl_export import FILES, ExportInvalid, load_format, validate_rows


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("rl")
    rows = mixed_rows(run, 30, hard_every=1, n_images=2)
    bad = make_row(run, 99, modality="text", hard=True)
    bad["prompt"] = "describe <image> please"  # a reserved token in the text: cannot be exported faithfully
    write_sample_stage(run, rows + [bad])
    rec = recipe(total=31, share=0.2, image_mode="list")
    concat.run(rec, run)
    return run, rl_export.run(rec, run)


def _concat_rows(run: Path) -> dict[str, dict]:
    return {r["id"]: r for r in concat.StageDir(run, "concat").read().to_pylist()}


def test_manifest_and_every_format_validates(run):
    run_dir, m = run
    src = _concat_rows(run_dir)
    assert m["rows_in"] == len(src) == 31
    (reason,) = m["drop_reasons"]
    assert reason == "reserved_token:<image>" and m["rows_out"] == m["rows_in"] - m["drop_reasons"][reason]
    assert sorted(m["formats"]) == sorted(FILES)
    for fmt, info in m["formats"].items():
        rows = load_format(fmt, run_dir / "rl-export" / info["path"])
        assert len(rows) == info["rows"] == m["rows_out"]
        assert validate_rows(fmt, rows) == []
    assert rl_export.stats(run_dir)["formats"] == {f: m["rows_out"] for f in FILES}


def test_trl_layout_loads_with_datasets(run, tmp_path):
    from datasets import Dataset
    from PIL.Image import Image as PILImage

    run_dir, _ = run
    src = _concat_rows(run_dir)
    ds = Dataset.from_parquet(str(run_dir / "rl-export" / FILES["trl"]), cache_dir=str(tmp_path / "hf"))
    assert {"prompt", "images", "request_label", "response_label"} <= set(ds.column_names)
    seen_multi = False
    for ex in ds:
        row = src[ex["id"]]
        assert [i.size for i in ex["images"]] == [(i["width"], i["height"]) for i in row["images"]]
        assert all(isinstance(i, PILImage) for i in ex["images"])
        seen_multi |= len(ex["images"]) > 1
        blocks = [b for m in ex["prompt"] for b in m["content"]]
        assert sum(b["type"] == "image" for b in blocks) == len(ex["images"])
        system = ex["prompt"][0]
        assert system["role"] == "system" and system["content"][0]["text"] == guard_system_prompt()
        assert (ex["request_label"], ex["response_label"]) == (row["request_label"], row["response_label"])
        answer = parse_answers(ex["answer"])
        assert (answer.request, answer.response) == (row["request_label"], row["response_label"])
    assert seen_multi  # list mode gives concatenated rows with several images


@pytest.mark.slow  # importing trl + transformers takes 10-25 s on 2 busy cores
def test_trl_prompt_through_trl_and_a_qwen2_5_vl_processor(run, tmp_path):
    from datasets import Dataset
    from trl.data_utils import prepare_multimodal_messages

    from corpus.models import load_processor
    from corpus.training.tiny_model import tiny_model_path

    run_dir, _ = run
    ds = Dataset.from_parquet(str(run_dir / "rl-export" / FILES["trl"]), cache_dir=str(tmp_path / "hf"))
    for ex in ds:
        msgs = prepare_multimodal_messages(ex["prompt"], images=ex["images"])  # raises on a count mismatch
        filled = [b["image"] for m in msgs for b in m["content"] if b["type"] == "image"]
        assert filled == ex["images"]
    processor = load_processor(tiny_model_path())
    ex = max(ds, key=lambda e: len(e["images"]))
    msgs = prepare_multimodal_messages(ex["prompt"], images=ex["images"])
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.count("<|vision_start|>") == len(ex["images"]) >= 2
    enc = processor(images=ex["images"], text=[text], return_tensors="pt")
    assert enc["image_grid_thw"].shape[0] == len(ex["images"])


def test_easyr1_layout_as_easyr1_builds_messages(run):
    run_dir, m = run
    src = _concat_rows(run_dir)
    template = (run_dir / "rl-export" / "easyr1" / "format_prompt.jinja").read_text()
    rows = load_format("easyr1", run_dir / "rl-export" / FILES["easyr1"])
    for row in rows:
        rendered = Template(template.strip()).render(content=row["prompt"])
        assert rendered == guard_system_prompt().rstrip("\n") + "\n\n" + row["prompt"]
        pieces = rendered.split("<image>")  # what EasyR1 does to place its image blocks
        assert len(pieces) - 1 == len(row["images"]) == len(src[row["id"]]["images"])
        assert all(Path(p).is_file() for p in row["images"])
        gold = src[row["id"]]
        assert (parse_answers(row["answer"]).request, parse_answers(row["answer"]).response) == (
            gold["request_label"], gold["response_label"])
    assert "easyr1/guard_reward.py" in m["reward_files"]


def test_easyr1_reward_file_scores_the_ground_truth(run):
    run_dir, _ = run
    path = run_dir / "rl-export" / "easyr1" / "guard_reward.py"
    spec = importlib.util.spec_from_file_location("guard_reward_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = load_format("easyr1", run_dir / "rl-export" / FILES["easyr1"])[0]
    good = "<think>\nchecked\n</think>\n" + row["answer"]
    flipped = good.replace("Request: harmful", "Request: X").replace("Request: unharmful", "Request: harmful")
    flipped = flipped.replace("Request: X", "Request: unharmful")
    out = mod.compute_score([{"response": good, "response_length": 2048, "ground_truth": row["answer"]},
                             {"response": flipped, "response_length": 2048, "ground_truth": row["answer"]}])
    assert out[0]["safety"] == 1.0 and out[1]["request"] == 0.0


def test_swift_and_verl_layouts(run):
    run_dir, m = run
    src = _concat_rows(run_dir)
    swift = load_format("swift", run_dir / "rl-export" / FILES["swift"])
    for row in swift:
        assert [x["role"] for x in row["messages"]] == ["system", "user"]
        assert row["messages"][1]["content"].count("<image>") == len(row["images"]) == len(src[row["id"]]["images"])
        assert row["request_label"] == src[row["id"]]["request_label"]
    compile((run_dir / "rl-export" / "swift" / "guard_reward_plugin.py").read_text(), "plugin", "exec")
    verl = load_format("verl", run_dir / "rl-export" / FILES["verl"])
    for row in verl:
        gold = src[row["extra_info"]["id"]]
        assert sum(x["content"].count("<image>") for x in row["prompt"]) == len(row["images"]) == len(gold["images"])
        assert all(Path(i["image"]).is_file() for i in row["images"])
        assert row["reward_model"]["ground_truth"].startswith("<result>")


def test_validation_catches_broken_rows(run):
    run_dir, _ = run
    for fmt in FILES:
        rows = load_format(fmt, run_dir / "rl-export" / FILES[fmt])
        row = next(r for r in rows if r["images"])
        broken = copy.deepcopy(row)
        broken["images"] = broken["images"][:-1]  # one image fewer than placeholders
        assert any("placeholders" in p for p in validate_rows(fmt, [broken]))
        missing = copy.deepcopy(row)
        first = missing["images"][0]
        if isinstance(first, dict) and "image" in first:
            first["image"] = "/nonexistent/x.png"
        elif isinstance(first, dict):
            first["path"] = "/nonexistent/x.png"
        else:
            missing["images"][0] = "/nonexistent/x.png"
        assert any("missing" in p for p in validate_rows(fmt, [missing]))
        bad_label = copy.deepcopy(row)
        if fmt == "verl":
            bad_label["extra_info"]["request_label"] = "safe"
        elif fmt == "easyr1":
            bad_label["answer"] = "<result>\nRequest: safe\nResponse: None\n</result>"
        else:
            bad_label["request_label"] = "safe"
        assert any("request label" in p for p in validate_rows(fmt, [bad_label]))
    with pytest.raises(ExportInvalid, match="placeholders"):
        path = run_dir / "broken.jsonl"
        swift = load_format("swift", run_dir / "rl-export" / FILES["swift"])
        row = next(r for r in swift if r["images"])
        row["images"] = []
        path.write_text(__import__("json").dumps(row) + "\n")
        rl_export.validate_export("swift", path)


def test_skip_rerun_and_tamper(tmp_path):
    write_sample_stage(tmp_path, mixed_rows(tmp_path, 12))
    rec = recipe(total=10, share=0.2, rl_export={"formats": ["easyr1", "swift"]})
    concat.run(rec, tmp_path)
    m1 = rl_export.run(rec, tmp_path)
    assert sorted(m1["formats"]) == ["easyr1", "swift"] and not (tmp_path / "rl-export" / "trl").exists()
    hashes = file_hashes(tmp_path / "rl-export")
    assert rl_export.run(rec, tmp_path)["timings"] == m1["timings"]  # skipped
    (tmp_path / "rl-export" / FILES["swift"]).write_text("")  # a damaged file is noticed and rewritten
    m2 = rl_export.run(rec, tmp_path)
    assert m2["timings"] != m1["timings"] and file_hashes(tmp_path / "rl-export") == hashes


def test_needs_the_concat_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus concat"):
        rl_export.run(recipe(), tmp_path)


def test_one_file_per_modality_next_to_the_mixed_one(run):
    run_dir, m = run
    src = _concat_rows(run_dir)
    for fmt, info in m["formats"].items():
        mixed = load_format(fmt, run_dir / "rl-export" / info["path"])
        by_mod = info["by_modality"]
        assert set(by_mod) == {src[_row_id(fmt, r)]["modality"] for r in mixed}
        assert len(by_mod) >= 2  # the fixture mixes text-only and image rows
        seen = []
        for modality, part in by_mod.items():
            assert part["path"] == rl_export.modality_file(fmt, modality)
            rows = load_format(fmt, run_dir / "rl-export" / part["path"])
            assert len(rows) == part["rows"] and validate_rows(fmt, rows) == []
            assert {src[_row_id(fmt, r)]["modality"] for r in rows} == {modality}
            assert all(bool(r["images"]) is (modality != "text") for r in rows)
            seen += [_row_id(fmt, r) for r in rows]
        assert sorted(seen) == sorted(_row_id(fmt, r) for r in mixed)
        assert {rel for rel, _ in m["files"]} >= {p["path"] for p in by_mod.values()} | {info["path"]}
        assert rl_export.stats(run_dir)["by_modality"][fmt] == {k: v["rows"] for k, v in by_mod.items()}


def _row_id(fmt: str, row: dict) -> str:
    return row["extra_info"]["id"] if fmt == "verl" else row["id"]


def test_readmes_say_which_trainer_needs_what(run):
    run_dir, m = run
    out = (run_dir / "rl-export").resolve()
    top = (out / "README.md").read_text()
    assert "crashes on a batch mixing image and text-only rows" in top and "trl/train.text.parquet" in top
    assert "Dynamic clipping exists only on the toolkit's TRL path" in top
    verl = (out / "verl" / "README.md").read_text()
    assert f"path: {out}/verl/guard_reward.py" in verl and "name: compute_score" in verl
    assert "max_response_length: ${data.max_response_length}" in verl
    assert {"README.md", "verl/README.md"} <= set(m["extras"])
    assert sorted(m["reward_files"]) == ["easyr1/guard_reward.py", "swift/guard_reward_plugin.py",
                                         "trl/guard_reward.py", "verl/guard_reward.py"]


def test_reward_files_carry_the_recipe_settings_and_no_toolkit_import(run):
    from corpus.training.config import reward_settings
    from corpus.training.rewards import REWARD_FILES, reward_file_source

    run_dir, m = run
    rec = recipe(total=31, share=0.2, image_mode="list")
    for trainer, rel in REWARD_FILES.items():
        text = (run_dir / "rl-export" / rel).read_text()
        assert text == reward_file_source(trainer, reward_settings(rec.train_rl))
        assert f"'max_length': {rec.train_rl.max_completion_length}" in text
        imports = {line.split()[1] for line in text.splitlines() if line.startswith(("import ", "from "))}
        assert not any(i.startswith("corpus") for i in imports) and "sys.path.insert" not in text


def test_clip_schedule_ships_with_the_export(run):
    import json

    from corpus.training.clip_schedule import clip_range

    run_dir, m = run
    rec = recipe(total=31, share=0.2, image_mode="list")
    sched = json.loads((run_dir / "rl-export" / "clip_schedule.json").read_text())
    rl = rec.train_rl
    assert sched["per"] == "rollout" and sched["updates"] == rl.max_steps
    assert sched["steps"] == -(-rl.max_steps // (rl.updates_per_rollout * rl.num_iterations))
    assert sched["values"] == [clip_range(s, sched["steps"], rl.clip.epsilon, rl.clip.schedule)
                               for s in range(sched["steps"])]
    assert "clip_schedule.json" in m["extras"]
