"""JSON Lines that `datasets` loads at any size: a file in part order (all text rows first) fails to load
once its first chunk holds no image row; the interleaved writer's file loads, with every row, in order per shape."""

from __future__ import annotations

import json

import pytest

from corpus.jsonl_shapes import InterleavedJsonl, shape_of

pytest.importorskip("datasets")

#: bytes per `datasets` JSON chunk in these tests: a big file read with the default 10 MB meets the same boundary
CHUNK = 4096


def _rows(n_text: int = 300, n_image: int = 30, n_resp: int = 50) -> list[dict]:
    text = [{"id": f"t{i:04d}", "prompt": "x " * 20, "response_label": None, "images": []} for i in range(n_text)]
    resp = [{"id": f"r{i:04d}", "prompt": "y " * 20, "response_label": "unharmful", "images": []}
            for i in range(n_resp)]
    image = [{"id": f"i{i:04d}", "prompt": None, "response_label": None, "images": [f"/img/{i}.png"]}
             for i in range(n_image)]
    return text + resp + image  # part order: one source after the other


def _load(path, tmp_path):
    from datasets import load_dataset

    return load_dataset("json", data_files=str(path), split="train", chunksize=CHUNK,
                        cache_dir=str(tmp_path / f"cache-{path.stem}"))


def test_a_file_in_part_order_fails_to_load_and_the_interleaved_one_loads(tmp_path):
    rows = _rows()
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(Exception) as failed:  # the failure the writer exists to prevent
        _load(plain, tmp_path)
    assert "Couldn't cast" in repr(failed.value.__cause__)

    w = InterleavedJsonl(tmp_path / "train.jsonl")
    for r in rows:
        w.write(r)
    w.close()
    assert w.rows == len(rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache-plain", "plain.jsonl", "train.jsonl"]  # no spool
    ds = _load(tmp_path / "train.jsonl", tmp_path)
    assert len(ds) == len(rows)
    assert sorted(ds["id"]) == sorted(r["id"] for r in rows)
    got = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    # the first rows are one of each shape; rows of one shape keep their order
    assert len({shape_of(r) for r in got[:3]}) == 3
    for prefix in "tri":
        assert [r["id"] for r in got if r["id"][0] == prefix] == [r["id"] for r in rows if r["id"][0] == prefix]
    # every prefix holds each shape in proportion to its count (to within one row)
    for n in (10, 50, 100, 200):
        image_rows = sum(r["id"][0] == "i" for r in got[:n])
        assert abs(image_rows - n * 30 / len(rows)) <= 1.5


def test_no_rows_gives_an_empty_file(tmp_path):
    w = InterleavedJsonl(tmp_path / "empty.jsonl")
    w.close()
    assert (tmp_path / "empty.jsonl").read_text() == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl"]
