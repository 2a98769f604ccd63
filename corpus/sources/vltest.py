"""Released GuardReasoner-VL JSON files: eval sets (``vltest``) and LLaMA-Factory train files (``guardreasoner_vl``).

``vltest``: yueliu1999/GuardReasoner-VLTest ``HarmImageTest.json`` and ``SPA_VL_Eval.json``. Each row has
``messages`` = [user: the guard instruction + ``"\\n\\nHuman user:\\n..."``, assistant: the gold labels
(``Request: ...`` / ``Response: ...``)] and usually ``images`` (a list of paths such as
``./SPA_VL_Eval/12.jpg``). The images themselves sit in the dataset's imagefolder in row order
(class ``label`` 0 = HarmImageTest, 1 = SPA-VL-Eval), so option ``image_ref`` chooses between the listed
path (``listed``) and a row-index pattern (``row_index`` with ``index_pattern``, e.g.
``SPA_VL_Eval/{index:04d}.jpg``); both resolve in ``images_root``. For decontamination the prompt text
and the images are what matter.

``guardreasoner_vl``: ``GuardReasoner-VLTrain{Text,Image,TextImage}.json`` in LLaMA-Factory ShareGPT form,
``messages`` = [system, user (with ``<image>`` placeholders), assistant (``<think>…</think><result>…</result>``)]
plus ``images``. Role/content keys ``role``/``content`` or ``from``/``value`` are both read.

The user text is split as the guard input is built (corpus.guard_format): after ``Human user:\\n``,
``<image>`` placeholders removed, up to ``\\n\\nAI assistant:\\n``; the rest is the response (``None``
-> null). Labels are read with ``corpus.guard_format.parse_answers`` (from a ``<result>``/``Answers:`` block,
or from bare ``Request:``/``Response:`` lines).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from corpus.sources.base import Draft, Drop, ImageInput, Source, register

HUMAN = "Human user:\n"
ASSISTANT = "\n\nAI assistant:\n"
_USER_ROLES, _ASSISTANT_ROLES = {"user", "human"}, {"assistant", "gpt"}
_INDEX = re.compile(r"\{index(?::0(\d+)d)?\}")
_REQUEST_KEY = re.compile(r"(?im)^[\s*#]*request\s*\**\s*:")


def split_guard_input(text: str) -> tuple[str | None, str | None, int] | None:
    """(prompt, response, number of <image> placeholders) of a guard user text; None if it is not one."""
    start = text.find(HUMAN)
    if start < 0:
        return None
    body = text[start + len(HUMAN):]
    cut = body.find(ASSISTANT)
    if cut < 0:
        return None
    prompt, response = body[:cut], body[cut + len(ASSISTANT):]
    n_images = prompt.count("<image>")
    prompt = re.sub(r"<image>\n?", "", prompt)
    response = response[:-1] if response.endswith("\n") else response
    prompt_out = prompt if prompt.strip() else None
    response_out = None if response.strip() in ("", "None") else response
    return prompt_out, response_out, n_images


def index_ref(pattern: str, index: int) -> str:
    """Fill ``{index}`` / ``{index:0Nd}`` in a recipe pattern (no str.format: the pattern is all we fill)."""
    return _INDEX.sub(lambda m: str(index).zfill(int(m.group(1))) if m.group(1) else str(index), pattern)


def _role(msg: dict[str, Any]) -> str:
    return str(msg.get("role", msg.get("from", ""))).lower()


def _content(msg: dict[str, Any]) -> str:
    value = msg.get("content", msg.get("value"))
    return value if isinstance(value, str) else ""


class VLTestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_ref: Literal["listed", "row_index"] = "listed"
    index_pattern: str | None = None

    @model_validator(mode="after")
    def _pattern(self) -> VLTestOptions:
        if self.image_ref == "row_index" and not self.index_pattern:
            raise ValueError("image_ref: row_index needs index_pattern (e.g. 'SPA_VL_Eval/{index:04d}.jpg')")
        return self


@register
class GuardReasonerVL(Source):
    adapter = "guardreasoner_vl"
    Options = VLTestOptions
    required_columns = ("messages",)

    def _images(self, fields: dict[str, Any], index: int) -> list[ImageInput]:
        if self.options.image_ref == "row_index" and self.options.index_pattern:
            return [ImageInput(ref=index_ref(self.options.index_pattern, index))]
        listed = fields.get("images") or []
        if isinstance(listed, str):
            listed = [listed]
        refs = [p[2:] if isinstance(p, str) and p.startswith("./") else p for p in listed]
        return [ImageInput(ref=r) for r in refs if isinstance(r, str) and r]

    def convert(self, fields: dict[str, Any], index: int) -> list[Draft] | Drop:
        from corpus.guard_format import parse_answers

        messages = fields.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return Drop("bad_record", "messages is not a list of role/content objects")
        users = [m for m in messages if _role(m) in _USER_ROLES]
        answers = [m for m in messages if _role(m) in _ASSISTANT_ROLES]
        if not users or not answers:
            return Drop("bad_record", "messages lack a user or an assistant turn")
        parts = split_guard_input(_content(users[0]))
        if parts is None:
            return Drop("bad_record", "user turn has no 'Human user:' ... 'AI assistant:' input")
        prompt, response, n_placeholders = parts
        images = self._images(fields, index)
        if prompt is None and not images:
            return Drop("empty_prompt", "no prompt text and no image")
        target = _content(answers[-1])
        parsed = parse_answers(target)
        if not parsed.found:  # gold labels written bare ("Request: harmful\nResponse: None"), without a block
            parsed = parse_answers("Answers:\n" + target)
        if not parsed.found:
            return Drop("malformed_input", f"the assistant turn ({len(target)} characters) holds no Request/Response "
                                           "labels: cut before its result block?")
        if parsed.request is None:
            if _REQUEST_KEY.search(target):
                return Drop("unknown_label:request", f"unreadable Request: label in {target[-200:]!r}")
            return Drop("missing_label:request", "the result block has no Request: label")
        meta: dict[str, Any] = {"image_placeholders": n_placeholders}
        if self.adapter == "guardreasoner_vl":
            meta["target"] = target
        return [Draft(source_id=self.source_id(fields, index, "id"), prompt=prompt, response=response,
                      images=images, request_label=parsed.request,
                      response_label=parsed.response if response is not None else None, meta=meta)]


@register
class VLTest(GuardReasonerVL):
    adapter = "vltest"
