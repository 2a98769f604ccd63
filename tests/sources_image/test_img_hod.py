"""HOD adapter: VOC XML and YOLO txt parsing on the REAL annotation files, and the annotation-folder walk."""

from __future__ import annotations

import shutil

import pytest
from image_source_helpers import SAMPLES, png, run, spec
from samples_script import make_embedded_samples as mk  # the VOC writer of the embedded samples

from corpus.sources.base import ImageInput, SourceError
from corpus.sources.hod import DEFAULT_CLASSES, parse_voc, parse_yolo

REAL_SIZES = {"img_hod_000001": (612, 408), "img_hod_000002": (612, 408), "img_hod_000011": (542, 612),
              "img_hod_000044": (612, 408)}


@pytest.mark.parametrize("stem", sorted(REAL_SIZES))
def test_voc_real_files(real, stem):
    info = parse_voc((real / f"hod/{stem}.xml").read_bytes())
    assert info["objects"] == ["blood"]
    assert (info["width"], info["height"]) == REAL_SIZES[stem]
    assert info["filename"] == f"{stem}.jpg"


def test_yolo_real_file_matches_its_xml(real):
    yolo = parse_yolo((real / "hod/img_hod_000011.txt").read_text(), DEFAULT_CLASSES)
    assert yolo["objects"] == parse_voc((real / "hod/img_hod_000011.xml").read_bytes())["objects"] == ["blood"]


@pytest.mark.parametrize("text, match", [
    ("9 0.5 0.5 0.1 0.1", "class index 9"), ("2 0.5 0.5 0.1", "expected 'cls cx cy w h'"),
    ("x 0.5 0.5 0.1 0.1", "not numbers"), ("2 1.5 0.5 0.1 0.1", "normalised"),
])
def test_yolo_bad_lines(text, match):
    with pytest.raises(ValueError, match=match):
        parse_yolo(text, DEFAULT_CLASSES)


@pytest.mark.parametrize("text, match", [
    ("<annotation><object><name></name></object></annotation>", "no <name>"),
    ("<notvoc/>", "not <annotation>"), ("<annotation>", "not well-formed"),
])
def test_voc_bad_files(text, match):
    with pytest.raises(ValueError, match=match):
        parse_voc(text)


def test_real_annotations_through_the_adapter(real, tmp_path):
    (tmp_path / "xml").mkdir()
    (tmp_path / "txt").mkdir()
    for f in real.glob("hod/*.xml"):
        shutil.copy(f, tmp_path / "xml")
    for f in real.glob("hod/*.txt"):
        shutil.copy(f, tmp_path / "txt")
    (tmp_path / "jpg").mkdir()
    for stem in REAL_SIZES:
        (tmp_path / "jpg" / f"{stem}.jpg").write_bytes(png(stem))
    drafts, drops = run(spec("hod", tmp_path, tmp_path / "jpg"))
    assert not drops
    assert [d.source_id for _, d in drafts] == sorted(REAL_SIZES)
    for i, (index, d) in enumerate(drafts):
        assert index == i and d.images == [ImageInput(ref=f"{d.source_id}.jpg")]
        assert d.request_label == "harmful" and d.raw_categories == ["blood"] and d.prompt is None
        assert d.meta["annotated_size"] == list(REAL_SIZES[d.source_id])
    drafts, _ = run(spec("hod", tmp_path, tmp_path / "jpg", options={"annotations": "txt", "label": "teacher"}))
    assert [(d.source_id, d.raw_categories, d.request_label) for _, d in drafts] == [
        ("img_hod_000011", ["blood"], None)]


def test_embedded_sample_and_class_list():
    root = SAMPLES / "hod/dataset/all"
    drafts, drops = run(spec("hod", root, root / "jpg"))
    assert [(d.reason, d.detail.split()[1] if d.reason == "missing_annotation" else "") for _, d in drops] == [
        ("hod:bad_annotation", ""), ("missing_annotation", "img_hod_000110.jpg"), ("no_objects", "")]
    assert len(drafts) == 12
    cats = {d.source_id: d.raw_categories for _, d in drafts}
    assert cats["img_hod_000102"] == ["alcohol", "cigarette"] and cats["img_hod_000001"] == ["blood"]
    present = {p.stem for p in (root / "jpg").glob("*.jpg")}
    assert [d.source_id for _, d in drafts if d.source_id not in present] == ["img_hod_000108"]
    # YOLO txt with a custom class order maps indices through the option list
    drafts, _ = run(spec("hod", root / "txt", root / "jpg", options={"annotations": "txt",
                                                                     "classes": list(reversed(DEFAULT_CLASSES))}))
    by = {d.source_id: d.raw_categories for _, d in drafts}
    assert by["img_hod_000011"] == ["cigarette"]  # class 2 of the reversed list
    # limit is honoured
    drafts, _ = run(spec("hod", root, root / "jpg", limit=3))
    assert len(drafts) == 3


def test_folder_without_annotations(tmp_path):
    with pytest.raises(SourceError, match="no \\*.xml annotation files"):
        run(spec("hod", tmp_path, tmp_path))


def _hod_layout(tmp_path, n_images: int = 16):
    """HOD's real layout: dataset/all/{jpg,xml,txt}; the last image has no annotation file, the one before it an
    annotation without objects (VOC without <object>, empty YOLO txt)."""
    base = tmp_path / "dataset/all"
    for sub in ("jpg", "xml", "txt"):
        (base / sub).mkdir(parents=True)
    stems = [f"img_hod_{i:06d}" for i in range(1, n_images + 1)]
    for i, stem in enumerate(stems):
        (base / "jpg" / f"{stem}.jpg").write_bytes(mk.encode(mk.drawn(3000 + i, (64, 48), stem[-2:]), "JPEG"))
        if i == n_images - 1:
            continue  # image without annotation
        objects = [] if i == n_images - 2 else [DEFAULT_CLASSES[i % len(DEFAULT_CLASSES)]]
        (base / "xml" / f"{stem}.xml").write_text(mk.voc_xml(stem, objects, (48, 32)), encoding="utf-8")
        (base / "txt" / f"{stem}.txt").write_text(
            "".join(f"{DEFAULT_CLASSES.index(o)} 0.5 0.5 0.2 0.2\n" for o in objects), encoding="utf-8")
    return base, stems


@pytest.mark.parametrize("annotations", ["xml", "txt"])
def test_every_image_is_a_row_kept_or_dropped(tmp_path, annotations):
    base, stems = _hod_layout(tmp_path)
    drafts, drops = run(spec("hod", base, base / "jpg", options={"annotations": annotations}))
    assert len(drafts) + len(drops) == 16  # 16 images in, 16 rows out
    assert [(i, d.reason) for i, d in drops] == [(14, "no_objects"), (15, "missing_annotation")]
    assert stems[15] in drops[1][1].detail


def test_image_zip_root_and_ingest_drop_table(tmp_path):
    import zipfile

    import yaml

    from corpus.recipe import load_recipe
    from corpus.stages import ingest

    base, stems = _hod_layout(tmp_path)
    with zipfile.ZipFile(tmp_path / "jpg.zip", "w") as zf:
        for p in sorted((base / "jpg").iterdir()):
            zf.write(p, p.name)
    (base / "xml" / "img_hod_000099.xml").write_text(
        (base / "xml" / "img_hod_000001.xml").read_text().replace("img_hod_000001", "img_hod_000099"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "ingest": {"heldout": None, "sources": [
        {"name": "hod", "adapter": "hod", "path": str(base), "images_root": str(tmp_path / "jpg.zip")}]}}))
    m = ingest.run(load_recipe(recipe), tmp_path / "out")
    assert m["rows_in"] == 17 and m["rows_out"] == 14
    assert m["drop_reasons"] == {"no_objects": 1, "missing_annotation": 1, "image:missing": 1}
