"""A seed file that cannot be read is one clear error naming the source, the file and the cause.

Each file is a real layout made unreadable the way downloads and clones break: a cut ``.jsonl.gz``
(BeaverTails), a Git LFS pointer checked out instead of the Parquet file (WildGuardMix), a cut Parquet
file, a cut zip of images (VLGuard), a cut ``.csv.gz`` and ``.json.gz``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from corpus.recipe import SourceSpec, load_recipe
from corpus.resources import samples_dir
from corpus.sources.base import SourceError
from corpus.sources.loaders import iter_records
from corpus.stages import ingest

SAMPLES = samples_dir()
BEAVERTAILS = SAMPLES / "beavertails/round0/30k/train.jsonl.gz"
WILDGUARD = SAMPLES / "wildguardmix/train/wildguard_train.parquet"
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4f2c1b8e0e5d7a9c3b6a1f0e2d4c6b8a0f1e3d5c7b9a2e4f6c8d0b1a3e5f7c9d\nsize 4187316\n")


def cut(src: Path, dst: Path, keep: float = 0.5) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def recipe(tmp_path: Path, source: dict) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "ingest": {"sources": [source], "heldout": None}}))
    return p


def cli_ingest(recipe_path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corpus.cli", "ingest", str(recipe_path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)


def test_truncated_jsonl_gz_is_a_clear_cli_error(tmp_path):
    bad = cut(BEAVERTAILS, tmp_path / "beavertails/round0/30k/train.jsonl.gz")
    with pytest.raises(EOFError):  # the file really is cut: gzip alone says only EOFError
        gzip.decompress(bad.read_bytes())
    r = recipe(tmp_path, {"name": "bt30k", "adapter": "beavertails", "path": str(bad)})
    res = cli_ingest(r, tmp_path / "out")
    assert res.returncode == 2, res.stderr
    assert "Aborted" not in res.stderr and "Traceback" not in res.stderr
    assert "'bt30k'" in res.stderr and str(bad) in res.stderr and "truncated gzip" in res.stderr


def test_lfs_pointer_instead_of_parquet(tmp_path):
    p = tmp_path / "wildguardmix/train/wildguard_train.parquet"
    p.parent.mkdir(parents=True)
    p.write_bytes(LFS_POINTER)
    r = recipe(tmp_path, {"name": "wgtrain", "adapter": "wildguardmix", "path": str(p)})
    with pytest.raises(SourceError) as err:
        ingest.run(load_recipe(r), tmp_path / "out")
    msg = str(err.value)
    assert "'wgtrain'" in msg and str(p) in msg and "not a Parquet file" in msg and "Git LFS pointer" in msg
    res = cli_ingest(r, tmp_path / "cli")
    assert res.returncode == 2 and "Git LFS pointer" in res.stderr and "Traceback" not in res.stderr


def test_cut_parquet_names_file_and_hints_nothing_false(tmp_path):
    bad = cut(WILDGUARD, tmp_path / "wildguard_train.parquet", 0.6)
    spec = SourceSpec(name="wg", adapter="wildguardmix", path=str(bad))
    with pytest.raises(SourceError) as err:
        list(iter_records(spec, (), bad))
    msg = str(err.value)
    assert "'wg'" in msg and str(bad) in msg and "not a readable Parquet file" in msg and "LFS" not in msg


@pytest.mark.parametrize("name", ["data.csv.gz", "data.json.gz", "data.jsonl.gz"])
def test_cut_gzip_of_every_text_format(tmp_path, name):
    rows = [{"prompt": f"question number {i} " + "words " * 40, "label": "safe"} for i in range(400)]
    if name.startswith("data.csv"):
        body = "prompt,label\n" + "".join(f"{r['prompt']},{r['label']}\n" for r in rows)
    elif name.startswith("data.jsonl"):
        body = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        body = json.dumps(rows)
    full = tmp_path / ("full-" + name)
    full.write_bytes(gzip.compress(body.encode(), mtime=0))
    bad = cut(full, tmp_path / name, 0.5)
    spec = SourceSpec(name="src", adapter="declarative", path=str(bad))
    with pytest.raises(SourceError) as err:
        list(iter_records(spec, ("prompt",), bad))
    assert "'src'" in str(err.value) and str(bad) in str(err.value) and "truncated gzip" in str(err.value)


def test_lfs_pointer_of_every_format(tmp_path):
    for name in ("train.json", "train.jsonl", "toxic-chat_annotation_train.csv"):
        p = tmp_path / name
        p.write_bytes(LFS_POINTER)
        with pytest.raises(SourceError, match="Git LFS pointer") as err:
            list(iter_records(SourceSpec(name="s", adapter="declarative", path=str(p)), (), p))
        assert str(p) in str(err.value)


def test_cut_image_zip_is_a_clear_error(tmp_path):
    vg = tmp_path / "vlguard"
    vg.mkdir()
    shutil.copy(SAMPLES / "vlguard/train.json", vg / "train.json")
    cut(SAMPLES / "vlguard/train.zip", vg / "train.zip", 0.7)
    r = recipe(tmp_path, {"name": "memes", "adapter": "vlguard", "path": str(vg / "train.json"),
                          "images_root": str(vg / "train.zip")})
    with pytest.raises(SourceError) as err:
        ingest.run(load_recipe(r), tmp_path / "out")
    msg = str(err.value)
    assert "'memes'" in msg and str(vg / "train.zip") in msg and "damaged zip" in msg


def test_member_of_a_damaged_zip(tmp_path):
    z = cut(SAMPLES / "vlguard/train.zip", tmp_path / "bundle.zip", 0.5)
    spec = SourceSpec(name="z", adapter="vlguard", path=str(z), member="train.json")
    with pytest.raises(SourceError, match="not a readable zip") as err:
        list(iter_records(spec, (), z))
    assert str(z) in str(err.value)
