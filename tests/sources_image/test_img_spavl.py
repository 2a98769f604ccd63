"""SPA-VL adapter: response choice and the (unverified) label options, on purpose-built parquet files."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from image_source_helpers import SAMPLES, png, run, spec
from pydantic import ValidationError

from corpus.sources.spavl import SPAVL, SPAVLOptions, classes_of

IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write(path, n=12, extra=None):
    rows = [{"image": {"bytes": png(str(i)), "path": f"{i}.jpg"}, "question": f"question {i}?",
             "chosen": f"safe answer {i}", "rejected": f"unsafe answer {i}",
             "image_name": f"Malicious Use/Illegal Activities/theft/{i}.jpg", **(extra or {})} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(
        [("image", IMG), ("question", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
         ("image_name", pa.string())] + [(k, pa.string()) for k in (extra or {})])), path)
    return path


def test_default_random_is_seeded_and_labels_follow_the_role(tmp_path):
    p = write(tmp_path / "t.parquet", n=40)
    first, _ = run(spec("spavl", p))
    again, _ = run(spec("spavl", p))
    assert [(d.response, d.response_label) for _, d in first] == [(d.response, d.response_label) for _, d in again]
    roles = {d.meta["response_role"] for _, d in first}
    assert roles == {"chosen", "rejected"}
    for i, d in first:
        assert d.prompt == f"question {i}?" and d.request_label == "harmful" and d.images[0].data
        role = d.meta["response_role"]
        assert d.response == ("safe" if role == "chosen" else "unsafe") + f" answer {i}"
        assert d.response_label == ("unharmful" if role == "chosen" else "harmful")
        assert d.raw_categories == ["Malicious Use", "Illegal Activities", "theft"]
    other, _ = run(spec("spavl", p, options={"seed": 1}))
    assert [d.meta["response_role"] for _, d in other] != [d.meta["response_role"] for _, d in first]


@pytest.mark.parametrize("opts, expect", [
    ({"response": "chosen"}, [("chosen", "unharmful")]),
    ({"response": "rejected"}, [("rejected", "harmful")]),
    ({"response": "both"}, [("chosen", "unharmful"), ("rejected", "harmful")]),
    ({"response": "both", "chosen_label": "teacher", "rejected_label": "teacher"}, [("chosen", None),
                                                                                     ("rejected", None)]),
])
def test_response_options(tmp_path, opts, expect):
    drafts, _ = run(spec("spavl", write(tmp_path / "t.parquet", n=2), options=opts))
    assert [(d.meta["response_role"], d.response_label) for i, d in drafts if i == 0] == expect
    if opts["response"] == "both":
        assert drafts[0][1].source_id.endswith("#chosen") and drafts[1][1].source_id.endswith("#rejected")


def test_request_label_option_and_safety_columns(tmp_path):
    p = write(tmp_path / "s.parquet", n=2, extra={"chosen_safety": "unsafe", "rejected_safety": "safe"})
    drafts, _ = run(spec("spavl", p, options={"response": "both", "request_label": "teacher", "label_columns": {
        "chosen": "chosen_safety", "rejected": "rejected_safety"}}))
    d_chosen, d_rejected = drafts[0][1], drafts[1][1]
    assert d_chosen.request_label is None
    assert d_chosen.response_label == "harmful" and d_chosen.meta["response_label_rule"] == "column:chosen_safety"
    assert d_rejected.response_label == "unharmful"
    bad = write(tmp_path / "b.parquet", n=1, extra={"chosen_safety": "perhaps"})
    _, drops = run(spec("spavl", bad, options={"response": "chosen", "label_columns": {"chosen": "chosen_safety"}}))
    assert drops[0][1].reason == "unknown_label:chosen_safety"
    with pytest.raises(ValidationError):
        SPAVLOptions.model_validate({"response": "best"})


def test_class_columns_win_and_empty_fields(tmp_path):
    assert classes_of({"class1": "A", "class2": "B", "class3": None, "image_name": "X/Y/Z/1.jpg"}) == ["A", "B"]
    assert classes_of({"image_name": "1.jpg"}) == []
    src = SPAVL(spec("spavl", tmp_path))
    img = {"bytes": png(), "path": "1.jpg"}
    assert src.convert({"image": img, "question": " ", "chosen": "a", "rejected": "b"}, 0).reason == "empty_prompt"
    out = SPAVL(spec("spavl", tmp_path, options={"response": "chosen"})).convert(
        {"image": img, "question": "q", "chosen": None, "rejected": "b"}, 0)
    assert out.reason == "empty_response"


def test_embedded_sample():
    drafts, drops = run(spec("spavl", SAMPLES / "spavl/data/train-00000-of-00001.parquet"))
    assert not drops and len(drafts) == 8
    assert all(d.images[0].data and d.prompt and d.response and d.raw_categories for _, d in drafts)
