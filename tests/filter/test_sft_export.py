"""Stage ``export``: TRL, LLaMA-Factory and HF datasets files re-load with ``datasets`` and follow the rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filter_factory import stored_image, synth_row, teacher_output, write_synthesized
from PIL import Image

from corpus.guard_format import count_image_tokens, guard_system_prompt, guard_user_text, parse_answers
from corpus.recipe import parse_recipe
from corpus.stages import export as export_stage
from corpus.stages import filter as filter_stage
from corpus.stages.export import ExportConfig, ExportError, validate
from corpus.store import StageDir

BRACES = "Write {name} a {{template}} with {0} and %s"


def _build(run_dir: Path, recipe, extra: list[dict] | None = None) -> dict:
    img1, img2 = stored_image(run_dir, 1), stored_image(run_dir, 2)
    rows = [
        synth_row(0, prompt=BRACES),
        synth_row(1, source="beavertails", request_label=None, response="Sure {x}", response_label="harmful",
                  teacher=teacher_output("harmful", "harmful", tasks=3, refusal="compliance")),
        synth_row(2, source="unsafebench", modality="image", prompt=None, images=[img1], request_label="unharmful"),
        synth_row(3, source="spavl", modality="text_image", prompt="what is this?", images=[img2],
                  response="a cat", response_label="unharmful", request_label="unharmful"),
        synth_row(4, source="concat", modality="text_image", prompt="two", images=[img1, img2],
                  response=None, request_label="harmful"),
        synth_row(5, request_label="unharmful", teacher=teacher_output("harmful", None)),  # dropped by filter
    ] + (extra or [])
    write_synthesized(run_dir, [rows[:3], rows[3:]])
    filter_stage.run(recipe, run_dir)
    return export_stage.run(recipe, run_dir)


def _load_json(path: Path, tmp: Path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp / "hfcache"))


def test_export_writes_and_validates_all_formats(run_dir, recipe, tmp_path):
    m = _build(run_dir, recipe)
    assert m["validated"] and (m["rows_in"], m["rows_out"], m["rows_dropped"]) == (5, 5, 0)
    assert m["counters"] == {"rows:image": 1, "rows:text": 2, "rows:text_image": 2}
    out = run_dir / "export"
    assert {f["path"] for f in m["files"]} >= {"trl/train.jsonl", "llamafactory/dataset_info.json",
                                               "llamafactory/GuardReasoner-VLTrainText.json"}
    assert not (out / "_hf_cache").exists() and not (out / "_check_cache").exists()
    filtered = {r["id"]: r for r in StageDir(run_dir, "filter").read().to_pylist()}

    # --- TRL conversational prompt/completion/images
    trl = _load_json(out / "trl" / "train.jsonl", tmp_path)
    assert len(trl) == 5
    for row in trl:
        src = filtered[row["id"]]
        assert [m_["role"] for m_ in row["prompt"]] == ["system", "user"]
        assert row["completion"] == [{"role": "assistant", "content": src["sft_target"]}]
        image_blocks = [b for b in row["prompt"][1]["content"] if b["type"] == "image"]
        assert len(image_blocks) == len(row["images"]) == len(src["images"])
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in row["images"])
        text = "".join("<image>" if b["type"] == "image" else b["text"] for b in row["prompt"][1]["content"])
        assert text == guard_user_text(src["prompt"], src["response"], len(src["images"]))
        assert row["prompt"][0]["content"] == [{"type": "text", "text": guard_system_prompt()}]
    by_id = {r["id"]: r for r in trl}
    braces_row = next(r for r in by_id.values() if r["source"] == "wildguardtrain")
    assert BRACES in braces_row["prompt"][1]["content"][0]["text"]

    # --- LLaMA-Factory sharegpt files, checked against its rules
    lf = out / "llamafactory"
    info = json.loads((lf / "dataset_info.json").read_text())
    assert set(info) == {"GuardReasoner-VLTrainText", "GuardReasoner-VLTrainImage", "GuardReasoner-VLTrainTextImage"}
    total = 0
    for name, entry in info.items():
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "messages", "images": "images"}
        assert entry["tags"] == {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                 "assistant_tag": "assistant", "system_tag": "system"}
        raw = json.loads((lf / entry["file_name"]).read_text())  # plain JSON array, as LLaMA-Factory reads it
        ds = _load_json(lf / entry["file_name"], tmp_path)
        assert len(ds) == len(raw) > 0
        total += len(ds)
        for rec in ds:
            msgs = rec["messages"]
            assert [x["role"] for x in msgs] == ["system", "user", "assistant"]
            # after the system turn: user/assistant alternate and the count is even
            assert len(msgs[1:]) % 2 == 0
            assert sum(count_image_tokens(x["content"]) for x in msgs) == len(rec["images"])
            assert all(Path(p).is_file() for p in rec["images"])
            ans = parse_answers(msgs[2]["content"])
            assert ans.request in ("harmful", "unharmful") and ans.response in ("harmful", "unharmful", None)
        if name.endswith("Text"):
            assert all(rec["images"] == [] for rec in raw)
        else:
            assert all(len(rec["images"]) >= 1 for rec in raw)
    assert total == 5
    text_file = json.loads((lf / "GuardReasoner-VLTrainText.json").read_text())
    assert any(BRACES in rec["messages"][1]["content"] for rec in text_file)

    # --- HF dataset on disk, images embedded
    from datasets import load_from_disk

    hf = load_from_disk(str(out / "hf"))
    assert len(hf) == 5
    for row in hf:
        assert all(isinstance(im, Image.Image) for im in row["images"])
        assert len(row["images"]) == sum(b["type"] == "image" for b in row["prompt"][1]["content"])
    two = next(r for r in hf if len(r["images"]) == 2)
    assert two["images"][0].size == (48, 32)

    # --- index part and stats
    idx = StageDir(run_dir, "export").read()
    assert sorted(idx.column("id").to_pylist()) == sorted(filtered)
    st = export_stage.stats(run_dir)
    assert {r["file"]: r["rows"] for r in st["files"]}["trl/train.jsonl"] == 5


def test_export_skips_when_unchanged_and_reruns_on_force(run_dir, recipe):
    m = _build(run_dir, recipe)
    assert export_stage.run(recipe, run_dir) == m
    m2 = export_stage.run(recipe, run_dir, force=True)
    assert m2["timings"] != m["timings"]
    assert m2["output_fingerprint"] == m["output_fingerprint"]  # same input and config: same bytes


def test_missing_image_is_a_recorded_drop(run_dir, recipe):
    img = stored_image(run_dir, 9)
    extra = [synth_row(9, source="hod", modality="image", prompt=None, images=[img], request_label="harmful")]
    write_synthesized(run_dir, [extra, [synth_row(10)]])
    filter_stage.run(recipe, run_dir)
    (run_dir / img["path"]).unlink()
    m = export_stage.run(recipe, run_dir)
    assert m["rows_dropped"] == 1 and m["drop_reasons"] == {"image_missing": 1} and m["rows_out"] == 1
    assert "GuardReasoner-VLTrainImage" not in m["exports"]["llamafactory"]["datasets"]
    dropped = StageDir(run_dir, "export").read("dropped").to_pylist()
    assert dropped[0]["id"] == extra[0]["id"] and "missing" in dropped[0]["detail"]
    assert dropped[0]["sft_target"]  # the full filtered row is kept


def test_run_relative_paths_and_hf_images_by_path(run_dir, tmp_path):
    recipe = parse_recipe({"name": "x", "export": {"image_paths": "run_relative", "hf_images": "path",
                                                   "formats": ["llamafactory", "hf"]}})
    m = _build(run_dir, recipe)
    out = run_dir / "export"
    assert not (out / "trl").exists() and set(m["exports"]) == {"llamafactory", "hf"}
    raw = json.loads((out / "llamafactory" / "GuardReasoner-VLTrainTextImage.json").read_text())
    paths = [p for rec in raw for p in rec["images"]]
    assert paths and all(not Path(p).is_absolute() and (run_dir / p).is_file() for p in paths)
    from datasets import Image as HFImage
    from datasets import List, load_from_disk

    hf = load_from_disk(str(out / "hf"))
    stored = [p for row in hf for p in row["images"]]
    assert stored and all(Path(p).is_absolute() and Path(p).is_file() for p in stored)
    decoded = hf.cast_column("images", List(HFImage()))
    assert all(isinstance(im, Image.Image) for row in decoded for im in row["images"])


def test_validation_fails_loudly_on_broken_files(run_dir, recipe):
    m = _build(run_dir, recipe)
    out = run_dir / "export"
    cfg = ExportConfig()
    summary = {"exports": m["exports"]}
    validate(out, run_dir, cfg, summary)  # intact: passes
    path = out / "llamafactory" / "GuardReasoner-VLTrainImage.json"
    good = path.read_text()
    recs = json.loads(good)
    recs[0]["images"] = []  # one <image> token, no image
    path.write_text(json.dumps(recs))
    with pytest.raises(ExportError, match="1 <image> tokens but 0 images"):
        validate(out, run_dir, cfg, summary)
    recs[0]["images"] = ["/nonexistent/x.png"]
    path.write_text(json.dumps(recs))
    with pytest.raises(ExportError, match="image path does not exist"):
        validate(out, run_dir, cfg, summary)
    path.write_text(good)
    trl = out / "trl" / "train.jsonl"
    lines = trl.read_text().splitlines()
    row = json.loads(lines[0])
    row["completion"][0]["content"] = "no format"
    trl.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    with pytest.raises(ExportError, match="not <think>"):
        validate(out, run_dir, cfg, summary)


def test_empty_export_fails_loudly(run_dir, recipe):
    write_synthesized(run_dir, [[synth_row(0, request_label="unharmful", teacher=teacher_output("harmful", None))]])
    filter_stage.run(recipe, run_dir)
    with pytest.raises(ExportError, match="nothing to export"):
        export_stage.run(recipe, run_dir)
    assert StageDir(run_dir, "export").manifest() is None


def test_export_needs_a_finished_filter(run_dir, recipe):
    with pytest.raises(FileNotFoundError, match="filter"):
        export_stage.run(recipe, run_dir)


@pytest.mark.slow
def test_trl_fills_the_image_placeholders(run_dir, recipe, tmp_path):
    """TRL's own multimodal preparation accepts the exported prompts with their images."""
    from trl.data_utils import prepare_multimodal_messages

    _build(run_dir, recipe)
    trl = _load_json(run_dir / "export" / "trl" / "train.jsonl", tmp_path)
    for row in trl:
        images = [Image.open(p) for p in row["images"]]
        msgs = prepare_multimodal_messages(row["prompt"], images=images)
        filled = [b for m_ in msgs for b in m_["content"] if b["type"] == "image"]
        assert len(filled) == len(images) and all("image" in b for b in filled)
        completion = prepare_multimodal_messages(row["completion"])
        assert completion[0]["content"][0]["text"].startswith("<think>")


def test_trl_file_in_part_order_loads_at_any_size(run_dir, recipe, tmp_path):
    """Text parts first, images after (the order ingest writes): read in 4 KB chunks, as `datasets` reads a
    30K-row file in 10 MB ones, the TRL file still loads, because its first rows hold every row shape."""
    from datasets import load_dataset

    img = stored_image(run_dir, 1)
    text = [synth_row(i, response=None if i % 3 else "ok", response_label=None if i % 3 else "unharmful")
            for i in range(120)]
    image = [synth_row(200 + i, source="unsafebench", modality="image", prompt=None, images=[img],
                       request_label="unharmful") for i in range(10)]
    write_synthesized(run_dir, [text[:60], text[60:], image])
    filter_stage.run(recipe, run_dir)
    m = export_stage.run(recipe, run_dir)
    ds = load_dataset("json", data_files=str(run_dir / "export" / "trl" / "train.jsonl"), split="train",
                      chunksize=4096, cache_dir=str(tmp_path / "hfcache"))
    assert len(ds) == m["rows_out"] == 130
    assert sum(len(i) for i in ds["images"]) == 10 and sum(r is not None for r in ds["response_label"]) == 40
