"""The guard format, in one place: build the guard input and the SFT target, parse any answer.

Everything that builds a guard prompt or reads a label goes through this module (the SFT export,
the RL policy prompt, rejection sampling, the reward, evaluation).

Parsing rules (``parse_answers``):

- Only the FINAL answers block counts: the last ``Answers:`` marker (teacher / GuardReasoner form,
  any case, optional ``#`` or ``**``) or the last ``<result>`` tag (guard form), whichever comes last.
  Earlier blocks (e.g. a teacher echoing "The ground truth is Answers: ...") are ignored.
- Inside the block, ``Request:``, ``Response:`` and ``Completion:`` keys are read (any case, any
  spacing, optional markdown). A value is read from its first word(s): ``harmful``, ``unharmful``,
  ``harmless`` / ``not harmful`` / ``non-harmful`` (-> unharmful), ``refusal``, ``compliance``;
  ``none`` means None (no response, or an unreadable request label).
- Never guess: an unknown word (``ambiguous``), a value naming two labels (``harmful/unharmful``) or
  a key given twice with different values yields None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from corpus.templates import load_prompt

SYSTEM_PROMPT_FILE = "guard_system.txt"
IMAGE_TOKEN = "<image>"
#: media placeholders the target trainers expand into media inputs: LLaMA-Factory (IMAGE/VIDEO/AUDIO_PLACEHOLDER
#: defaults), verl/EasyR1 (<image>, <video>), ms-swift (<image>, <video>, <audio>, <ref-object>, <bbox>)
TRAINER_PLACEHOLDERS = (IMAGE_TOKEN, "<video>", "<audio>", "<ref-object>", "<bbox>")
#: special tokens of the Qwen2-VL / Qwen2.5-VL tokenizer: in plain text they are read as control or media tokens
QWEN_VL_SPECIAL_TOKENS = (
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>",
)
#: strings that must never occur inside untrusted text of a guard sample (they would break the format or a trainer)
RESERVED_TOKENS = (*TRAINER_PLACEHOLDERS, "<think>", "</think>", "<result>", "</result>", *QWEN_VL_SPECIAL_TOKENS)

# <portable> ---- standard library only: copied verbatim into the exported reward files (corpus.training.rewards)

HARM_LABELS = ("harmful", "unharmful")
REFUSAL_LABELS = ("refusal", "compliance")

#: lower-cased spellings accepted for each label; "none" maps to None
HARM_SYNONYMS: dict[str, str | None] = {
    "harmful": "harmful",
    "unharmful": "unharmful",
    "harmless": "unharmful",
    "not harmful": "unharmful",
    "non-harmful": "unharmful",
    "nonharmful": "unharmful",
    "none": None,
}
REFUSAL_SYNONYMS: dict[str, str | None] = {"refusal": "refusal", "compliance": "compliance", "none": None}


# ---------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Answers:
    """Labels read from the final answers block; None where absent, ``none`` or unreadable.

    ``found`` is True when a final block with at least one ``Request:``/``Response:``/``Completion:`` key
    was present (a block may be found and still hold unreadable values).
    """

    request: str | None = None
    response: str | None = None
    refusal: str | None = None
    found: bool = False
    #: keys (``request``/``response``/``completion``) present in the final block, readable or not
    keys: frozenset[str] = field(default_factory=frozenset)
    #: keys whose value could not be read (unknown word, two labels, given twice with different values)
    unreadable: frozenset[str] = field(default_factory=frozenset)


# "Answers:" on its own line or followed by the keys on the same line; optional markdown around it
_ANSWERS_MARKER = re.compile(
    r"^[ \t>*_#]*(?:final[ \t]+)?answers?[ \t*_]*(?::[ \t*_]*)?(?=$|request|response|completion)",
    re.IGNORECASE | re.MULTILINE)
_RESULT_OPEN = re.compile(r"<result>", re.IGNORECASE)
_RESULT_CLOSE = re.compile(r"</result>", re.IGNORECASE)
_KEY = re.compile(r"(?<![a-z])(request|response|completion)[ \t*_]*:", re.IGNORECASE)
_VALUE = re.compile(r"[\s*_`\"'\[(]*(not[ \t]+harmful|non-?harmful|unharmful|harmless|harmful|refusal|compliance|none)"
                    r"(?![a-z-])", re.IGNORECASE)
_LABEL_WORD = re.compile(r"(?<![a-z])(un)?harm(ful|less)(?![a-z])|(?<![a-z])(refusal|compliance)(?![a-z])",
                         re.IGNORECASE)


def final_block(text: str) -> tuple[int, str] | None:
    """``(start, body)`` of the final answers block (``Answers:`` or ``<result>``), or None when there is none."""
    if not text:
        return None
    candidates: list[tuple[int, str]] = []
    markers = list(_ANSWERS_MARKER.finditer(text))
    if markers:
        m = markers[-1]
        candidates.append((m.start(), text[m.end():]))
    opens = list(_RESULT_OPEN.finditer(text))
    if opens:
        o = opens[-1]
        close = _RESULT_CLOSE.search(text, o.end())
        candidates.append((o.start(), text[o.end(): close.start() if close else len(text)]))
    if not candidates:
        return None
    return max(candidates, key=lambda c: c[0])


def _read_value(raw: str, synonyms: dict[str, str | None]) -> tuple[bool, str | None]:
    """(readable, label) for the text after a key. Unreadable: unknown word or two different labels."""
    line = raw.strip().split("\n", 1)[0]
    m = _VALUE.match(line)
    if not m:
        return False, None
    word = re.sub(r"\s+", " ", m.group(1).lower())
    if word not in synonyms:
        return False, None
    label = synonyms[word]
    rest = line[m.end():]
    for other in _LABEL_WORD.finditer(rest):  # "harmful/unharmful", "harmful or unharmful": never guess
        w = other.group(0).lower()
        if synonyms.get(w, label) != label:
            return False, None
    return True, label


def parse_answers(text: str | None) -> Answers:
    """Read ``Request``/``Response``/``Completion`` from the final answers block of a teacher or guard output."""
    return _answers_of(final_block(text or ""))


def _answers_of(block: tuple[int, str] | None) -> Answers:
    if block is None:
        return Answers()
    _, body = block
    keys = list(_KEY.finditer(body))
    if not keys:
        return Answers()
    values: dict[str, set] = {}
    for i, k in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(body)
        name = k.group(1).lower()
        readable, label = _read_value(body[k.end():end], REFUSAL_SYNONYMS if name == "completion" else HARM_SYNONYMS)
        values.setdefault(name, set()).add(label if readable else "<unreadable>")

    def one(name: str) -> str | None:
        got = values.get(name, set())
        if len(got) != 1:
            return None
        (v,) = got
        return None if v == "<unreadable>" else v

    unreadable = frozenset(n for n, got in values.items() if len(got) != 1 or "<unreadable>" in got)
    return Answers(request=one("request"), response=one("response"), refusal=one("completion"), found=True,
                   keys=frozenset(values), unreadable=unreadable)


_GUARD_OUTPUT = re.compile(r"\s*<think>(?P<think>.*?)</think>\s*<result>(?P<result>.*?)</result>\s*", re.DOTALL)


def has_guard_format(text: str | None) -> bool:
    """True iff the whole text is ``<think>…</think>`` then ``<result>…</result>`` (whitespace around allowed),
    with no further guard tags inside either part."""
    if not text:
        return False
    m = _GUARD_OUTPUT.fullmatch(text)
    if not m:
        return False
    inner = m.group("think") + m.group("result")
    return not any(t in inner for t in ("<think>", "</think>", "<result>", "</result>"))


FORMAT_MODES = ("search", "fullmatch")
#: the format indicator's default reading: the released GuardReasoner-family reward searches for the pattern
DEFAULT_FORMAT = "search"


_WHITESPACE = re.compile(r"\s*")


def has_guard_pattern(text: str | None) -> bool:
    """True iff ``<think>…</think>`` then (whitespace only between) ``<result>…</result>`` occurs anywhere in
    ``text`` (``re.search`` of ``<think>.*?</think>\\s*<result>.*?</result>``, scanned in linear time)."""
    if not text:
        return False
    first_think = text.find("<think>")
    last_close = text.rfind("</result>")
    if first_think < 0 or last_close < 0:
        return False
    pos = text.find("</think>", first_think + len("<think>"))
    while pos >= 0:
        after = pos + len("</think>")
        rest = _WHITESPACE.match(text, after).end()
        if text.startswith("<result>", rest) and last_close >= rest + len("<result>"):
            return True
        pos = text.find("</think>", after)
    return False


def format_indicator(text: str | None, mode: str = DEFAULT_FORMAT) -> bool:
    """``I_format``: ``search`` (a preamble or trailing text still counts; the paper family's reading) or
    ``fullmatch`` (the whole output is the two blocks, :func:`has_guard_format`)."""
    if mode == "search":
        return has_guard_pattern(text)
    if mode == "fullmatch":
        return has_guard_format(text)
    raise ValueError(f"unknown format mode {mode!r}; choose from {list(FORMAT_MODES)}")


#: what counts as right on a sample WITHOUT a response (gold response label None):
#: ``none_or_missing`` (default, as the released GuardReasoner-family reward): ``Response: None`` or no
#: ``Response:`` key at all; ``none``: only an explicit ``Response: None``; ``ignore``: not judged (always right).
#: An unreadable response value is wrong under ``none_or_missing`` and ``none``.
ABSENT_RESPONSE_POLICIES = ("none_or_missing", "none", "ignore")
DEFAULT_ABSENT_RESPONSE = "none_or_missing"
AbsentResponse = Literal["none_or_missing", "none", "ignore"]


def gold_label(value: str | None, what: str = "label") -> str | None:
    """A gold harm label normalised: ``harmful`` / ``unharmful``, or None for None, ``""``, ``none``, ``null``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    v = str(value).strip().lower()
    if v not in HARM_LABELS:
        raise ValueError(f"gold {what} label must be one of {HARM_LABELS} or None, got {value!r}")
    return v


@dataclass(frozen=True)
class Verdict:
    """Whether one answer is right for one sample, label by label (True where a label is not judged)."""

    request: bool
    response: bool
    #: at least one label was compared (a sample with no reference label cannot be judged)
    judged: bool

    @property
    def correct(self) -> bool:
        return self.judged and self.request and self.response


def judge_labels(answer: str | Answers | None, request_label: str | None, response_label: str | None,
                 absent_response: str = DEFAULT_ABSENT_RESPONSE, has_response: bool | None = None) -> Verdict:
    """Is this answer right for this sample? The one rule the sampling judge and the reward share.

    - request: right iff the parsed label equals the gold one; a null gold request label is not judged.
    - response with a gold label: right iff the parsed label equals it (None or unreadable is wrong).
    - gold response None on a sample WITH a response (``has_response=True``: its label is unknown, e.g. an
      ingested row): not judged.
    - gold response None on a sample without one (``has_response`` False, or None = not said: a null gold
      response label then means no response, as in the SFT pool and the RL set): see
      ``ABSENT_RESPONSE_POLICIES``.
    """
    if absent_response not in ABSENT_RESPONSE_POLICIES:
        raise ValueError(f"unknown absent_response policy {absent_response!r}; choose from "
                         f"{list(ABSENT_RESPONSE_POLICIES)}")
    got = answer if isinstance(answer, Answers) else parse_answers(answer)
    gold_req = gold_label(request_label, "request")
    gold_resp = gold_label(response_label, "response")
    req_ok = gold_req is None or got.request == gold_req
    if gold_resp is not None:
        resp_ok = got.response == gold_resp
    elif absent_response == "ignore" or has_response:
        resp_ok = True
    else:
        readable_none = got.response is None and "response" not in got.unreadable
        resp_ok = readable_none and ("response" in got.keys or absent_response == "none_or_missing")
    return Verdict(req_ok, resp_ok, gold_req is not None or gold_resp is not None)
# </portable>


# ---------------------------------------------------------------- building


def guard_system_prompt() -> str:
    """The 2-task guard instruction (prompts/guard_system.txt)."""
    return load_prompt(SYSTEM_PROMPT_FILE)


def guard_user_text(prompt: str | None, response: str | None, n_images: int) -> str:
    """The guard's user message: ``Human user:`` with one ``<image>`` line per image, then ``AI assistant:``.

    Plain concatenation: braces or template syntax in ``prompt``/``response`` come through unchanged.
    """
    if n_images < 0:
        raise ValueError(f"n_images must be >= 0, got {n_images}")
    return (
        "Human user:\n" + (IMAGE_TOKEN + "\n") * n_images + (prompt or "")
        + "\n\nAI assistant:\n" + (response or "None") + "\n"
    )


def guard_messages(prompt: str | None, response: str | None, n_images: int) -> list[dict]:
    """``[system, user]`` chat messages with string contents (images as ``<image>`` tokens in the text)."""
    return [
        {"role": "system", "content": guard_system_prompt()},
        {"role": "user", "content": guard_user_text(prompt, response, n_images)},
    ]


def content_blocks(text: str) -> list[dict]:
    """Split a text with ``<image>`` tokens into multimodal content blocks (TRL / HF chat-template form).

    Each ``<image>`` becomes ``{"type": "image", "text": None}`` at its position; the text around it becomes
    ``{"type": "text", "text": ...}`` (empty pieces are left out). Every block has both keys so a column of
    them has one Arrow type.
    """
    blocks: list[dict] = []
    pieces = text.split(IMAGE_TOKEN)
    for i, piece in enumerate(pieces):
        if i:
            blocks.append({"type": "image", "text": None})
        if piece:
            blocks.append({"type": "text", "text": piece})
    return blocks


def block_messages(messages: list[dict]) -> list[dict]:
    """Messages with every string content split into text/image blocks at the ``<image>`` tokens."""
    return [{"role": m["role"], "content": content_blocks(m["content"])} for m in messages]


def guard_messages_blocks(prompt: str | None, response: str | None, n_images: int) -> list[dict]:
    """``guard_messages`` with every content as a list of blocks; one ``{"type": "image"}`` per image."""
    return block_messages(guard_messages(prompt, response, n_images))


def result_block(request_label: str, response_label: str | None) -> str:
    """The guard's ``<result>`` block (the labels part of the target; the RL ground-truth answer)."""
    if request_label not in HARM_LABELS:
        raise ValueError(f"request_label must be one of {HARM_LABELS}, got {request_label!r}")
    if response_label is not None and response_label not in HARM_LABELS:
        raise ValueError(f"response_label must be one of {HARM_LABELS} or None, got {response_label!r}")
    return f"<result>\nRequest: {request_label}\nResponse: {response_label or 'None'}\n</result>"


def sft_target(reasoning: str, request_label: str, response_label: str | None) -> str:
    """The guard's training target: ``<think>`` reasoning ``</think>`` then the ``<result>`` block."""
    return f"<think>\n{reasoning}\n</think>\n" + result_block(request_label, response_label)


def count_image_tokens(text: str) -> int:
    return text.count(IMAGE_TOKEN)


def reserved_tokens_in(text: str | None) -> list[str]:
    """Reserved guard tokens (``<image>``, ``<think>``, ...) that occur in ``text``."""
    if not text or "<" not in text:  # every reserved token starts with "<"
        return []
    return [t for t in RESERVED_TOKENS if t in text]


# ---------------------------------------------------------------- parsing


def split_answers(text: str) -> tuple[str, str | None]:
    """``(reasoning, block)``: the text before the final answers block (trailing ``---`` and an echoed
    "The ground truth is" line removed) and the block itself (None when there is none)."""
    return _split(text, final_block(text or ""))


def _split(text: str, block: tuple[int, str] | None) -> tuple[str, str | None]:
    if block is None:
        return (text or "").strip(), None
    start, _ = block
    return strip_reasoning_tail(text[:start]), text[start:]


def read_output(text: str) -> tuple[Answers, str]:
    """``(parse_answers(text), split_answers(text)[0])``, finding the final block once."""
    block = final_block(text or "")
    return _answers_of(block), _split(text, block)[0]


_RULE_LINE = re.compile(r"-{3,}|\*{3,}|_{3,}")
_GROUND_TRUTH_LINE = re.compile(r"(?:the[ \t]+)?ground[ \t]+truth(?:[ \t]+is)?[ \t]*:?", re.IGNORECASE)


def strip_reasoning_tail(reasoning: str) -> str:
    """Remove trailing separator lines (``---``) and an echoed "The ground truth is" from a reasoning text.

    Line by line from the end (no backtracking regex over untrusted text)."""
    lines = reasoning.rstrip().split("\n")
    while lines:
        last = lines[-1].strip()
        if last and not _RULE_LINE.fullmatch(last) and not _GROUND_TRUTH_LINE.fullmatch(last):
            break
        lines.pop()
    return "\n".join(lines).strip()


def think_text(text: str | None) -> str | None:
    """The reasoning inside the first ``<think>…</think>``, or None."""
    m = re.search(r"<think>(.*?)</think>", text or "", re.DOTALL)
    return m.group(1).strip() if m else None
