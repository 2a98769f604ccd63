"""GuardReasoner's own ``{instruction, input, output}`` records: GuardReasonerTrain and its benchmark files.

``input`` is exactly ``"Human user:\\n{prompt}\\n\\nAI assistant:\\n{response or None}\\n\\n"``; the split
is at the *last* ``"\\n\\nAI assistant:\\n"`` (prompts, e.g. multi-turn transcripts, may hold the marker;
three of the four train sets have the response ``None``). Labels come from ``output``:

- an ``Answers:`` block (GuardReasonerTrain, SafeRLHF/BeaverTails benchmarks) is read with
  :func:`corpus.guard_format.parse_answers` (``Request``/``Response``/``Completion``; ``None`` -> null);
- a bare label (the other benchmark files) is assigned by the ``task`` option (request, response or
  refusal); ``refusal``/``compliance`` need no option. A bare ``harmful``/``unharmful`` without ``task``
  is a recipe error (SourceError).

An output with reasoning before its answers block is kept verbatim in ``meta["reasoning_output"]``; an
output that is text but holds no answers block (cut before its answers) is dropped as ``malformed_input``
(its reasoning is never read as a label).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from corpus.sources.base import Draft, Drop, Source, SourceError, register
from corpus.sources.text import HARM_LABELS, REFUSAL_LABELS, Strict, text

HEAD = "Human user:\n"
SEP = "\n\nAI assistant:\n"
TAIL = "\n\n"
_ANSWER_KEYS = re.compile(r"(?im)^\s*(answers\s*:|request\s*:|response\s*:|completion\s*:)")


class GuardReasonerOptions(Strict):
    #: which label a bare-label ``output`` is (benchmark files); not needed for Answers blocks
    task: Literal["request", "response", "refusal"] | None = None


def parse_input(value: str) -> tuple[str, str | None] | None:
    """``(prompt, response)`` of a GuardReasoner input (response ``"None"`` -> None), or None if malformed."""
    if not value.startswith(HEAD) or not value.endswith(TAIL):
        return None
    body = value[len(HEAD):-len(TAIL)]
    cut = body.rfind(SEP)
    if cut < 0:
        return None
    prompt, response = body[:cut], body[cut + len(SEP):]
    return prompt, (None if response == "None" else response)


@register
class GuardReasoner(Source):
    """GuardReasonerTrain / GuardReasoner benchmark records (see the module docstring)."""

    adapter = "guardreasoner"
    Options = GuardReasonerOptions
    required_columns = ("input", "output")

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        raw_input = text(fields, "input")
        if isinstance(raw_input, Drop):
            return raw_input
        output = text(fields, "output")
        if isinstance(output, Drop):
            return output
        parsed = parse_input(raw_input)
        if parsed is None:
            return Drop("invalid_field:input", "input is not 'Human user:\\n…\\n\\nAI assistant:\\n…\\n\\n'")
        prompt, response = parsed
        if not prompt.strip():
            return Drop("missing_field:prompt", "the prompt inside input is empty")
        meta: dict[str, Any] = {}
        if _ANSWER_KEYS.search(output):
            from corpus.guard_format import parse_answers  # lazy: the guard format module is optional here

            answers = parse_answers(output)
            request, response_label, refusal = answers.request, answers.response, answers.refusal
            if not answers.found:
                return Drop("malformed_input", f"output ({len(output)} characters) has an answers marker but no "
                                               "Request/Response/Completion line after it: cut before its answers?")
            if request is None and response_label is None and refusal is None:
                return Drop("unknown_label:output", f"no readable label in the answers block: {output[-120:]!r}")
            head = output[: output.lower().rfind("answers")].strip().strip("-").strip()
            if head:
                meta["reasoning_output"] = output
        elif len(output.split()) > 1:  # text, not a bare label: reasoning whose answers block is missing
            return Drop("malformed_input", f"output ({len(output)} characters) is neither a bare label nor holds an "
                                           "'Answers:' block with Request/Response labels: cut before its answers?")
        else:
            labels = self._bare(output.strip(), response)
            if isinstance(labels, Drop):
                return labels
            request, response_label, refusal = labels
        if response is None:
            response_label = refusal = None
        return [Draft(
            source_id=self.source_id(fields, index, "id"), prompt=prompt, response=response, request_label=request,
            response_label=response_label, refusal_label=refusal, meta=meta,
        )]

    def _bare(self, label: str, response: str | None) -> tuple[str | None, str | None, str | None] | Drop:
        key = label.lower()
        task = self.options.task
        if task is None and key in REFUSAL_LABELS:
            task = "refusal"
        if task is None and key in HARM_LABELS:
            raise SourceError(
                f"source {self.spec.name!r}: output is the bare label {label!r}; set options.task "
                "(request, response or refusal) to say which label it is"
            )
        mapping = REFUSAL_LABELS if task == "refusal" else HARM_LABELS
        if key not in mapping:
            return Drop("unknown_label:output", f"output={label[:80]!r} is not one of {list(mapping)} (task {task})")
        if task != "request" and response is None:
            return Drop("missing_field:response", f"a {task} label without a response in input")
        value = mapping[key]
        if task == "request":
            return value, None, None
        return (None, value, None) if task == "response" else (None, None, value)
