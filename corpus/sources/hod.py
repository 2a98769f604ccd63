"""HOD (poori-nuna/HOD-Benchmark-Dataset): harmful-object detection images with VOC XML or YOLO txt labels.

Real layout: ``dataset/all/jpg/img_hod_NNNNNN.jpg``, ``dataset/all/xml/img_hod_NNNNNN.xml`` (Pascal VOC,
``<object><name>`` one of the six classes) and ``dataset/all/txt/img_hod_NNNNNN.txt`` (YOLO: one
``cls cx cy w h`` line per object, ``cls`` an index into the class list).

Recipe: ``path`` is the annotation folder (``.../xml`` or ``.../txt``), or the folder holding ``xml/``
and ``txt/`` (then option ``annotations`` picks one); ``images_root`` is the image folder or a zip of it
(required). ``records()`` walks the annotation files in name order; each one's image is the file of the same stem
(``image_ext``, default ``.jpg``) in ``images_root``, passed on as ``ImageInput(ref=...)`` (a missing image
becomes the ingest drop ``image:missing``).

Options: ``annotations: xml|txt``; ``classes`` (YOLO index -> name; default alcohol, insulting_gesture,
blood, cigarette, gun, knife, the order under which the real ``img_hod_000011.txt`` class 2 is the
``blood`` of its XML); ``label`` (default ``harmful``).

**Unverified**: that every HOD image is harmful. The paper uses 60% of HOD "to balance" the image
data, which suggests it treats HOD as all harmful, but says nothing explicit; VLGuard even marks some
HOD images safe. Set ``label: teacher`` to let the teacher decide instead.
Rows are image-only (prompt harm); the distinct object class names are the raw categories.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corpus.sources.base import Draft, Drop, ImageInput, Record, Source, SourceError, register
from corpus.sources.image_sources import LabelChoice, choice_label, local_path

DEFAULT_CLASSES = ["alcohol", "insulting_gesture", "blood", "cigarette", "gun", "knife"]


class HODOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotations: Literal["xml", "txt"] = "xml"
    classes: list[str] = Field(default_factory=lambda: list(DEFAULT_CLASSES), min_length=1)
    label: LabelChoice = "harmful"
    image_ext: str = Field(".jpg", pattern=r"^\.[A-Za-z0-9]+$")


def parse_voc(text: str | bytes) -> dict[str, Any]:
    """Object names and image size of a Pascal VOC annotation; ValueError if it is not one."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None
    if root.tag != "annotation":
        raise ValueError(f"root element is <{root.tag}>, not <annotation>")
    names = [(o.findtext("name") or "").strip() for o in root.findall("object")]
    if any(not n for n in names):
        raise ValueError("an <object> has no <name>")
    size = root.find("size")

    def dim(tag: str) -> int | None:
        v = size.findtext(tag) if size is not None else None
        return int(v) if v and v.strip().isdigit() else None

    return {"objects": names, "width": dim("width"), "height": dim("height"),
            "filename": (root.findtext("filename") or "").strip() or None}


def parse_yolo(text: str, classes: list[str]) -> dict[str, Any]:
    """Object names of a YOLO txt annotation (``cls cx cy w h`` per line); ValueError on a bad line."""
    names = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ValueError(f"line {n}: expected 'cls cx cy w h', got {line.strip()!r}")
        try:
            cls = int(parts[0])
            coords = [float(p) for p in parts[1:]]
        except ValueError:
            raise ValueError(f"line {n}: not numbers: {line.strip()!r}") from None
        if not 0 <= cls < len(classes):
            raise ValueError(f"line {n}: class index {cls} outside the {len(classes)} classes {classes}")
        if any(not 0.0 <= c <= 1.0 for c in coords):
            raise ValueError(f"line {n}: box coordinates must be normalised to [0, 1]: {line.strip()!r}")
        names.append(classes[cls])
    return {"objects": names, "width": None, "height": None, "filename": None}


@register
class HOD(Source):
    adapter = "hod"
    Options = HODOptions

    def _annotation_dir(self, path: Path | None) -> Path:
        base = Path(path) if path is not None else local_path(self.spec.path, "hod path")
        if not base.is_dir():
            raise SourceError(f"hod: {base} is not a folder of annotation files")
        sub = base / self.options.annotations
        return sub if sub.is_dir() else base

    def records(self, path: Path | None = None) -> Iterator[Record]:
        if getattr(self.spec, "hub", None):
            raise SourceError("hod reads a local annotation folder (`path`), not a hub dataset")
        ann_dir = self._annotation_dir(path)
        ext = "." + self.options.annotations
        files = sorted(p for p in ann_dir.iterdir() if p.is_file() and p.suffix.lower() == ext)
        if not files:
            raise SourceError(f"hod: no *{ext} annotation files in {ann_dir}")
        limit = self.spec.limit
        for index, f in enumerate(files):
            if limit is not None and index >= limit:
                return
            try:
                if ext == ".xml":
                    parsed = parse_voc(f.read_bytes())
                else:
                    parsed = parse_yolo(f.read_text(encoding="utf-8"), self.options.classes)
            except (ValueError, UnicodeDecodeError) as exc:
                yield Record(index, None, Drop("hod:bad_annotation", f"{f.name}: {exc}"))
                continue
            image = f.stem + self.options.image_ext
            yield Record(index, {"stem": f.stem, "annotation": f.name, "image": image, **parsed})

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        image = fields.get("image")
        if not image:
            return Drop("missing_value:image", f"annotation {fields.get('annotation')} names no image")
        objects = list(fields.get("objects") or [])
        meta = {"annotation": fields.get("annotation"), "objects": objects,
                "annotated_size": [fields.get("width"), fields.get("height")],
                "label_rule": f"option label={self.options.label} (unverified: HOD assumed all harmful)"}
        return [Draft(source_id=str(fields.get("stem")), images=[ImageInput(ref=image)],
                      request_label=choice_label(self.options.label),
                      raw_categories=sorted(set(objects)), meta=meta)]
