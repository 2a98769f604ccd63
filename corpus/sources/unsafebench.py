"""UnsafeBench (yiting/UnsafeBench, gated, research only): image-only rows for prompt harm.

Real columns: ``image`` (HF Image: dict ``{bytes, path}``, or bytes), ``safety_label`` ("Safe"/"Unsafe"),
``category`` (one of 11: Hate, Harassment, Violence, Self-harm, Sexual, Shocking, Illegal activity,
Deception, Political, Public and personal health, Spam), ``source`` ("Laion5B"/"Lexica"), ``text``
(a caption added later by the dataset authors).

Labels: Unsafe -> harmful, Safe -> unharmful; no prompt, no response (image-only).

Categories: ``category`` is a harm only on Unsafe rows. On a Safe row it is the topic the image was
collected under (a safe picture from the "Violence" crawl), so:

- ``meta.category_role`` is ``"harm"`` (Unsafe) or ``"topic"`` (Safe); ``meta.topic`` holds a Safe row's topic;
- ``raw_categories`` holds ``category`` unchanged on Unsafe rows. On Safe rows it is empty by default
  (``safe_category: meta``), because the ingest stage maps every raw category through the taxonomy
  whatever the label, and a safe image must not get a harm category. ``safe_category: raw`` keeps the
  topic in ``raw_categories`` too (then its mapped category is a topic, not a harm).

The caption is not a user request, so it stays in ``meta.caption`` unless ``caption_as_prompt: true``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from corpus.sources.base import HARMFUL, UNHARMFUL, Draft, Drop, Source, map_label, register
from corpus.sources.image_sources import image_input
from corpus.sources.text import is_missing

LABELS = {"Unsafe": HARMFUL, "Safe": UNHARMFUL}


class UnsafeBenchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    safe_category: Literal["raw", "meta"] = "meta"
    caption_as_prompt: bool = False


@register
class UnsafeBench(Source):
    adapter = "unsafebench"
    Options = UnsafeBenchOptions
    required_columns = ("image", "safety_label", "category")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        label = map_label(fields.get("safety_label"), LABELS, "safety_label")
        if isinstance(label, Drop):
            return label
        image = image_input(fields.get("image"))
        if isinstance(image, Drop):
            return image
        category = fields.get("category")
        category = category.strip() if isinstance(category, str) and category.strip() else None
        harm = label == HARMFUL
        raw = [category] if category and (harm or self.options.safe_category == "raw") else []
        meta: dict[str, Any] = {"category_role": "harm" if harm else "topic", "image_source": fields.get("source")}
        if not harm and category:
            meta["topic"] = category
        caption = fields.get("text")
        prompt = None
        if not is_missing(caption):
            meta["caption"] = caption
            if self.options.caption_as_prompt:
                prompt = caption
        return [Draft(source_id=str(index), prompt=prompt, images=[image], request_label=label,
                      raw_categories=raw, meta=meta)]
