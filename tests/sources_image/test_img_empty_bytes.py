"""A zero-byte embedded image is ``image:empty``: its ``path`` is never looked up, even with an images_root.

UnsafeBench-style Parquet (HF Image struct ``{bytes, path}``): the row with ``bytes=b''`` names
``00015.png``, and a real image of that name sits in the source's images_root. It must be dropped,
not kept with that other file.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from image_source_helpers import png

from corpus.recipe import load_recipe
from corpus.sources.base import ImageInput
from corpus.sources.loaders import as_image_input
from corpus.stages import ingest
from corpus.store import StageDir

IMG = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([("image", IMG), ("safety_label", pa.string()), ("category", pa.string()),
                    ("source", pa.string()), ("text", pa.string())])


def test_empty_bytes_are_image_empty_not_a_path():
    assert as_image_input({"bytes": b"", "path": "00015.png"}) == ImageInput(data=b"")
    assert as_image_input({"bytes": None, "path": "00015.png"}) == ImageInput(ref="00015.png")


def test_empty_embedded_image_is_dropped_even_with_a_file_of_its_name(tmp_path):
    data = tmp_path / "unsafebench/data"
    data.mkdir(parents=True)
    images = tmp_path / "images"
    images.mkdir()
    (images / "00015.png").write_bytes(png("someone else's image", colour=(10, 200, 10)))
    rows = [
        {"image": {"bytes": png("kept", colour=(200, 10, 10)), "path": "00014.png"}, "safety_label": "Unsafe",
         "category": "Violence", "source": "Lexica", "text": "a caption"},
        {"image": {"bytes": b"", "path": "00015.png"}, "safety_label": "Unsafe", "category": "Violence",
         "source": "Lexica", "text": "a caption"},
    ]
    parquet = data / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), parquet)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "ingest": {"heldout": None, "sources": [
        {"name": "ub", "adapter": "unsafebench", "path": str(parquet), "images_root": str(images)}]}}))
    m = ingest.run(load_recipe(recipe), tmp_path / "out")
    assert m["drop_reasons"] == {"image:empty": 1}
    kept = StageDir(tmp_path / "out", "ingest").read().to_pylist()
    assert len(kept) == 1 and kept[0]["source_id"] == "0"
    (drop,) = StageDir(tmp_path / "out", "ingest").read("dropped").to_pylist()
    assert drop["source_id"] == "1" and "empty" in drop["detail"]
