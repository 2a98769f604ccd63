"""Drop reasons say what is wrong: a missing label is ``missing_label:<col>`` (never "is not a boolean"),
an Aegis row nobody annotated is a missing label, a GuardReasoner output cut before its answers is
``malformed_input`` (its reasoning is not quoted as a label), a null image is ``missing_value:image``.

Every file is in its seed's real layout and goes through the ingest stage, so the reasons are the ones
the drop table shows.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from text_source_helpers import REAL

from corpus.recipe import load_recipe
from corpus.stages import ingest
from corpus.store import StageDir


def run_ingest(tmp_path: Path, sources: list[dict]) -> tuple[dict, list[dict]]:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "ingest": {"sources": sources, "heldout": None}}))
    m = ingest.run(load_recipe(recipe), tmp_path / "out")
    return m, StageDir(tmp_path / "out", "ingest").read("dropped").to_pylist()


def by_source(dropped: list[dict]) -> dict[str, list[tuple[str, str, str]]]:
    out: dict[str, list] = {}
    for d in dropped:
        out.setdefault(d["source"], []).append((d["source_id"], d["drop_reason"], d["detail"]))
    return out


def test_missing_labels_in_real_layouts(tmp_path):
    bt = tmp_path / "beavertails/round0/30k/train.jsonl.gz"
    bt.parent.mkdir(parents=True)
    cat = {"animal_abuse": False, "self_harm": True}
    lines = [{"prompt": f"question {i}", "response": f"answer {i}", "category": cat, "is_safe": v}
             for i, v in enumerate([False, None, "", "yes"])]
    lines.append({"prompt": "question 4", "response": "answer 4", "category": cat})  # is_safe absent
    bt.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in lines).encode(), mtime=0))

    wg = tmp_path / "wildguardmix/train/wildguard_train.parquet"
    wg.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"prompt": p, "adversarial": False, "response": None, "prompt_harm_label": lab,
         "response_refusal_label": None, "response_harm_label": None, "subcategory": "others"}
        for p, lab in (("wg ok", "harmful"), ("wg null", None), ("wg odd", "maybe"))]), wg)

    aegis = tmp_path / "aegis1/Content Moderation Extracted Annotations 02.08.24_train_release_0418_v1.parquet"
    aegis.parent.mkdir(parents=True)
    rows = [{"id": f"a{n}", "text": f"aegis text {n}", "text_type": "user_message", "num_annotations": n,
             "labels_0": "Safe" if n else None, "labels_1": None, "labels_2": None} for n in (1, 0)]
    pq.write_table(pa.Table.from_pylist(rows), aegis)

    tc = tmp_path / "toxicchat/data/0124/toxic-chat_annotation_train.csv"
    tc.parent.mkdir(parents=True)
    with open(tc, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["conv_id", "user_input", "model_output", "human_annotation", "toxicity", "jailbreaking",
                    "openai_moderation"])
        w.writerow(["c1", "toxic chat fine", "x", "True", "0", "0", "[]"])
        w.writerow(["c2", "toxic chat no label", "x", "True", "", "0", "[]"])

    ub = tmp_path / "unsafebench/data/train-00000-of-00001.parquet"
    ub.parent.mkdir(parents=True)
    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.Table.from_pylist([
        {"image": None, "safety_label": "Unsafe", "category": "Violence"},
        {"image": {"bytes": b"\x89PNG", "path": None}, "safety_label": None, "category": "Violence"},
    ], schema=pa.schema([("image", img), ("safety_label", pa.string()), ("category", pa.string())])), ub)

    m, dropped = run_ingest(tmp_path, [
        {"name": "bt", "adapter": "beavertails", "path": str(bt)},
        {"name": "wg", "adapter": "wildguardmix", "path": str(wg), "options": {"unlabelled_prompt": "drop"}},
        {"name": "aegis", "adapter": "aegis1", "path": str(aegis)},
        {"name": "tc", "adapter": "toxicchat", "path": str(tc)},
        {"name": "ub", "adapter": "unsafebench", "path": str(ub)},
    ])
    got = by_source(dropped)
    assert [(sid, r) for sid, r, _ in got["bt"]] == [
        ("1", "missing_label:is_safe"), ("2", "missing_label:is_safe"), ("3", "unknown_label:is_safe"),
        ("4", "missing_label:is_safe")]
    assert "not a boolean" not in " ".join(detail for _, r, detail in got["bt"] if r.startswith("missing"))
    assert [(sid, r) for sid, r, _ in got["wg"]] == [
        ("1", "missing_label:prompt_harm_label"), ("2", "unknown_label:prompt_harm_label")]
    assert [(sid, r) for sid, r, _ in got["aegis"]] == [("1", "missing_label:labels_0")]
    assert "num_annotations=0" in got["aegis"][0][2]
    assert [(sid, r) for sid, r, _ in got["tc"]] == [("1", "missing_label:toxicity")]
    assert [(sid, r) for sid, r, _ in got["ub"]] == [("0", "missing_value:image"), ("1", "missing_label:safety_label")]
    assert m["rows_out"] == 1 + 1 + 1 + 1  # bt row 0, wg row 0, aegis a1, tc c1


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real data not present")
def test_guardreasoner_output_cut_before_its_answers(tmp_path):
    data = json.loads((REAL / "guardreasoner_train/sample_one_per_split.json").read_text(encoding="utf-8"))
    rec = data["ToxicChatTrainR"][0]
    out = rec["output"]
    at = out.index("Answers:")
    rows = [
        rec,                                             # whole: kept
        {**rec, "output": out[:at].rstrip()},            # cut before "Answers:" (ends in reasoning and ---)
        {**rec, "output": out[:at + len("Answers:")]},   # cut right after the marker
        {**rec, "output": out[: len(out) // 2]},          # cut in the middle of the reasoning
    ]
    path = tmp_path / "GuardReasonerTrain/ToxicChatTrainR.json"
    path.parent.mkdir()
    path.write_text(json.dumps(rows), encoding="utf-8")
    m, dropped = run_ingest(tmp_path, [{"name": "gr", "adapter": "guardreasoner", "path": str(path)}])
    assert m["rows_out"] == 1
    assert [(d["source_id"], d["drop_reason"]) for d in dropped] == [
        ("1", "malformed_input"), ("2", "malformed_input"), ("3", "malformed_input")]
    for d in dropped:  # the reasoning is never quoted as if it were a label
        assert "Reasoning Step" not in d["detail"] and "is not one of" not in d["detail"]
