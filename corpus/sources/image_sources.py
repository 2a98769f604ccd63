"""Image and text-image seed adapters: shared helpers, and the import that registers them all.

The adapters live in their own modules (one dataset family each):

- ``unsafebench`` (:mod:`corpus.sources.unsafebench`): yiting/UnsafeBench, image-only rows.
- ``vlguard`` (:mod:`corpus.sources.vlguard`): ys-zong/VLGuard ``train.json``/``test.json`` and its image zip;
  the ``prefixes`` option splits it into HatefulMemes, HarmP, BadNews, HOD and PrivacyAlert.
- ``hod`` (:mod:`corpus.sources.hod`): HOD-Benchmark-Dataset, VOC XML or YOLO txt annotations next to images.
- ``spavl`` (:mod:`corpus.sources.spavl`): sqrti/SPA-VL train, one (question, response) pair per row.
- ``vltest`` and ``guardreasoner_vl`` (:mod:`corpus.sources.vltest`): the released GuardReasoner-VL
  eval/train JSON files (``messages`` + ``images``), mostly for decontamination.

Image sources feed prompt harm only: their rows have an image and no prompt or response text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from corpus.sources.base import HARMFUL, UNHARMFUL, Drop, ImageInput, SourceError, label_missing, missing_label

#: a label option: a fixed gold label, or "teacher" (null label, decided during synthesis)
LabelChoice = Literal["harmful", "unharmful", "teacher"]


def choice_label(choice: str) -> str | None:
    """The gold label an option value stands for (``teacher`` means null: the teacher decides)."""
    return None if choice == "teacher" else choice


def image_input(value: Any, column: str = "image") -> ImageInput | Drop:
    """An image cell as the seed gives it: an HF Image dict ``{bytes, path}``, raw bytes or a relative path.

    Bytes win over the path (HF keeps the original file name in ``path`` even when the bytes are
    embedded); a path alone becomes ``ImageInput(ref=path)``, resolved by the ingest stage in the
    source's ``images_root``. The path is passed through untouched: ImageRoot checks it.
    """
    from corpus.sources.loaders import as_image_input

    try:
        image = as_image_input(value)
    except TypeError:
        return Drop(f"invalid_field:{column}", f"{column} has unsupported type {type(value).__name__}")
    if image is None:
        return Drop(f"missing_value:{column}", f"{column} is null: neither bytes nor path")
    if image.data is not None and not image.data:
        return Drop("image:empty", f"{column} is empty bytes")
    return image


def safety_value_label(value: Any, column: str) -> str | Drop:
    """Map a per-response safety judgment to a label.

    Strings: safe/unharmful/harmless -> unharmful, unsafe/harmful -> harmful (case-insensitive).
    Booleans are read as ``is_safe`` (True -> unharmful), as in BeaverTails-style columns.
    """
    if isinstance(value, bool):
        return UNHARMFUL if value else HARMFUL
    if label_missing(value):
        return missing_label(column, value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("safe", "unharmful", "harmless", "benign"):
            return UNHARMFUL
        if v in ("unsafe", "harmful"):
            return HARMFUL
    return Drop(f"unknown_label:{column}", f"{column}={value!r} is not a safety judgment (safe/unsafe/bool)")


def local_path(location: str | None, what: str) -> Path:
    """A local path of a spec, resolved as the recipe does (``embedded:`` prefix allowed); SourceError when missing."""
    from corpus.sources.loaders import resolve_path

    if not location:
        raise SourceError(f"{what} is not set")
    p = resolve_path(location)
    if not p.exists():
        raise SourceError(f"{what} {location!r} does not exist ({p})")
    return p

