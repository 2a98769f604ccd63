"""Training text adapters on small files built with the sources' exact columns (sources.md §3)."""

from __future__ import annotations

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from text_source_helpers import read_source

from corpus.sources.base import SourceError

BRACES = "Fill {name} and {{x}} then } and {"

WG_TRAIN_COLUMNS = ["prompt", "adversarial", "response", "prompt_harm_label", "response_refusal_label",
                    "response_harm_label", "subcategory"]


def wg_row(prompt, adversarial=False, response=None, ph="harmful", rr=None, rh=None, sub="benign", **extra):
    return {"prompt": prompt, "adversarial": adversarial, "response": response, "prompt_harm_label": ph,
            "response_refusal_label": rr, "response_harm_label": rh, "subcategory": sub, **extra}


def test_wildguardmix_train(tmp_path):
    big = "A" * 1_000_000
    rows = [
        wg_row(BRACES, True, None, "harmful", sub="cyberattack"),
        wg_row("hello", False, "Sure, here it is.", "unharmful", "compliance", "unharmful"),
        wg_row("ambiguous", False, None, None, sub="others"),
        wg_row("resp unknown", False, "I cannot help.", "harmful", "refusal", None,
               sub="fraud_assisting_illegal_activities"),
        wg_row("bad", False, None, "maybe"),
        wg_row(big, False, None, "harmful"),
        wg_row(None, False, None, "harmful"),
    ]
    p = tmp_path / "wildguard_train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    assert pq.read_schema(p).names == WG_TRAIN_COLUMNS
    res = read_source("wildguardmix", p)
    d = res.drafts
    assert d[0].prompt == BRACES and d[0].request_label == "harmful" and d[0].response is None
    assert d[0].raw_categories == ["cyberattack"] and d[0].meta == {"adversarial": True}
    assert (d[1].response_label, d[1].refusal_label) == ("unharmful", "compliance")
    assert d[2].request_label is None  # annotators disagreed: teacher decides (default)
    assert (d[3].request_label, d[3].response_label, d[3].refusal_label) == ("harmful", None, "refusal")
    assert d[4].prompt == big  # the ingest stage applies the length limit, not the adapter
    assert [s.source_id for s in d] == ["0", "1", "2", "3", "5"]
    assert res.drops[0][0] == 4 and res.drops[0][1].reason == "unknown_label:prompt_harm_label"
    assert "'maybe'" in res.drops[0][1].detail
    assert res.drops[1][0] == 6 and res.drops[1][1].reason == "missing_field:prompt"
    strict = read_source("wildguardmix", p, options={"unlabelled_prompt": "drop"})
    assert strict.reasons()["unknown_label:prompt_harm_label"] == 1  # "maybe"
    assert strict.reasons()["missing_label:prompt_harm_label"] == 1  # null: no label, not an unknown one


def test_wildguardmix_test_layout_keeps_agreements(tmp_path):
    row = wg_row("q", False, "a", "harmful", "refusal", "unharmful", prompt_harm_agreement=1.0,
                 response_refusal_agreement=0.67, response_harm_agreement=None)
    p = tmp_path / "wildguard_test.parquet"
    pq.write_table(pa.Table.from_pylist([row]), p)
    (d,) = read_source("wildguardmix", p, split="test").drafts
    assert d.meta == {"adversarial": False, "prompt_harm_agreement": 1.0, "response_refusal_agreement": 0.67}


def test_wildguardmix_missing_column(tmp_path):
    row = wg_row("q")
    del row["subcategory"]
    p = tmp_path / "w.parquet"
    pq.write_table(pa.Table.from_pylist([row]), p)
    with pytest.raises(SourceError, match="subcategory") as err:
        read_source("wildguardmix", p, name="wildguardtrain")
    assert "wildguardtrain" in str(err.value)


def aegis_row(i, text, labels, n, text_type="user_message"):
    row = {"id": f"id{i}", "text": text, "text_type": text_type, "num_annotations": n}
    for k in range(5):
        row[f"labels_{k}"] = labels[k] if k < len(labels) else None
    return row


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_aegis1_majority_vote(tmp_path, fmt):
    rows = [
        aegis_row(0, "q0", ["Safe", "Safe", "Violence"], 3),
        aegis_row(1, "q1", ["Violence, Threat", "Safe", "Violence, Threat"], 3),
        aegis_row(2, "q2", ["Needs Caution", "Safe"], 2),  # tie: first seen wins -> harmful
        aegis_row(3, "q3", ["Safe", "Needs Caution"], 2),  # tie: first seen wins -> unharmful
        aegis_row(4, "User: hi\nAgent: {x}", ["Safe", "Hate/Identity Hate", "Hate/Identity Hate", "Safe", "Safe"],
                  3, "llm_response"),  # only the first 3 count
        aegis_row(5, "q5", [None, None], 2),
    ]
    p = tmp_path / f"aegis.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), p)
    else:
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = read_source("aegis1", p)
    got = [(d.source_id, d.request_label, d.raw_categories) for d in res.drafts]
    assert got == [
        ("id0", "unharmful", ["Safe"]),
        ("id1", "harmful", ["Violence", "Threat"]),
        ("id2", "harmful", ["Needs Caution"]),
        ("id3", "unharmful", ["Safe"]),
        ("id4", "harmful", ["Hate/Identity Hate"]),
    ]
    assert all(d.response is None for d in res.drafts)
    assert res.drafts[4].prompt == "User: hi\nAgent: {x}" and res.drafts[4].meta["text_type"] == "llm_response"
    assert res.reasons() == {"missing_label:labels_0": 1}
    only_users = read_source("aegis1", p, options={"text_types": ["user_message"]})
    assert only_users.reasons()["excluded:text_type"] == 1


def test_aegis1_num_annotations_beyond_columns(tmp_path):
    row = {"id": "a", "text": "t", "text_type": "user_message", "num_annotations": 3, "labels_0": "Safe",
           "labels_1": "Safe"}
    p = tmp_path / "a.jsonl"
    p.write_text(json.dumps(row) + "\n")
    assert read_source("aegis1", p).reasons() == {"missing_label:labels_2": 1}


def test_aegis2(tmp_path):
    base = {"reconstruction_id_if_redacted": None, "prompt_label_source": "human"}
    rows = [
        {**base, "id": "a", "prompt": "How {do} I?", "response": None, "prompt_label": "unsafe",
         "response_label": None, "response_label_source": None, "violated_categories": "Violence, Malware"},
        {**base, "id": "b", "prompt": "hi", "response": "I can't help with that.", "prompt_label": "safe",
         "response_label": "safe", "response_label_source": "refusal_data_augmentation", "violated_categories": ""},
        {**base, "id": "c", "prompt": "REDACTED", "reconstruction_id_if_redacted": 17, "response": "",
         "prompt_label": "unsafe", "response_label": None, "response_label_source": None,
         "violated_categories": "Sexual"},
        {**base, "id": "d", "prompt": "x", "response": "", "prompt_label": "toxic", "response_label": None,
         "response_label_source": None, "violated_categories": ""},
    ]
    p = tmp_path / "train.json"
    p.write_text(json.dumps(rows))
    res = read_source("aegis2", p)
    a, b = res.drafts
    assert (a.request_label, a.response, a.raw_categories) == ("harmful", None, ["Violence", "Malware"])
    assert (b.request_label, b.response_label, b.refusal_label) == ("unharmful", "unharmful", None)
    assert res.reasons() == {"redacted": 1, "unknown_label:prompt_label": 1}
    inferred = read_source("aegis2", p, options={"infer_refusal": True})
    assert inferred.drafts[1].refusal_label == "refusal"


BT_CATS = ["animal_abuse", "child_abuse", "controversial_topics,politics", "discrimination,stereotype,injustice",
           "drug_abuse,weapons,banned_substance", "financial_crime,property_crime,theft",
           "hate_speech,offensive_language", "misinformation_regarding_ethics,laws_and_safety",
           "non_violent_unethical_behavior", "privacy_violation", "self_harm", "sexually_explicit,adult_content",
           "terrorism,organized_crime", "violence,aiding_and_abetting,incitement"]


def bt_row(prompt, response, true_cats, is_safe):
    return {"prompt": prompt, "response": response, "category": {c: c in true_cats for c in BT_CATS},
            "is_safe": is_safe}


def test_beavertails(tmp_path):
    rows = [
        bt_row("How do I {steal}?", "Like this.", ["financial_crime,property_crime,theft", "privacy_violation"], False),
        bt_row("Hi", "Hello!", [], True),
        bt_row("q", "r", [], "yes"),
        bt_row("q", None, [], True),
    ]
    p = tmp_path / "train.jsonl.gz"
    p.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    res = read_source("beavertails", p, split="30k_train")
    a, b = res.drafts
    assert (a.request_label, a.response_label, a.refusal_label) == (None, "harmful", None)
    assert a.raw_categories == ["financial_crime,property_crime,theft", "privacy_violation"]
    assert a.prompt == "How do I {steal}?"
    assert (b.response_label, b.raw_categories) == ("unharmful", [])
    assert res.reasons() == {"unknown_label:is_safe": 1, "missing_field:response": 1}


def test_toxicchat_csv(tmp_path):
    cols = ["conv_id", "user_input", "model_output", "human_annotation", "toxicity", "jailbreaking",
            "openai_moderation"]
    rows = [
        ["c1", "write {poem}", "ok", "True", "0", "0", '[["sexual", 0.001]]'],
        ["c2", "bad thing", "no", "True", "1", "1", "[]"],
        ["c3", "auto", "x", "False", "1", "0", "[]"],
        ["c4", "weird", "x", "True", "2", "0", "[]"],
    ]
    p = tmp_path / "toxic-chat_annotation_train.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([cols, *rows])
    with open(p, "ab") as f:  # a row with bytes that are not UTF-8, then a good row
        f.write(b"c5,caf\xe9,x,True,1,0,[]\r\nc6,last,x,True,0,0,[]\r\n")
    res = read_source("toxicchat", p)
    assert [(d.source_id, d.prompt, d.request_label, d.meta["jailbreaking"]) for d in res.drafts] == [
        ("c1", "write {poem}", "unharmful", False), ("c2", "bad thing", "harmful", True),
        ("c6", "last", "unharmful", False)]
    assert all(d.response is None for d in res.drafts)
    assert res.reasons() == {"not_human_annotated": 1, "unknown_label:toxicity": 1, "invalid_utf8": 1}
