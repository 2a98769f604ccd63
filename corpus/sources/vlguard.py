"""VLGuard (ys-zong/VLGuard, MIT): ``train.json`` / ``test.json`` with images in ``train.zip`` / ``test.zip``.

Real fields: ``id``, ``image`` (relative path whose first segment names the original dataset),
``safe`` (bool), ``harmful_category`` and ``harmful_subcategory`` (unsafe rows only) and ``instr-resp``
(safe image: ``[{safe_instruction, response}, {unsafe_instruction, response}]``; unsafe image:
``[{instruction, response}]``).

First path segments (train + test counts in the real files): ``hatefulMemes`` 500+200 (HatefulMemes),
``harm-p`` 100+100 (HarmP, hateful political memes), ``bad_ads`` 200+102 (BadNews: deceptive ads;
**unverified** that this is the paper's BadNews), ``HOD`` 300+200, ``privacyAlert`` 900+398 (not named in
the paper). Option ``prefixes`` keeps only records whose path starts with one of them, so a recipe lists
each original dataset as its own source (own name, fraction, taxonomy).

Rows are image-only (prompt and response null): GuardReasoner-VL uses these images for prompt harm
only. ``safe`` False -> harmful, True -> unharmful. ``harmful_category`` and ``harmful_subcategory``
become the raw categories (both strings, unchanged); ``instr-resp`` is kept in ``meta.instr_resp``.
The image is ``ImageInput(ref=image)``, resolved in the spec's ``images_root`` (folder or zip).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from corpus.sources.base import HARMFUL, UNHARMFUL, Draft, Drop, ImageInput, Record, Source, map_label, register

LABELS = {False: HARMFUL, True: UNHARMFUL}
KNOWN_PREFIXES = ("hatefulMemes", "harm-p", "bad_ads", "HOD", "privacyAlert")


def prefix_of(path: Any) -> str | None:
    """First segment of a record's image path (``hatefulMemes/07685.png`` -> ``hatefulMemes``)."""
    if not isinstance(path, str) or not path:
        return None
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    return parts[0] if len(parts) > 1 else None


class VLGuardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: keep only records whose image path starts with one of these folders; None keeps all
    prefixes: list[str] | None = None

    @field_validator("prefixes")
    @classmethod
    def _non_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("give at least one prefix, or leave `prefixes` out to keep every record")
        return v


@register
class VLGuard(Source):
    adapter = "vlguard"
    Options = VLGuardOptions
    required_columns = ("id", "image", "safe")

    def records(self, path: Path | None = None) -> Iterator[Record]:
        """The table's records, less those outside ``prefixes`` (a selection, not a drop)."""
        wanted = set(self.options.prefixes) if self.options.prefixes else None
        for rec in super().records(path):
            if wanted is None or rec.fields is None or prefix_of(rec.fields.get("image")) in wanted:
                yield rec

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        safe = fields.get("safe")
        if isinstance(safe, str):  # tolerate "true"/"false" in hand-edited files
            safe = {"true": True, "false": False}.get(safe.strip().lower(), safe)
        label = map_label(safe, LABELS, "safe")
        if isinstance(label, Drop):
            return label
        path = fields.get("image")
        if path is None or (isinstance(path, str) and not path.strip()):
            return Drop("missing_value:image", "the record's image path is null or empty")
        if not isinstance(path, str):
            return Drop("invalid_field:image", f"image is a {type(path).__name__}, not a path")
        raw = [c for c in (fields.get("harmful_category"), fields.get("harmful_subcategory"))
               if isinstance(c, str) and c.strip()]
        meta = {"subset": prefix_of(path), "image_path": path, "instr_resp": fields.get("instr-resp") or []}
        return [Draft(source_id=self.source_id(fields, index, "id"), images=[ImageInput(ref=path)],
                      request_label=label, raw_categories=raw, meta=meta)]
