"""UnsafeBench adapter: the embedded parquet and purpose-built parquet files with the real columns."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from image_source_helpers import SAMPLES, png, run, spec

from corpus.sources.base import ImageInput
from corpus.sources.unsafebench import UnsafeBench

IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def write(path, rows, image_type=IMG):
    schema = pa.schema([("image", image_type), ("safety_label", pa.string()), ("category", pa.string()),
                        ("source", pa.string()), ("text", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_embedded_sample_labels_and_categories():
    path = SAMPLES / "unsafebench/data/train-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    drafts, drops = run(spec("unsafebench", path))
    assert [(i, d.reason) for i, d in drops] == [(12, "unknown_label:safety_label"), (16, "missing_value:image")]
    assert len(drafts) == 15 + 6  # + the planted perceptual-hash pairs (tests/sources_image/test_img_embedded.py)
    for i, d in drafts:
        row = rows[i]
        assert d.prompt is None and d.response is None and d.images == [ImageInput(data=row["image"]["bytes"])]
        meta = d.meta
        if row["safety_label"] == "Unsafe":
            assert d.request_label == "harmful"
            assert meta["category_role"] == "harm" and d.raw_categories == [row["category"]]
        else:
            assert d.request_label == "unharmful"
            assert meta["category_role"] == "topic" and meta["topic"] == row["category"] and d.raw_categories == []
        assert meta["image_source"] in ("Laion5B", "Lexica") and meta["caption"]
    by_index = dict(drafts)
    assert by_index[0].images[0].data == by_index[10].images[0].data  # the planted exact duplicate


def test_safe_topic_kept_raw_when_asked(tmp_path):
    p = write(tmp_path / "t.parquet", [
        {"image": {"bytes": png("a"), "path": "a.png"}, "safety_label": "Safe", "category": "Violence",
         "source": "Lexica", "text": "a statue"},
        {"image": {"bytes": png("b"), "path": "b.png"}, "safety_label": "Unsafe", "category": "Hate",
         "source": "Laion5B", "text": "a poster"},
    ])
    drafts, _ = run(spec("unsafebench", p, options={"safe_category": "raw", "caption_as_prompt": True}))
    (_, safe), (_, unsafe) = drafts
    assert safe.raw_categories == ["Violence"] and safe.meta["category_role"] == "topic"
    assert unsafe.raw_categories == ["Hate"] and unsafe.request_label == "harmful"
    assert safe.prompt == "a statue"  # caption_as_prompt


def test_image_as_bytes_column_and_path_only(tmp_path):
    data = png("bytes")
    p = write(tmp_path / "b.parquet", [{"image": data, "safety_label": "unsafe", "category": "Spam",
                                        "source": "Lexica", "text": None}], image_type=pa.binary())
    drafts, _ = run(spec("unsafebench", p))
    assert drafts[0][1].images == [ImageInput(data=data)]
    assert "caption" not in drafts[0][1].meta
    # an HF Image dict without bytes: the path goes through untouched (the ingest's ImageRoot judges it)
    src = UnsafeBench(spec("unsafebench", p))
    for ref in ("../../etc/passwd", "/abs/x.png", "dir/ok.png"):
        out = src.convert({"image": {"bytes": None, "path": ref}, "safety_label": "Unsafe", "category": "Hate"}, 0)
        assert out[0].images == [ImageInput(ref=ref)]


@pytest.mark.parametrize("image, reason", [
    (None, "missing_value:image"), ({"bytes": None, "path": None}, "missing_value:image"), (b"", "image:empty"),
    (3.5, "invalid_field:image"),
])
def test_missing_image_is_a_drop(tmp_path, image, reason):
    src = UnsafeBench(spec("unsafebench", tmp_path))
    out = src.convert({"image": image, "safety_label": "Safe", "category": "Spam"}, 3)
    assert out.reason == reason


def test_missing_column_names_the_column(tmp_path):
    from corpus.sources.base import SourceError

    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"image": [b"x"], "category": ["Hate"]}), p)
    with pytest.raises(SourceError, match="safety_label"):
        run(spec("unsafebench", p))
