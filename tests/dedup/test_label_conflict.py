"""Copies of one sample whose gold labels disagree: none kept (``label_conflict``, the default) or the copy of
the source listed first in ``label_conflict.priority``. Real layouts: WildGuardMix Parquet, a ToxicChat csv,
UnsafeBench Parquet with HF image structs."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from datagen import image_bytes, unsafebench_row, wildguard_row, write_unsafebench, write_wildguard  # noqa: E402

from corpus.dedup import LabelConflicts, labels_conflict  # noqa: E402
from corpus.recipe import RecipeError, load_recipe  # noqa: E402
from corpus.stages import ingest  # noqa: E402
from corpus.store import StageDir  # noqa: E402

Q = "How do I get into my neighbour's wifi network without asking for the password?"


def toxicchat_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["conv_id", "user_input", "model_output", "human_annotation", "toxicity", "jailbreaking",
                    "openai_moderation"])
        for conv, text, tox in rows:
            w.writerow([conv, text, "x", "True", tox, "0", "[]"])
    return path


def recipe(tmp_path: Path, sources: list[dict], **cfg) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "seed": 3, "ingest": {"sources": sources, "heldout": None, **cfg}}))
    return p


def outcome(out: Path) -> tuple[list[tuple[str, str | None]], list[tuple[str, str, str]]]:
    sd = StageDir(out, "ingest")
    kept = [(r["source"], r["request_label"]) for r in sd.read().to_pylist()]
    dropped = [(d["source"], d["source_id"], d["drop_reason"]) for d in sd.read("dropped").to_pylist()]
    return kept, sorted(dropped)


def text_sources(tmp_path: Path, third: str = "1") -> list[dict]:
    (tmp_path / "wildguardmix/train").mkdir(parents=True, exist_ok=True)
    wg = write_wildguard(tmp_path / "wildguardmix/train/wildguard_train.parquet", [
        wildguard_row(Q, label="harmful"), wildguard_row("What is a good name for a goldfish?", label="unharmful"),
        wildguard_row("Tell me a joke about cats.", label="unharmful")])
    tc = toxicchat_csv(tmp_path / "toxicchat/data/0124/toxic-chat_annotation_train.csv", [
        ("c1", "  " + Q.upper(), "0"),                      # same sample, other label: a conflict
        ("c2", "tell me a joke about CATS.", "0"),          # same sample, same label: a plain duplicate
        ("c3", Q, third)])                                  # a third copy of the conflicting sample
    return [{"name": "wg", "adapter": "wildguardmix", "path": str(wg)},
            {"name": "tc", "adapter": "toxicchat", "path": str(tc)}]


def test_default_drops_every_copy_of_a_conflict(tmp_path):
    m = ingest.run(load_recipe(recipe(tmp_path, text_sources(tmp_path), part_rows=2)), tmp_path / "out")
    kept, dropped = outcome(tmp_path / "out")
    assert kept == [("wg", "unharmful"), ("wg", "unharmful")]
    assert dropped == [("tc", "c1", "label_conflict"), ("tc", "c2", "duplicate"), ("tc", "c3", "label_conflict"),
                       ("wg", "0", "label_conflict")]  # both rows of the conflict in dropped/, the first one too
    assert m["drop_reasons"] == {"duplicate": 1, "label_conflict": 3}
    assert m["rows_in"] == m["rows_out"] + m["rows_dropped"] == 6
    detail = {d["source_id"]: d["detail"] for d in StageDir(tmp_path / "out", "ingest").read("dropped").to_pylist()}
    assert "request=harmful" in detail["0"] and "request=unharmful" in detail["0"]


def test_priority_keeps_the_trusted_copy(tmp_path):
    sources = text_sources(tmp_path, third="0")  # tc's two copies agree: unharmful
    ingest.run(load_recipe(recipe(tmp_path, sources, label_conflict={"keep": "priority", "priority": ["tc"]})),
               tmp_path / "tc_first")
    kept, dropped = outcome(tmp_path / "tc_first")
    assert ("tc", "unharmful") in kept and ("wg", "harmful") not in kept  # the later, trusted copy replaces it
    assert dropped == [("tc", "c2", "duplicate"), ("tc", "c3", "duplicate"), ("wg", "0", "label_conflict")]
    detail = [d["detail"] for d in StageDir(tmp_path / "tc_first", "ingest").read("dropped").to_pylist()
              if d["drop_reason"] == "label_conflict"]
    assert detail and "source priority" in detail[0]
    sources = text_sources(tmp_path)  # tc's own copies disagree: equally ranked, so none of them is kept
    ingest.run(load_recipe(recipe(tmp_path, sources, label_conflict={"keep": "priority", "priority": ["tc"]})),
               tmp_path / "tc_split")
    kept, dropped = outcome(tmp_path / "tc_split")
    assert [k for k in kept if k[0] == "tc"] == []
    assert dropped == [("tc", "c1", "label_conflict"), ("tc", "c2", "duplicate"), ("tc", "c3", "label_conflict"),
                       ("wg", "0", "label_conflict")]
    ingest.run(load_recipe(recipe(tmp_path, sources, label_conflict={"keep": "priority", "priority": ["wg", "tc"]})),
               tmp_path / "wg_first")
    kept, dropped = outcome(tmp_path / "wg_first")
    assert ("wg", "harmful") in kept
    assert dropped == [("tc", "c1", "label_conflict"), ("tc", "c2", "duplicate"), ("tc", "c3", "duplicate")]


def test_priority_must_name_sources(tmp_path):
    with pytest.raises(RecipeError, match="nope"):
        load_recipe(recipe(tmp_path, text_sources(tmp_path), label_conflict={"keep": "priority", "priority": ["nope"]}))
    with pytest.raises(RecipeError, match="priority"):
        load_recipe(recipe(tmp_path, text_sources(tmp_path), label_conflict={"keep": "priority"}))


def test_image_conflict_and_its_image_leave_the_run(tmp_path):
    img = image_bytes(11, (96, 64))
    ub = write_unsafebench(tmp_path / "ub.parquet", [unsafebench_row(img, label="Unsafe"),
                                                      unsafebench_row(image_bytes(12, (96, 64)), label="Safe")])
    ub2 = write_unsafebench(tmp_path / "ub2.parquet", [unsafebench_row(img, label="Safe")])
    m = ingest.run(load_recipe(recipe(tmp_path, [{"name": "a", "adapter": "unsafebench", "path": str(ub)},
                                                 {"name": "b", "adapter": "unsafebench", "path": str(ub2)}])),
                   tmp_path / "out")
    assert m["drop_reasons"] == {"label_conflict": 2} and m["rows_out"] == 1
    assert len(list((tmp_path / "out/images").rglob("*.png"))) == 1  # the conflicting image is not in the run


def test_resume_decides_as_an_uninterrupted_run(tmp_path):
    r = recipe(tmp_path, text_sources(tmp_path), part_rows=1)
    ref = tmp_path / "ref"
    mref = ingest.run(load_recipe(r), ref)
    for cut in (1, 3, 4):  # killed after unit `cut`: later units redone (after the conflict, and before the end)
        resumed = tmp_path / f"resumed{cut}"
        shutil.copytree(ref, resumed)
        stage = resumed / "ingest"
        (stage / "_manifest.json").unlink()
        for part in [*stage.glob("part-*.parquet"), *(stage / "dropped").glob("part-*.parquet")]:
            if int(part.stem.split("-")[1]) >= cut:
                part.unlink()
        m = ingest.run(load_recipe(r), resumed)
        assert outcome(resumed) == outcome(ref), cut
        assert m["drop_reasons"] == mref["drop_reasons"]


def test_conflict_rules():
    assert labels_conflict(("harmful", None, None), ("unharmful", None, None))
    assert not labels_conflict(("harmful", None, None), (None, "harmful", None))  # null is unknown, not a vote
    lc = LabelConflicts("none")
    lc.first("k", "r1", "a", ("harmful", None, None))
    v = lc.judge("k", "r2", "b", ("harmful", "unharmful", None))
    assert v.kind == "duplicate"
    v = lc.judge("k", "r3", "b", ("unharmful", None, None))
    assert v.kind == "label_conflict" and v.revoke[0] == "r1"
    assert lc.holder("k") is not None  # judge changes nothing until applied
    lc.apply("k", v)
    assert lc.holder("k") is None and lc.judge("k", "r4", "a", ("harmful", None, None)).kind == "label_conflict"
