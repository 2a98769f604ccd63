"""iter_records over every local layout: formats, indexes, limits, bad bytes and missing columns."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.recipe import SourceSpec
from corpus.sources.base import ImageInput, SourceError
from corpus.sources.loaders import as_image_input, detect_format, iter_records, resolve_path

ROWS = [{"prompt": f"p{i} {{x}}", "label": "safe" if i % 2 else "unsafe"} for i in range(7)]


def spec(path: Path | str, **kw) -> SourceSpec:
    return SourceSpec(name=kw.pop("name", "src"), adapter="declarative", path=str(path), **kw)


def read(path: Path, required=("prompt",), **kw):
    return list(iter_records(spec(path, **kw), required, path))


def write_jsonl(path: Path, rows, gz: bool = False) -> Path:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "jsonl.gz", "json", "csv"])
def test_formats_give_the_same_records(tmp_path, kind):
    p = tmp_path / f"data.{kind}"
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(ROWS), p)
    elif kind.startswith("jsonl"):
        write_jsonl(p, ROWS, gz=kind.endswith(".gz"))
    elif kind == "json":
        p.write_text(json.dumps(ROWS, indent=4))
    else:
        write_csv(p, ROWS)
    recs = read(p)
    assert [r.index for r in recs] == list(range(7))
    assert [r.fields for r in recs] == ROWS
    assert all(r.drop is None for r in recs)


def test_limit_is_honoured(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", ROWS)
    assert [r.fields["prompt"] for r in read(p, limit=3)] == [r["prompt"] for r in ROWS[:3]]


def test_json_object_of_arrays_takes_the_split(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"train": ROWS[:2], "test": ROWS[2:5]}))
    assert [r.fields for r in read(p, split="test")] == ROWS[2:5]
    with pytest.raises(SourceError, match="validation"):
        read(p, split="validation")


def test_json_array_streams_items_larger_than_a_chunk(tmp_path):
    big = "{" + "é" * 1_500_000 + "}"  # > 1 MiB chunk, multi-byte chars across chunk borders
    rows = [{"prompt": "a"}, {"prompt": big}, {"prompt": "c"}]
    p = tmp_path / "d.json"
    p.write_text("\ufeff [\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n ]\n")
    assert [r.fields["prompt"] for r in read(p)] == ["a", big, "c"]


def test_truncated_json_array_is_a_source_error(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[{"prompt": "a"}, {"prompt": "b"')
    with pytest.raises(SourceError, match="not a valid JSON array"):
        read(p)


def test_jsonl_bad_utf8_and_bad_json_are_dropped_and_reading_goes_on(tmp_path):
    p = tmp_path / "d.jsonl"
    lines = [b'{"prompt": "ok0"}', b'{"prompt": "bad \xff\xfe bytes"}', b"", b'{"prompt": "unterminated',
             b'["not", "an object"]', b'{"prompt": "ok4"}']
    p.write_bytes(b"\n".join(lines) + b"\n")
    recs = read(p)
    assert [(r.index, r.drop.reason if r.drop else r.fields["prompt"]) for r in recs] == [
        (0, "ok0"), (1, "invalid_utf8"), (2, "invalid_json"), (3, "invalid_json"), (4, "ok4")]
    assert "line 2" in recs[1].drop.detail and str(p) in recs[1].drop.detail


def test_csv_bad_utf8_row_is_dropped_and_reading_goes_on(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b'prompt,label\r\nfirst,safe\r\n"multi\nline \xe9t\xe9",unsafe\r\nthird,safe\r\nshort\r\n')
    recs = read(p)
    assert recs[0].fields == {"prompt": "first", "label": "safe"}
    assert recs[1].fields is None and recs[1].drop.reason == "invalid_utf8"
    assert recs[2].fields == {"prompt": "third", "label": "safe"} and recs[2].index == 2
    assert recs[3].drop.reason == "invalid_csv"


def test_csv_keeps_values_as_text_and_allows_huge_fields(tmp_path):
    big = "x" * 1_000_000
    p = write_csv(tmp_path / "d.csv", [{"prompt": big, "n": "007"}])
    (rec,) = read(p)
    assert rec.fields == {"prompt": big, "n": "007"}


@pytest.mark.parametrize("kind", ["parquet", "csv", "jsonl"])
def test_missing_required_column_names_source_file_and_columns(tmp_path, kind):
    rows = [{"text": "a", "label": "safe"}]
    p = tmp_path / f"d.{kind}"
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), p)
    elif kind == "csv":
        write_csv(p, rows)
    else:
        write_jsonl(p, rows)
    with pytest.raises(SourceError) as err:
        read(p, required=("prompt", "label"), name="mysource")
    msg = str(err.value)
    assert "mysource" in msg and "'prompt'" in msg and str(p) in msg and "'text'" in msg


def test_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        read(tmp_path / "nope.jsonl")


def test_zip_member(tmp_path):
    p = tmp_path / "a.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("inner/data.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS))
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(ROWS), buf)
        zf.writestr("inner/data.parquet", buf.getvalue())
    assert [r.fields for r in read(p, member="inner/data.jsonl")] == ROWS
    assert [r.fields for r in read(p, member="inner/data.parquet", format="zip")] == ROWS
    with pytest.raises(SourceError, match="missing.jsonl"):
        read(p, member="missing.jsonl")


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_imagefolder_class_subfolders(tmp_path):
    root = tmp_path / "imgs"
    for rel in ["train/gun/b.png", "train/gun/a.png", "train/safe/c.jpg", "test/gun/z.png", "train/notes.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_png())
    recs = read(root, required=("image", "label"), split="train")
    assert [(r.index, r.fields["label"], r.fields["image"].ref) for r in recs] == [
        (0, "gun", "train/gun/a.png"), (1, "gun", "train/gun/b.png"), (2, "safe", "train/safe/c.jpg")]


def test_imagefolder_metadata_in_zip(tmp_path):
    p = tmp_path / "imgs.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x/1.png", _png())
        zf.writestr("metadata.jsonl", json.dumps({"file_name": "x/1.png", "label": 1, "caption": "c"}) + "\n"
                    + json.dumps({"label": 0}) + "\n")
    recs = read(p, required=("image", "label"))
    assert recs[0].fields["image"] == ImageInput(ref="x/1.png") and recs[0].fields["caption"] == "c"
    assert recs[1].drop.reason == "missing_field:file_name"
    with pytest.raises(SourceError, match="missing_col"):
        read(p, required=("image", "missing_col"))


def test_detect_format_and_resolve(tmp_path):
    assert detect_format(Path("a/b.jsonl.gz")) == "jsonl"
    assert detect_format(Path("x.zip"), "d/t.csv") == "csv"
    assert detect_format(Path("x.parquet"), fmt="json") == "json"
    with pytest.raises(SourceError, match="format"):
        detect_format(Path("x.weird"))
    assert resolve_path("d/x.csv", tmp_path) == tmp_path / "d/x.csv"
    assert resolve_path("/abs/x.csv", tmp_path) == Path("/abs/x.csv")


def test_path_resolved_from_base_dir_when_not_given(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", ROWS[:2])
    recs = list(iter_records(spec("d.jsonl"), ("prompt",), base_dir=tmp_path))
    assert len(recs) == 2


def test_as_image_input():
    assert as_image_input({"bytes": b"ab", "path": "x.png"}) == ImageInput(data=b"ab")
    assert as_image_input({"bytes": None, "path": "x.png"}) == ImageInput(ref="x.png")
    assert as_image_input("p/q.jpg") == ImageInput(ref="p/q.jpg")
    assert as_image_input(None) is None
    with pytest.raises(TypeError):
        as_image_input(3.5)


def test_hub_code_path_on_a_local_dataset_folder(tmp_path, monkeypatch):
    """The real datasets.load_dataset(streaming=True) path, fed a local folder (no network involved)."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "tab").mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "tab" / "train.parquet")
    hub = SourceSpec(name="hubsrc", adapter="declarative", hub=str(tmp_path / "tab"), limit=5)
    recs = list(iter_records(hub, ("prompt",)))
    assert [r.fields for r in recs] == ROWS[:5] and [r.index for r in recs] == list(range(5))
    with pytest.raises(SourceError, match="hubsrc.*'nope'"):
        list(iter_records(hub, ("nope",)))
    (tmp_path / "img" / "train" / "gun").mkdir(parents=True)
    (tmp_path / "img" / "train" / "gun" / "a.png").write_bytes(_png())
    (rec,) = iter_records(SourceSpec(name="h", adapter="declarative", hub=str(tmp_path / "img")), ("image",))
    img = as_image_input(rec.fields["image"])  # Image features arrive undecoded: {bytes, path}
    assert img.data == _png()
    with pytest.raises(SourceError, match="cannot load"):
        list(iter_records(SourceSpec(name="h", adapter="declarative", hub=str(tmp_path / "missing")), ()))
