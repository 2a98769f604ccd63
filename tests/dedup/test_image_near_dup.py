"""Perceptual-hash matching in effect: a leak only the perceptual hash can catch, one just past the threshold
that must not match, and the held-out split by image clusters.

The near copy is the picture with 6 pixel columns cropped off (measured distance 1..4, the default
threshold 4); the far copy has 8 cropped off (measured distance 6: with 32 of 64 bits set, phash
distances are even, so 6 is the nearest distance past 4). Sha256 differs for both, so only the
perceptual hash can find them. Files are built as the embedded samples are (scripts/make_embedded_samples.py).
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from realdata_path import REALDATA
from samples_script import make_embedded_samples as mk

from corpus.decontam import DecontamIndex
from corpus.image_near_dup import ImageClusters
from corpus.images import hamming, normalise_image
from corpus.recipe import load_recipe
from corpus.stages import ingest
from corpus.store import StageDir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from datagen import UNSAFEBENCH  # noqa: E402

THRESHOLD = 4


def norm(data: bytes):
    return normalise_image(data, max_pixels=10**8, max_bytes=10**9)


def picture(seed: int):
    return mk.drawn(seed, (128, 96), "eval image")


def variants(seed: int = 900) -> tuple[bytes, bytes, bytes]:
    im = picture(seed)
    return mk.encode(im, "PNG"), mk.encode(mk.cropped(im, 6), "PNG"), mk.encode(mk.cropped(im, 8), "PNG")


def test_measured_distances():
    orig, near, far = (norm(b) for b in variants())
    assert len({orig.sha256, near.sha256, far.sha256}) == 3  # sha256 cannot see the copies
    assert 1 <= hamming(orig.phash, near.phash) <= THRESHOLD
    assert THRESHOLD < hamming(orig.phash, far.phash) <= THRESHOLD + 2


def test_decontam_uses_the_configured_distance():
    orig, near, far = (norm(b) for b in variants())
    idx = DecontamIndex(phash_max_distance=THRESHOLD)
    idx.add("ev", None, None, [orig.sha256], [orig.phash])
    assert idx.match(None, None, [near.sha256], [near.phash]) == ("ev", "phash")
    assert idx.match(None, None, [far.sha256], [far.phash]) is None
    assert idx.match(None, None, [near.sha256], []) is None  # without the phashes there is nothing to match
    strict = DecontamIndex(phash_max_distance=0)
    strict.add("ev", None, None, [orig.sha256], [orig.phash])
    assert strict.match(None, None, [near.sha256], [near.phash]) is None


def test_clusters_nearest_and_ties():
    orig, near, far = (norm(b) for b in variants())
    c = ImageClusters(THRESHOLD)
    c.add("", [orig.phash], "kept", "b")
    hit = c.nearest("", [near.phash])
    assert hit is not None and hit.side == "kept" and hit.row_id == "b" and hit.distance >= 1
    assert c.nearest("", [far.phash]) is None
    assert c.nearest("other text", [orig.phash]) is None  # another prompt: another sample
    c.add("", [orig.phash], "heldout", "z")  # same distance: the held-out side wins, whatever the order
    assert c.nearest("", [near.phash]).side == "heldout"


def write_eval_vlguard(root: Path, images: list[bytes]) -> Path:
    """VLGuard's test layout (test.json + test.zip) with the first real test records."""
    records = json.loads((REALDATA / "vlguard/test.json").read_text(encoding="utf-8"))[: len(images)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "test.json").write_text(json.dumps(records, indent=4), encoding="utf-8")
    with zipfile.ZipFile(root / "test.zip", "w") as zf:
        for r, data in zip(records, images, strict=True):
            mk.zip_write(zf, r["image"], data)
    return root


def write_unsafebench(path: Path, images: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"image": {"bytes": b, "path": f"{i}.png"}, "safety_label": "Unsafe", "category": "Violence",
             "source": "Lexica", "text": "caption"} for i, b in enumerate(images)]
    pq.write_table(pa.Table.from_pylist(rows, schema=UNSAFEBENCH), path)
    return path


def run(tmp_path: Path, name: str, sources: list[dict], **cfg) -> tuple[dict, Path]:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump({"name": name, "seed": 0, "ingest": {"sources": sources, **cfg}}))
    out = tmp_path / name
    return ingest.run(load_recipe(recipe), out), out


@pytest.mark.skipif(not (REALDATA / "vlguard/test.json").exists(), reason="shared real data not present")
def test_leak_only_phash_catches_and_one_just_past(tmp_path):
    orig, near, far = variants()
    other = mk.encode(picture(901), "PNG")
    ev = write_eval_vlguard(tmp_path / "vlguard", [orig])
    ub = write_unsafebench(tmp_path / "unsafebench/data/train-00000-of-00001.parquet", [near, far, other])
    eval_set = {"name": "VLGuardTest", "adapter": "vlguard", "path": str(ev / "test.json"),
                "images_root": str(ev / "test.zip")}
    src = [{"name": "ub", "adapter": "unsafebench", "path": str(ub)}]
    alone = {"enabled": False}  # the near and far copies are near each other: decontamination alone here
    m, out = run(tmp_path, "default", src, heldout=None, near_duplicate=alone,
                 decontaminate={"phash_max_distance": THRESHOLD, "eval_sets": [eval_set]})
    assert m["drop_reasons"] == {"leak:VLGuardTest": 1} and m["rows_out"] == 2
    (leak,) = StageDir(out, "ingest").read("dropped").to_pylist()
    assert leak["source_id"] == "0" and "phash" in leak["detail"]
    m, _ = run(tmp_path, "wider", src, heldout=None, near_duplicate=alone,
               decontaminate={"phash_max_distance": 6, "eval_sets": [eval_set]})
    assert m["drop_reasons"] == {"leak:VLGuardTest": 2}
    m, _ = run(tmp_path, "exact", src, heldout=None, near_duplicate=alone,
               decontaminate={"phash_max_distance": 0, "eval_sets": [eval_set]})
    assert m["drop_reasons"] == {}


def pairs(n: int) -> list[bytes]:
    """n pictures, each followed by its near copy (6 columns cropped) whose distance is measured in 1..4."""
    out = []
    for seed in range(2000, 2000 + 4 * n):
        im = picture(seed)
        a, b = mk.encode(im, "PNG"), mk.encode(mk.cropped(im, 6), "PNG")
        if 1 <= hamming(norm(a).phash, norm(b).phash) <= THRESHOLD:
            out += [a, b]
        if len(out) == 2 * n:
            return out
    raise AssertionError("not enough near pairs")


def sides(out: Path) -> dict[str, str]:
    sd = StageDir(out, "ingest")

    def table(output: str | None) -> list[dict]:
        t = sd.read(output)
        return t.to_pylist() if t is not None else []

    where = {r["source_id"]: "kept" for r in table(None)}
    where.update({r["source_id"]: "heldout" for r in table("held")})
    where.update({d["source_id"]: d["drop_reason"] for d in table("dropped")})
    return where


def test_heldout_split_by_clusters_and_near_duplicates_in_train(tmp_path):
    images = pairs(12)
    ub = write_unsafebench(tmp_path / "unsafebench/data/train-00000-of-00001.parquet", images)
    src = [{"name": "ub", "adapter": "unsafebench", "path": str(ub)}]
    held = {"name": "held", "modalities": ["image"], "fraction": 0.5}
    _, by_sha = run(tmp_path, "by_sha", src, heldout=held, near_duplicate={"enabled": False})
    old = sides(by_sha)
    crossing = [i for i in range(12) if old[str(2 * i)] != old[str(2 * i + 1)]]
    assert crossing, "the sha256 split puts no copy across: the test shows nothing"  # the leak of the old split
    m, by_cluster = run(tmp_path, "by_cluster", src, heldout=held)
    new = sides(by_cluster)
    firsts = [new[str(2 * i)] for i in range(12)]
    assert "kept" in firsts and "heldout" in firsts
    for i in range(12):
        first, copy = new[str(2 * i)], new[str(2 * i + 1)]
        assert first in ("kept", "heldout")
        assert copy == ("heldout" if first == "heldout" else "near_duplicate")  # never on the other side
    assert m["drop_reasons"] == {"near_duplicate": firsts.count("kept")}
    detail = [d["detail"] for d in StageDir(by_cluster, "ingest").read("dropped").to_pylist()]
    assert all("perceptual-hash distance" in d and "(max 4)" in d for d in detail)
    _, strict = run(tmp_path, "strict", src, heldout=held, near_duplicate={"phash_max_distance": 0})
    assert "near_duplicate" not in set(sides(strict).values())  # distance 0 does not join these copies

    resumed = tmp_path / "resumed"  # part_rows 5: kill after unit 2, resume: the same decisions
    m1, ref = run(tmp_path, "ref", src, heldout=held, part_rows=5)
    shutil.copytree(ref, resumed)
    stage = resumed / "ingest"
    (stage / "_manifest.json").unlink()
    for part in [*stage.glob("part-*.parquet"), *stage.glob("*/part-*.parquet")]:
        if int(part.stem.split("-")[1]) >= 2:
            part.unlink()
    recipe = load_recipe(tmp_path / "ref.yaml")
    m2 = ingest.run(recipe, resumed)
    assert m2["timings"]["units_resumed"] == 2
    assert sides(resumed) == sides(ref) == new
