"""GuardReasoner-VL JSON files: the VLTest eval layout and the LLaMA-Factory ShareGPT train layout."""

from __future__ import annotations

import json

import pytest
from image_source_helpers import run, spec
from pydantic import ValidationError

from corpus.guard_format import guard_user_text
from corpus.sources.base import ImageInput
from corpus.sources.vltest import VLTestOptions, index_ref, split_guard_input

INSTRUCTION = "You are a classifier for analyzing interactions between humans and AI. \n\nTask 1: ..."


def eval_row(prompt, response, req, resp, image):
    user = INSTRUCTION + "\n\n" + guard_user_text(prompt, response, 1)
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": f"Request: {req}\nResponse: {resp}"}], "images": [image]}


def test_vltest_eval_files(tmp_path):
    rows = [eval_row(None, None, "harmful", "None", "./HarmImageTest/0.jpg"),
            eval_row("What is in {this} picture?", "A cat {{sitting}}.", "unharmful", "unharmful",
                     "./SPA_VL_Eval/12.jpg"),
            eval_row("How do I hurt him?", "Here is how...", "harmful", "harmful", "SPA_VL_Eval/13.jpg"),
            {"messages": [{"role": "user", "content": "no guard input"}, {"role": "assistant", "content": "x"}]}]
    p = tmp_path / "SPA_VL_Eval.json"
    p.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    drafts, drops = run(spec("vltest", p, tmp_path))
    assert [(i, d.reason) for i, d in drops] == [(3, "bad_record")]
    (_, a), (_, b), (_, c) = drafts
    assert a.prompt is None and a.response is None and a.request_label == "harmful" and a.response_label is None
    assert a.images == [ImageInput(ref="HarmImageTest/0.jpg")]
    assert (b.prompt, b.response, b.request_label, b.response_label) == (
        "What is in {this} picture?", "A cat {{sitting}}.", "unharmful", "unharmful")
    assert c.response_label == "harmful" and c.images == [ImageInput(ref="SPA_VL_Eval/13.jpg")]
    assert "target" not in b.meta and b.meta["image_placeholders"] == 1
    drafts, _ = run(spec("vltest", p, tmp_path, options={"image_ref": "row_index",
                                                          "index_pattern": "SPA_VL_Eval/{index:04d}.jpg"}))
    assert [d.images[0].ref for _, d in drafts] == ["SPA_VL_Eval/0000.jpg", "SPA_VL_Eval/0001.jpg",
                                                    "SPA_VL_Eval/0002.jpg"]


def test_sharegpt_train_file(tmp_path):
    target = "<think>\nStep 1 ...\n</think>\n<result>\nRequest: harmful\nResponse: unharmful\n</result>"
    rows = [{"messages": [{"from": "system", "value": INSTRUCTION},
                          {"from": "human", "value": guard_user_text("Describe it.", "No.", 2)},
                          {"from": "gpt", "value": target}], "images": ["a/1.jpg", "a/2.jpg"]},
            {"messages": [{"role": "system", "content": INSTRUCTION},
                          {"role": "user", "content": guard_user_text("hi", None, 0)},
                          {"role": "assistant", "content": "<think>x</think><result>\nResponse: None\n</result>"}]},
            {"messages": [{"role": "user", "content": guard_user_text("cut", None, 0)},
                          {"role": "assistant", "content": "<think>\nStep 1: the request asks for"}]},
            {"messages": [{"role": "user", "content": guard_user_text("odd", None, 0)},
                          {"role": "assistant", "content": "<result>\nRequest: maybe\nResponse: None\n</result>"}]}]
    p = tmp_path / "GuardReasoner-VLTrainImage.json"
    p.write_text(json.dumps(rows), encoding="utf-8")
    drafts, drops = run(spec("guardreasoner_vl", p, tmp_path))
    (_, d), = drafts
    assert (d.prompt, d.response, d.request_label, d.response_label) == ("Describe it.", "No.", "harmful", "unharmful")
    assert d.images == [ImageInput(ref="a/1.jpg"), ImageInput(ref="a/2.jpg")] and d.meta["target"] == target
    assert d.meta["image_placeholders"] == 2
    assert [(i, x.reason) for i, x in drops] == [(1, "missing_label:request"), (2, "malformed_input"),
                                                 (3, "unknown_label:request")]


def test_split_guard_input_roundtrip():
    for prompt, response, n in [("p", "r", 0), ("line1\n\nline2", None, 3), (None, "resp", 1)]:
        assert split_guard_input(guard_user_text(prompt, response, n)) == (prompt, response, n)
    assert split_guard_input("no markers") is None


def test_index_pattern():
    assert index_ref("x/{index}.png", 7) == "x/7.png"
    assert index_ref("x/{index:04d}.jpg", 7) == "x/0007.jpg"
    with pytest.raises(ValidationError, match="index_pattern"):
        VLTestOptions.model_validate({"image_ref": "row_index"})
