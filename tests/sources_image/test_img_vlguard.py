"""VLGuard adapter on the REAL train.json/test.json metadata, with a zip of drawn images at the real paths."""

from __future__ import annotations

import json
import zipfile
from collections import Counter

import pytest
from image_source_helpers import SAMPLES, png, run, spec
from pydantic import ValidationError

from corpus.images import normalise_image
from corpus.sources.base import ImageInput
from corpus.sources.files import ImageRoot
from corpus.sources.vlguard import KNOWN_PREFIXES, VLGuard, VLGuardOptions, prefix_of

# per-prefix record counts of the real files (checked against ys-zong/VLGuard data/{train,test}.json)
REAL_COUNTS = {
    "train": {"hatefulMemes": 500, "harm-p": 100, "bad_ads": 200, "HOD": 300, "privacyAlert": 900},
    "test": {"hatefulMemes": 200, "harm-p": 100, "bad_ads": 102, "HOD": 200, "privacyAlert": 398},
}


@pytest.mark.parametrize("split", ["train", "test"])
def test_real_metadata_counts_and_labels(real, split):
    path = real / f"vlguard/{split}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    drafts, drops = run(spec("vlguard", path))
    assert drops == [] and len(drafts) == len(raw)
    counts = Counter(d.meta["subset"] for _, d in drafts)
    assert counts == REAL_COUNTS[split]
    for i, d in drafts:
        r = raw[i]
        assert d.source_id == r["id"] and d.images == [ImageInput(ref=r["image"])]
        assert d.prompt is None and d.response is None
        assert d.request_label == ("unharmful" if r["safe"] else "harmful")
        assert d.raw_categories == [c for c in (r.get("harmful_category"), r.get("harmful_subcategory")) if c]
        assert d.meta["instr_resp"] == r["instr-resp"]
        if not r["safe"]:
            assert len(d.raw_categories) == 2


@pytest.mark.parametrize("prefix", KNOWN_PREFIXES)
def test_prefix_option_selects_one_subset(real, prefix):
    drafts, drops = run(spec("vlguard", real / "vlguard/train.json", options={"prefixes": [prefix]}))
    assert len(drafts) == REAL_COUNTS["train"][prefix] and not drops
    assert {d.images[0].ref.split("/")[0] for _, d in drafts} == {prefix}
    # the original record index is kept, so source ids and row positions still point into the real file
    raw = json.loads((real / "vlguard/train.json").read_text(encoding="utf-8"))
    assert all(raw[i]["image"].startswith(prefix + "/") for i, _ in drafts)


def test_two_prefixes_and_empty_prefixes(real):
    drafts, _ = run(spec("vlguard", real / "vlguard/test.json", options={"prefixes": ["harm-p", "bad_ads"]}))
    assert len(drafts) == 202
    with pytest.raises(ValidationError, match="at least one prefix"):
        VLGuardOptions.model_validate({"prefixes": []})


def test_real_rows_resolve_in_a_zip_of_drawn_images(real, tmp_path):
    raw = json.loads((real / "vlguard/train.json").read_text(encoding="utf-8"))
    picked = [next(r for r in raw if prefix_of(r["image"]) == p) for p in KNOWN_PREFIXES]
    meta = tmp_path / "train.json"
    meta.write_text(json.dumps(picked, indent=4), encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "train.zip", "w") as zf:
        for r in picked:
            zf.writestr(r["image"], png(prefix_of(r["image"])))
    drafts, _ = run(spec("vlguard", meta, tmp_path / "train.zip"))
    with ImageRoot(tmp_path / "train.zip") as root:
        for _, d in drafts:
            img = normalise_image(root.read(d.images[0].ref), max_pixels=10**6, max_bytes=10**6)
            assert (img.width, img.height) == (48, 32)


def test_embedded_sample(tmp_path):
    drafts, drops = run(spec("vlguard", SAMPLES / "vlguard/train.json", SAMPLES / "vlguard/train.zip"))
    assert not drops and len(drafts) == 16
    assert Counter(d.meta["subset"] for _, d in drafts) == {p: 3 for p in KNOWN_PREFIXES} | {"hatefulMemes": 4}
    names = set(zipfile.ZipFile(SAMPLES / "vlguard/train.zip").namelist())
    assert sum(d.images[0].ref not in names for _, d in drafts) == 1  # the planted missing image


def test_bad_records_and_untouched_paths(tmp_path):
    src = VLGuard(spec("vlguard", tmp_path))
    assert src.convert({"id": "a", "image": "x/y.png", "safe": "maybe"}, 0).reason == "unknown_label:safe"
    assert src.convert({"id": "a", "image": None, "safe": True}, 0).reason == "missing_value:image"
    assert src.convert({"id": "a", "image": "x/y.png", "safe": None}, 0).reason == "missing_label:safe"
    out = src.convert({"id": "a", "image": "hatefulMemes/../../../etc/passwd", "safe": False}, 0)
    assert out[0].images == [ImageInput(ref="hatefulMemes/../../../etc/passwd")]  # ImageRoot rejects it later
    assert src.convert({"id": "b", "image": "a/b.png", "safe": "false"}, 1)[0].request_label == "harmful"
