"""SPA-VL (sqrti/SPA-VL, CC-BY-4.0) train: text-image rows for prompt and response harm.

Real train columns: ``image`` (HF Image), ``question``, ``chosen``, ``rejected``, ``image_name``
(``class1/class2/class3/n.jpg``: the harm domain, category and subcategory). The validation config adds
``class1``/``class2``/``class3`` columns, which are used when present.

One (question, response) pair per row (46,030 samples ~ 50% of the 93,258 rows in the paper): option
``response`` picks ``chosen``, ``rejected``, ``random`` (seeded per row by ``seed`` and the row's own
content, so it is stable across runs and machines) or ``both`` (two samples per row).

**Unverified label derivation** (the train config has no harm labels and the paper does not say how
they were set; check against GuardReasoner-VLTrainTextImage before relying on it):

- request: ``request_label`` option, default ``harmful``. SPA-VL questions are harm-seeking by
  construction (each is generated for a harm subcategory, which ``image_name``'s class1 names);
- response: ``chosen_label`` (default ``unharmful``) and ``rejected_label`` (default ``harmful``), i.e.
  the preference role is read as the safety verdict. A rejected answer can still be harmless, so
  ``teacher`` (null label, decided during synthesis) is offered for each;
- ``label_columns``: a per-response safety column (e.g. joined from ``meta_files/safety``), named per
  role (``{chosen: chosen_safety, rejected: rejected_safety}``); when the row has it, it overrides the
  role rule. Values: safe/unsafe/harmful/unharmful strings, or booleans read as ``is_safe``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corpus.sources.base import Draft, Drop, Source, register
from corpus.sources.image_sources import LabelChoice, choice_label, image_input, safety_value_label
from corpus.sources.text import is_missing

Role = Literal["chosen", "rejected"]


class SPAVLOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response: Literal["chosen", "rejected", "random", "both"] = "random"
    seed: int = 0
    request_label: LabelChoice = "harmful"
    chosen_label: LabelChoice = "unharmful"
    rejected_label: LabelChoice = "harmful"
    label_columns: dict[Role, str] = Field(default_factory=dict)


def classes_of(fields: dict[str, Any]) -> list[str]:
    """Harm domain/category/subcategory: the class columns when present, else the folders of image_name."""
    cols = [fields.get(c) for c in ("class1", "class2", "class3")]
    if any(isinstance(c, str) and c.strip() for c in cols):
        return [c.strip() for c in cols if isinstance(c, str) and c.strip()]
    name = fields.get("image_name")
    if isinstance(name, str) and "/" in name:
        return [p for p in name.replace("\\", "/").split("/")[:-1] if p.strip()][:3]
    return []


def pick_role(seed: int, fields: dict[str, Any], index: int) -> Role:
    """Seeded coin flip for one row: depends on the seed and the row's content, not on the run."""
    key = json.dumps([seed, fields.get("image_name"), fields.get("question"), index], ensure_ascii=False)
    return "chosen" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "rejected"


@register
class SPAVL(Source):
    adapter = "spavl"
    Options = SPAVLOptions
    required_columns = ("image", "question", "chosen", "rejected")

    def _roles(self, fields: dict[str, Any], index: int) -> list[Role]:
        r = self.options.response
        if r == "both":
            return ["chosen", "rejected"]
        if r == "random":
            return [pick_role(self.options.seed, fields, index)]
        return [r]

    def _response_label(self, role: Role, fields: dict[str, Any]) -> tuple[str | None | Drop, str]:
        col = self.options.label_columns.get(role)
        if col and fields.get(col) is not None:
            return safety_value_label(fields[col], col), f"column:{col}"
        choice = self.options.chosen_label if role == "chosen" else self.options.rejected_label
        return choice_label(choice), f"role:{role}->{choice}"

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        question = fields.get("question")
        if is_missing(question):
            return Drop("empty_prompt", "question is empty")
        image = image_input(fields.get("image"))
        if isinstance(image, Drop):
            return image
        classes = classes_of(fields)
        drafts = []
        for role in self._roles(fields, index):
            response = fields.get(role)
            if is_missing(response):
                return Drop("empty_response", f"{role} is empty")
            label, rule = self._response_label(role, fields)
            if isinstance(label, Drop):
                return label
            meta = {"response_role": role, "response_label_rule": rule, "image_name": fields.get("image_name"),
                    "request_label_rule": f"option request_label={self.options.request_label} (unverified)"}
            if classes:
                meta["class1"] = classes[0]
            sid = str(fields.get("image_name") or index)
            drafts.append(Draft(source_id=f"{sid}#{role}" if self.options.response == "both" else sid,
                                prompt=question, response=response, images=[image],
                                request_label=choice_label(self.options.request_label), response_label=label,
                                raw_categories=classes, meta=meta))
        return drafts
