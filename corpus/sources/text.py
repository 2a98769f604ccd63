"""Text seed adapters of the GuardReasoner recipe: WildGuardMix, Aegis 1.0/2.0, BeaverTails, ToxicChat.

Each adapter reads the dataset's real columns (see shared sources.md) and applies GuardReasoner's
label mapping. A null label means "unknown, the teacher decides" (schemas/sample.json). Also holds
the small field helpers the other text adapters share.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from corpus.sources.base import HARMFUL, UNHARMFUL, Draft, Drop, Source, map_label, missing_label, register

SAFE_UNSAFE = {"safe": UNHARMFUL, "unsafe": HARMFUL}
HARM_LABELS = {"harmful": HARMFUL, "unharmful": UNHARMFUL}
REFUSAL_LABELS = {"refusal": "refusal", "compliance": "compliance"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------- helpers


def is_missing(value: Any) -> bool:
    """None, NaN (pandas-written files) or an empty/blank string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _short(value: Any, n: int = 60) -> str:
    r = repr(value)
    return r if len(r) <= n else r[:n] + "..."


def text(fields: dict[str, Any], name: str, required: bool = True) -> str | None | Drop:
    """A text field, unchanged. Absent/null/blank: Drop ``missing_field:<name>`` if required, else None."""
    value = fields.get(name)
    if is_missing(value):
        if not required:
            return None
        state = "absent" if name not in fields else f"empty ({_short(value)})"
        return Drop(f"missing_field:{name}", f"{name} is {state}")
    if not isinstance(value, str):
        return Drop(f"invalid_field:{name}", f"{name} is a {type(value).__name__}, not text: {_short(value)}")
    return value


def flag(value: Any, column: str) -> bool | Drop:
    """A boolean seed value: bool, 0/1 (int or integral float), or "true"/"false"/"0"/"1" text (CSV)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "1.0", "0.0"):
        return value.strip().lower() in ("true", "1", "1.0")
    if is_missing(value):
        return missing_label(column, value)
    return Drop(f"unknown_label:{column}", f"{column}={_short(value)} is not a boolean (true/false or 0/1)")


def integer(value: Any, column: str) -> int | Drop:
    if isinstance(value, bool):
        return Drop(f"invalid_field:{column}", f"{column}={value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    if is_missing(value):
        return Drop(f"missing_field:{column}", f"{column} is empty")
    return Drop(f"invalid_field:{column}", f"{column}={_short(value)} is not an integer")


def one_category(value: Any) -> list[str]:
    """A single raw category value as a list (empty when missing), verbatim."""
    return [] if is_missing(value) else [str(value)]


def split_categories(value: Any, sep: str = ",") -> list[str]:
    """A delimited category string (or list) as a list of stripped, non-empty raw strings."""
    if is_missing(value):
        return []
    items = value if isinstance(value, list) else str(value).split(sep)
    return [str(s).strip() for s in items if not is_missing(s) and str(s).strip()]


# -------------------------------------------------------------------------------- WildGuardMix


class WildGuardOptions(Strict):
    #: rows whose prompt_harm_label is null (annotators disagreed): "teacher" keeps them with a null
    #: request label (GuardReasoner used all 86,759 train rows), "drop" drops them (unknown_label:...)
    unlabelled_prompt: Literal["teacher", "drop"] = "teacher"


@register
class WildGuardMix(Source):
    """allenai/wildguardmix, ``wildguardtrain`` and ``wildguardtest`` (same columns; test adds agreements).

    Request = prompt_harm_label, refusal = response_refusal_label, response = response_harm_label.
    Response labels exist only where the row has a response; a null response label with a response
    is left to the teacher. ``subcategory`` is the raw category; ``adversarial`` goes to meta.
    """

    adapter = "wildguardmix"
    Options = WildGuardOptions
    required_columns = (
        "prompt", "adversarial", "response", "prompt_harm_label", "response_refusal_label",
        "response_harm_label", "subcategory",
    )
    AGREEMENT = ("prompt_harm_agreement", "response_refusal_agreement", "response_harm_agreement")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        prompt = text(fields, "prompt")
        if isinstance(prompt, Drop):
            return prompt
        response = text(fields, "response", required=False)
        if isinstance(response, Drop):
            return response
        raw = fields.get("prompt_harm_label")
        if is_missing(raw):
            if self.options.unlabelled_prompt == "drop":
                return Drop("missing_label:prompt_harm_label", "prompt_harm_label is null (annotators disagreed)")
            request = None
        else:
            request = map_label(raw, HARM_LABELS, "prompt_harm_label")
            if isinstance(request, Drop):
                return request
        response_label = refusal = None
        if response is not None:
            for col, mapping in (("response_harm_label", HARM_LABELS), ("response_refusal_label", REFUSAL_LABELS)):
                value = fields.get(col)
                got = None if is_missing(value) else map_label(value, mapping, col)
                if isinstance(got, Drop):
                    return got
                if col == "response_harm_label":
                    response_label = got
                else:
                    refusal = got
        meta: dict[str, Any] = {"adversarial": fields.get("adversarial")}
        meta.update({k: fields[k] for k in self.AGREEMENT if k in fields and not is_missing(fields[k])})
        return [Draft(
            source_id=self.source_id(fields, index), prompt=prompt, response=response, request_label=request,
            response_label=response_label, refusal_label=refusal,
            raw_categories=one_category(fields.get("subcategory")), meta=meta,
        )]


# ----------------------------------------------------------------------------------- Aegis 1.0


class Aegis1Options(Strict):
    #: keep only these text_type values (e.g. ["user_message"] for AegisSafetyTest); None keeps all
    text_types: list[str] | None = None


@register
class Aegis1(Source):
    """nvidia/Aegis-AI-Content-Safety-Dataset-1.0: majority vote of the annotators' labels.

    The vote is ``Counter.most_common(1)`` over labels_0..labels_{num_annotations-1} (whole strings,
    nulls skipped; a tie goes to the label seen first). Winner ``Safe`` -> unharmful, anything else
    (``Needs Caution``, category lists) -> harmful. Raw categories = the winner split on commas. All
    text_types are prompts; there is no response.
    """

    adapter = "aegis1"
    Options = Aegis1Options
    required_columns = ("id", "text", "text_type", "labels_0", "num_annotations")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        prompt = text(fields, "text")
        if isinstance(prompt, Drop):
            return prompt
        text_type = fields.get("text_type")
        if self.options.text_types is not None and text_type not in self.options.text_types:
            return Drop("excluded:text_type", f"text_type={text_type!r} not in {self.options.text_types}")
        n = integer(fields.get("num_annotations"), "num_annotations")
        if isinstance(n, Drop):
            return n
        if n < 1:
            return Drop("missing_label:labels_0", f"num_annotations={n}: no annotator labelled this record")
        labels = []
        for i in range(n):
            col = f"labels_{i}"
            if col not in fields:
                return Drop(f"missing_label:{col}", f"num_annotations={n} but the record has no {col}")
            value = fields[col]
            if is_missing(value):
                continue
            if not isinstance(value, str):
                return Drop(f"invalid_field:{col}", f"{col}={_short(value)} is not text")
            labels.append(value)
        if not labels:
            return Drop("missing_label:labels_0", f"all {n} annotator labels are null")
        winner, votes = Counter(labels).most_common(1)[0]
        label = UNHARMFUL if winner.strip().casefold() == "safe" else HARMFUL
        meta = {"text_type": text_type, "labels": labels, "votes": votes, "num_annotations": n}
        return [Draft(
            source_id=self.source_id(fields, index, "id"), prompt=prompt, request_label=label,
            raw_categories=split_categories(winner), meta=meta,
        )]


# ----------------------------------------------------------------------------------- Aegis 2.0


class Aegis2Options(Strict):
    #: label responses with response_label_source == refusal_data_augmentation as refusals (heuristic)
    infer_refusal: bool = False


@register
class Aegis2(Source):
    """nvidia/Aegis-AI-Content-Safety-Dataset-2.0 (optional source; not in the original recipe).

    prompt_label / response_label: unsafe -> harmful, safe -> unharmful, null -> teacher decides.
    Redacted rows (prompt "REDACTED", reconstruction_id_if_redacted set) are dropped (``redacted``).
    ``violated_categories`` (comma-separated) are the raw categories.
    """

    adapter = "aegis2"
    Options = Aegis2Options
    required_columns = ("id", "prompt", "response", "prompt_label", "response_label", "violated_categories")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        prompt = text(fields, "prompt")
        if isinstance(prompt, Drop):
            return prompt
        recon = fields.get("reconstruction_id_if_redacted")
        if prompt.strip() == "REDACTED" or not is_missing(recon):
            return Drop("redacted", f"prompt is redacted (reconstruction_id_if_redacted={recon!r})")
        response = text(fields, "response", required=False)
        if isinstance(response, Drop):
            return response
        request = map_label(fields.get("prompt_label"), SAFE_UNSAFE, "prompt_label")
        if isinstance(request, Drop):
            return request
        response_label = refusal = None
        if response is not None:
            value = fields.get("response_label")
            response_label = None if is_missing(value) else map_label(value, SAFE_UNSAFE, "response_label")
            if isinstance(response_label, Drop):
                return response_label
            if self.options.infer_refusal and fields.get("response_label_source") == "refusal_data_augmentation":
                refusal = "refusal"
        meta = {k: fields[k] for k in ("prompt_label_source", "response_label_source") if not is_missing(fields.get(k))}
        return [Draft(
            source_id=self.source_id(fields, index, "id"), prompt=prompt, response=response, request_label=request,
            response_label=response_label, refusal_label=refusal,
            raw_categories=split_categories(fields.get("violated_categories")), meta=meta,
        )]


# ---------------------------------------------------------------------------------- BeaverTails


@register
class BeaverTails(Source):
    """PKU-Alignment/BeaverTails (``round0/30k/train.jsonl.gz`` etc.).

    Response = unharmful if ``is_safe`` else harmful; the request and refusal labels are null (the
    teacher decides, as GuardReasoner did). Raw categories = the keys of ``category`` whose value is
    true, verbatim (the keys contain commas, e.g. ``controversial_topics,politics``).
    """

    adapter = "beavertails"
    required_columns = ("prompt", "response", "category", "is_safe")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        prompt = text(fields, "prompt")
        if isinstance(prompt, Drop):
            return prompt
        response = text(fields, "response")
        if isinstance(response, Drop):
            return response
        safe = flag(fields.get("is_safe"), "is_safe")
        if isinstance(safe, Drop):
            return safe
        category = fields.get("category")
        if category is None:
            cats: list[str] = []
        elif isinstance(category, dict):
            cats = [k for k, v in category.items() if v is True or v == 1]
        else:
            return Drop("invalid_field:category", f"category is a {type(category).__name__}, not a dict")
        return [Draft(
            source_id=self.source_id(fields, index), prompt=prompt, response=response,
            response_label=UNHARMFUL if safe else HARMFUL, raw_categories=cats,
        )]


# ------------------------------------------------------------------------------------ ToxicChat


@register
class ToxicChat(Source):
    """lmsys/toxic-chat (``toxicchat0124``): human-annotated rows only.

    Rows with ``human_annotation`` false are dropped (``not_human_annotated``). Request = harmful iff
    ``toxicity``; ``model_output`` is ignored (no response), as GuardReasoner did. ``jailbreaking`` -> meta.
    """

    adapter = "toxicchat"
    required_columns = ("conv_id", "user_input", "human_annotation", "toxicity", "jailbreaking")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        human = flag(fields.get("human_annotation"), "human_annotation")
        if isinstance(human, Drop):
            return human
        if not human:
            return Drop("not_human_annotated", "human_annotation is false")
        prompt = text(fields, "user_input")
        if isinstance(prompt, Drop):
            return prompt
        toxic = flag(fields.get("toxicity"), "toxicity")
        if isinstance(toxic, Drop):
            return toxic
        jb = flag(fields.get("jailbreaking"), "jailbreaking")
        meta = {"jailbreaking": fields.get("jailbreaking") if isinstance(jb, Drop) else jb}
        return [Draft(
            source_id=self.source_id(fields, index, "conv_id"), prompt=prompt,
            request_label=HARMFUL if toxic else UNHARMFUL, meta=meta,
        )]
