"""HOD (poori-nuna/HOD-Benchmark-Dataset): harmful-object detection images with VOC XML or YOLO txt labels.

Real layout: ``dataset/all/jpg/img_hod_NNNNNN.jpg``, ``dataset/all/xml/img_hod_NNNNNN.xml`` (Pascal VOC,
``<object><name>`` one of the six classes) and ``dataset/all/txt/img_hod_NNNNNN.txt`` (YOLO: one
``cls cx cy w h`` line per object, ``cls`` an index into the class list).

Recipe: ``path`` is the annotation folder (``.../xml`` or ``.../txt``), or the folder holding ``xml/``
and ``txt/`` (then option ``annotations`` picks one); ``images_root`` is the image folder or a zip of it
(required). ``records()`` walks the IMAGES and the annotation files together, in stem order, so every
file is accounted for: an image with its annotation is a row (``ImageInput(ref=...)``); an image without
an annotation file is dropped (``missing_annotation``); an annotation without any object is dropped
(``no_objects``); an unreadable annotation is dropped (``hod:bad_annotation``); an annotation whose image
is absent refers to ``<stem><image_ext>`` (default ``.jpg``), which the ingest stage drops as ``image:missing``.

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
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corpus.sources.base import Draft, Drop, ImageInput, Record, Source, SourceError, register
from corpus.sources.image_sources import LabelChoice, choice_label, local_path
from corpus.sources.loaders import IMAGE_SUFFIXES

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

    def _images(self) -> dict[str, str]:
        """Stem -> path (relative to ``images_root``) of every image file directly in the image root."""
        root = self.images_root or local_path(self.spec.images_root, f"hod source {self.spec.name!r}: images_root")
        root = Path(root)
        if root.is_dir():
            names = [p.name for p in root.iterdir() if p.is_file()]
        elif zipfile.is_zipfile(root):
            with zipfile.ZipFile(root) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/") and "/" not in n]
        else:
            raise SourceError(f"hod source {self.spec.name!r}: images_root {root} is neither a folder nor a zip file")
        out: dict[str, str] = {}
        for name in sorted(names):
            stem, dot, ext = name.rpartition(".")
            if dot and ("." + ext.lower()) in IMAGE_SUFFIXES:
                out.setdefault(stem, name)
        return out

    def records(self, path: Path | None = None) -> Iterator[Record]:
        if getattr(self.spec, "hub", None):
            raise SourceError("hod reads a local annotation folder (`path`), not a hub dataset")
        if not self.spec.images_root and self.images_root is None:
            raise SourceError(f"hod source {self.spec.name!r}: images_root (the image folder or zip) is required")
        ann_dir = self._annotation_dir(path)
        ext = "." + self.options.annotations
        annotations = {p.stem: p for p in ann_dir.iterdir() if p.is_file() and p.suffix.lower() == ext}
        if not annotations:
            raise SourceError(f"hod: no *{ext} annotation files in {ann_dir}")
        images = self._images()
        limit = self.spec.limit
        for index, stem in enumerate(sorted(annotations.keys() | images.keys())):
            if limit is not None and index >= limit:
                return
            f = annotations.get(stem)
            image = images.get(stem, stem + self.options.image_ext)
            if f is None:
                yield Record(index, {"stem": stem, "annotation": None, "image": image, "objects": []})
                continue
            try:
                if ext == ".xml":
                    parsed = parse_voc(f.read_bytes())
                else:
                    parsed = parse_yolo(f.read_text(encoding="utf-8"), self.options.classes)
            except (ValueError, UnicodeDecodeError, OSError) as exc:
                yield Record(index, None, Drop("hod:bad_annotation", f"{f.name}: {exc}"))
                continue
            yield Record(index, {"stem": stem, "annotation": f.name, "image": image, **parsed})

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        image = fields.get("image")
        if not image:
            return Drop("missing_value:image", f"annotation {fields.get('annotation')} names no image")
        if not fields.get("annotation"):
            return Drop("missing_annotation", f"image {image} has no {self.options.annotations} annotation file")
        objects = list(fields.get("objects") or [])
        if not objects:
            return Drop("no_objects", f"annotation {fields.get('annotation')} lists no object: nothing harmful shown")
        meta = {"annotation": fields.get("annotation"), "objects": objects,
                "annotated_size": [fields.get("width"), fields.get("height")],
                "label_rule": f"option label={self.options.label} (unverified: HOD assumed all harmful)"}
        return [Draft(source_id=str(fields.get("stem")), images=[ImageInput(ref=image)],
                      request_label=choice_label(self.options.label),
                      raw_categories=sorted(set(objects)), meta=meta)]
