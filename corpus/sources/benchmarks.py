"""Eval-set adapters in their original layouts (used for decontamination and evaluation).

- ``openai_moderation``: openai/moderation-api-release ``samples-1680.jsonl.gz``.
- ``xstest``: paul-rottger/exaggerated-safety ``xstest_prompts.csv``.
- ``harmbench``: HarmBench ``harmbench_behaviors_text_test.csv``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from corpus.sources.base import HARMFUL, UNHARMFUL, Draft, Drop, Source, map_label, register
from corpus.sources.text import SAFE_UNSAFE, Strict, is_missing, one_category, text

MODERATION_FLAGS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


@register
class OpenAIModeration(Source):
    """Harmful iff any of S, H, V, HR, SH, S3, H2, V2 is 1 (a flag absent means unknown, not 1).

    The flags set to 1 are the raw categories; all present flags go to meta.
    """

    adapter = "openai_moderation"
    required_columns = ("prompt",)

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        prompt = text(fields, "prompt")
        if isinstance(prompt, Drop):
            return prompt
        flags: dict[str, int] = {}
        for name in MODERATION_FLAGS:
            value = fields.get(name)
            if is_missing(value):
                continue
            if isinstance(value, bool) or value not in (0, 1):
                return Drop(f"unknown_label:{name}", f"{name}={value!r} is not 0 or 1")
            flags[name] = int(value)
        on = [k for k, v in flags.items() if v == 1]
        return [Draft(
            source_id=self.source_id(fields, index), prompt=prompt, request_label=HARMFUL if on else UNHARMFUL,
            raw_categories=on, meta={"flags": flags},
        )]


@register
class XSTest(Source):
    """XSTest prompts: label safe -> unharmful, unsafe -> harmful; ``type`` is the raw category."""

    adapter = "xstest"
    required_columns = ("id", "prompt", "type", "label")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        prompt = text(fields, "prompt")
        if isinstance(prompt, Drop):
            return prompt
        label = map_label(fields.get("label"), SAFE_UNSAFE, "label")
        if isinstance(label, Drop):
            return label
        meta = {k: fields[k] for k in ("focus", "note") if not is_missing(fields.get(k))}
        return [Draft(
            source_id=self.source_id(fields, index, "id"), prompt=prompt, request_label=label,
            raw_categories=one_category(fields.get("type")), meta=meta,
        )]


class HarmBenchOptions(Strict):
    #: FunctionalCategory values kept. The default (standard 159 + copyright 80 = 239 rows) is what
    #: GuardReasoner's HarmBenchPrompt holds, checked against its released 0_3_harmbench_prompt.json.
    functional_categories: list[str] = Field(default_factory=lambda: ["standard", "copyright"])


@register
class HarmBench(Source):
    """HarmBench text behaviours: all harmful; SemanticCategory is the raw category.

    Contextual rows become ``ContextString + "\\n\\n" + Behavior``. Rows of a FunctionalCategory not
    in ``functional_categories`` are dropped (``excluded:functional_category``).
    """

    adapter = "harmbench"
    Options = HarmBenchOptions
    required_columns = ("Behavior", "FunctionalCategory", "SemanticCategory", "ContextString", "BehaviorID")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        functional = fields.get("FunctionalCategory")
        if functional not in self.options.functional_categories:
            return Drop("excluded:functional_category",
                        f"FunctionalCategory={functional!r} not in {self.options.functional_categories}")
        behavior = text(fields, "Behavior")
        if isinstance(behavior, Drop):
            return behavior
        context = fields.get("ContextString")
        prompt = behavior
        if functional == "contextual":
            if is_missing(context):
                return Drop("missing_field:ContextString", "a contextual behaviour without ContextString")
            prompt = f"{context}\n\n{behavior}"
        meta = {"functional_category": functional}
        if not is_missing(fields.get("Tags")):
            meta["tags"] = fields["Tags"]
        return [Draft(
            source_id=self.source_id(fields, index, "BehaviorID"), prompt=prompt, request_label=HARMFUL,
            raw_categories=one_category(fields.get("SemanticCategory")), meta=meta,
        )]
