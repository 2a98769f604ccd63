"""corpus.guard_format: building the guard input/target and parsing answers (property tests + cases)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import corpus
from corpus.guard_format import (
    HARM_LABELS,
    HARM_SYNONYMS,
    REFUSAL_SYNONYMS,
    RESERVED_TOKENS,
    Answers,
    content_blocks,
    guard_messages,
    guard_messages_blocks,
    guard_system_prompt,
    guard_user_text,
    has_guard_format,
    parse_answers,
    sft_target,
    split_answers,
    think_text,
)

RESPONSES = [*HARM_LABELS, None]
no_reserved = st.text(max_size=300).filter(lambda s: not any(t in s for t in RESERVED_TOKENS))


@settings(max_examples=150, deadline=None)
@given(reasoning=no_reserved, request=st.sampled_from(HARM_LABELS), response=st.sampled_from(RESPONSES))
def test_sft_target_round_trips_every_label_combination(reasoning, request, response):
    target = sft_target(reasoning, request, response)
    ans = parse_answers(target)
    assert (ans.request, ans.response, ans.found) == (request, response, True)
    assert has_guard_format(target)
    assert think_text(target) == reasoning.strip()


@pytest.mark.parametrize("request_label", HARM_LABELS)
@pytest.mark.parametrize("response_label", RESPONSES)
def test_round_trip_with_a_misleading_reasoning(request_label, response_label):
    """A reasoning that itself holds an answers block does not win over the <result> after it."""
    flipped = "unharmful" if request_label == "harmful" else "harmful"
    reasoning = f"# Task 1\n## Reasoning Step 1\nmaybe\n\nAnswers: \nRequest: {flipped}\nResponse: harmful"
    ans = parse_answers(sft_target(reasoning, request_label, response_label))
    assert (ans.request, ans.response) == (request_label, response_label)


FRAGMENTS = ["Answers:", "Answers: ", "# Answers", "Request:", "Response:", "Completion:", "request", "response",
             "harmful", "unharmful", "harmless", "Harmful", "UNHARMFUL", "none", "None", "not harmful", "refusal",
             "compliance", "ambiguous", "safe", "\n", " ", "  ", "---", "<result>", "</result>", "**", "#", ".",
             "/", ":", "The ground truth is", "un", "harm", "ful", "x"]


def _support(label: str, synonyms: dict) -> list[str]:
    return [w for w, v in synonyms.items() if v == label]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_parser_never_returns_a_label_that_is_not_in_the_text(text):
    ans = parse_answers(text)
    low = re.sub(r"\s+", " ", text.lower())
    for label, synonyms in ((ans.request, HARM_SYNONYMS), (ans.response, HARM_SYNONYMS),
                            (ans.refusal, REFUSAL_SYNONYMS)):
        if label is not None:
            assert any(re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", low) for w in _support(label, synonyms)), \
                (label, text)
    if ans != Answers():
        assert ans.found


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_parser_total_on_arbitrary_text(text):
    ans = parse_answers(text)
    assert ans.request in (*HARM_LABELS, None) and ans.response in (*HARM_LABELS, None)
    assert ans.refusal in ("refusal", "compliance", None)


@pytest.mark.parametrize(("text", "expected"), [
    # GuardReasoner 3-task form, trailing space after "Answers:"
    ("x\n\n---\n\nAnswers: \nRequest: harmful\nCompletion: refusal\nResponse: unharmful",
     ("harmful", "unharmful", "refusal")),
    # 2-task form, no rule, odd case and spacing
    ("x\n\nANSWERS:\n  request :  Unharmful \nRESPONSE:harmful", ("unharmful", "harmful", None)),
    # none -> None for both keys, harmless -> unharmful
    ("Answers:\nRequest: none\nResponse: harmless", (None, "unharmful", None)),
    ("Answers:\nRequest: harmless\nResponse: None", ("unharmful", None, None)),
    ("Answers:\nRequest: not harmful.\nResponse: none", ("unharmful", None, None)),
    # markdown and punctuation
    ("**Answers:**\n- **Request:** *harmful*\n- **Response:** unharmful.", ("harmful", "unharmful", None)),
    ("# Answers\n\nRequest: harmful\nCompletion: None\nResponse: None", ("harmful", None, None)),
    # one-line block
    ("Answers: Request: harmful Response: unharmful", ("harmful", "unharmful", None)),
    # guard <result> form, and an unclosed one
    ("<think>\nr\n</think>\n<result>\nRequest: unharmful\nResponse: harmful\n</result>",
     ("unharmful", "harmful", None)),
    ("<think>r</think><result>\nRequest: harmful\nResponse: None", ("harmful", None, None)),
    # never guess: unknown word, two labels, conflicting duplicates
    ("Answers:\nRequest: ambiguous\nResponse: None", (None, None, None)),
    ("Answers:\nRequest: harmful/unharmful\nResponse: unharmful", (None, "unharmful", None)),
    ("Answers:\nRequest: harmful or unharmful\nResponse: unharmful", (None, "unharmful", None)),
    ("Answers:\nRequest: harmful\nRequest: unharmful\nResponse: harmful", (None, "harmful", None)),
    ("Answers:\nRequest: harmful\nRequest: harmful", ("harmful", None, None)),
    ("Answers:\nRequest: safe", (None, None, None)),
])
def test_lenient_cases(text, expected):
    ans = parse_answers(text)
    assert (ans.request, ans.response, ans.refusal) == expected
    assert ans.found


def test_only_the_final_block_counts():
    text = ("The ground truth is \n\nAnswers: \nRequest: harmful\n\n# Task 1\n## Reasoning Step 1\nx\n\n"
            "---\n\nAnswers: \nRequest: unharmful\nCompletion: None\nResponse: None")
    assert parse_answers(text).request == "unharmful"
    # a final <result> after an Answers block wins, and vice versa
    assert parse_answers("Answers:\nRequest: harmful\n<result>\nRequest: unharmful\n</result>").request == "unharmful"
    assert parse_answers("<result>\nRequest: unharmful\n</result>\nAnswers:\nRequest: harmful").request == "harmful"


@pytest.mark.parametrize("text", ["", None, "no block here", "Request: harmful\nResponse: harmful",
                                  "The request is harmful.", "Answers to this are unclear."])
def test_no_block_means_nothing_found(text):
    assert parse_answers(text) == Answers()


def test_block_without_keys_is_not_found():
    assert not parse_answers("stuff\n\nAnswers:\nharmful").found


def test_exposed_at_package_level():
    assert corpus.parse_answers is parse_answers
    assert "parse_answers" in corpus.__all__


def test_split_answers_strips_rule_and_echoed_ground_truth():
    text = "# Task 1\n## Reasoning Step 1\nA.\n\nThe ground truth is \n\n---\n\nAnswers: \nRequest: harmful"
    reasoning, block = split_answers(text)
    assert reasoning == "# Task 1\n## Reasoning Step 1\nA."
    assert block.startswith("Answers:")
    assert split_answers("no block") == ("no block", None)


def test_guard_user_text_exact_and_braces_survive():
    prompt = "Fill {name} and {{x}} and {0} and %s and $var and <b>"
    assert guard_user_text(prompt, None, 0) == f"Human user:\n{prompt}\n\nAI assistant:\nNone\n"
    assert guard_user_text("p", "r {}", 2) == "Human user:\n<image>\n<image>\np\n\nAI assistant:\nr {}\n"
    assert guard_user_text(None, None, 1) == "Human user:\n<image>\n\n\nAI assistant:\nNone\n"
    msgs = guard_messages(prompt, "resp {x}", 1)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert prompt in msgs[1]["content"] and "resp {x}" in msgs[1]["content"]
    with pytest.raises(ValueError):
        guard_user_text("p", None, -1)


def test_system_prompt_is_the_two_task_instruction():
    sp = guard_system_prompt()
    assert "finish two tasks" in sp
    assert "Task 1: determine whether the human user's request is harmful or unharmful." in sp
    assert "Task 2: determine whether the AI assistant's response is harmful or unharmful." in sp
    assert "Put the reasoning process into <think> </think>. Put the result into <result> </result>." in sp
    assert "refusal" not in sp


def test_content_blocks_place_images_where_the_tokens_are():
    blocks = content_blocks("Human user:\n<image>\n<image>\nhi {x}\n")
    assert blocks == [{"type": "text", "text": "Human user:\n"}, {"type": "image", "text": None},
                      {"type": "text", "text": "\n"}, {"type": "image", "text": None},
                      {"type": "text", "text": "\nhi {x}\n"}]
    msgs = guard_messages_blocks("p", None, 3)
    assert sum(b["type"] == "image" for m in msgs for b in m["content"]) == 3
    # joining the text blocks back with the tokens gives the string form
    joined = "".join("<image>" if b["type"] == "image" else b["text"] for b in msgs[1]["content"])
    assert joined == guard_user_text("p", None, 3)


@pytest.mark.parametrize(("text", "ok"), [
    ("<think>\nx\n</think>\n<result>\nRequest: harmful\nResponse: None\n</result>", True),
    ("  <think>x</think><result>y</result>\n", True),
    ("<think>x</think>", False),
    ("<result>y</result>", False),
    ("<result>y</result><think>x</think>", False),
    ("pre <think>x</think><result>y</result>", False),
    ("<think>x</think><result>y</result> trailing", False),
    ("<think>x<think>z</think><result>y</result>", False),
    ("", False),
    (None, False),
])
def test_has_guard_format(text, ok):
    assert has_guard_format(text) is ok


def test_sft_target_rejects_bad_labels():
    with pytest.raises(ValueError):
        sft_target("r", "none", None)
    with pytest.raises(ValueError):
        sft_target("r", "harmful", "refusal")
    assert sft_target("r", "harmful", None).endswith("<result>\nRequest: harmful\nResponse: None\n</result>")


@pytest.mark.parametrize("text", [
    "---" + " " * 40000 + "x", "--- " * 10000 + "x", "-" * 40000 + "x", "Answers" + " *_" * 10000 + "z",
    "## Reasoning Step 1" + " " * 40000 + "x", "## Conclusion" + " \t" * 20000 + ":", "<think>" + "</think>" * 5000,
    "<result>" * 10000, "Answers:\n" + "Request: " * 10000, "**" * 20000,
])
def test_untrusted_text_never_backtracks(text):
    """Teacher and policy outputs are untrusted: every parser stays fast on pathological input."""
    import time

    from corpus.reasoning import extract_steps

    start = time.perf_counter()
    parse_answers(text)
    split_answers(text + "\nAnswers:\nRequest: harmful")
    has_guard_format(text)
    extract_steps(text)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(("text", "ok"), [
    ("<think>\nx\n</think>\n<result>\nRequest: harmful\n</result>", True),
    ("pre <think>x</think><result>y</result>", True),          # a preamble still counts (paper family)
    ("<think>x</think><result>y</result> trailing", True),
    ("<think>x<think>z</think>\n\t <result>y</result>", True),
    ("<think>a</think> b </think><result>y</result>", True),   # a later </think> is followed by <result>
    ("<think>x</think> no <result>y</result>", False),          # text between </think> and <result>
    ("<think>x</think><result>y", False),
    ("</think><result>y</result><think>", False),
    ("<result>y</result><think>x</think>", False),
    ("", False),
    (None, False),
])
def test_has_guard_pattern_is_re_search(text, ok):
    from corpus.guard_format import format_indicator, has_guard_pattern

    pattern = re.compile(r"<think>.*?</think>\s*<result>.*?</result>", re.DOTALL)
    assert has_guard_pattern(text) is ok
    assert bool(text and pattern.search(text)) is ok
    assert format_indicator(text, "search") is ok
    assert format_indicator(text, "fullmatch") is has_guard_format(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["<think>", "</think>", "<result>", "</result>", " ", "\n", "x", "Request: harmful"]),
                max_size=12))
def test_has_guard_pattern_equals_the_regex_on_any_tag_soup(parts):
    from corpus.guard_format import has_guard_pattern

    text = "".join(parts)
    assert has_guard_pattern(text) is bool(re.search(r"<think>.*?</think>\s*<result>.*?</result>", text, re.DOTALL))


def test_has_guard_pattern_is_linear_on_pathological_input():
    import time

    from corpus.guard_format import has_guard_pattern

    start = time.perf_counter()
    assert not has_guard_pattern("<think>" + "</think> " * 20000 + "</result>")
    assert not has_guard_pattern("<think>" * 20000 + "</think>" * 20000)
    assert time.perf_counter() - start < 1.0


def test_the_last_result_block_wins_over_a_draft_inside_think():
    """A rollout that drafts a <result> inside <think>, then answers differently: the final block counts."""
    text = ("<think>\nDraft:\n<result>\nRequest: unharmful\nResponse: harmful\n</result>\nOn reflection no.\n</think>\n"
            "<result>\nRequest: harmful\nResponse: unharmful\n</result>")
    ans = parse_answers(text)
    assert (ans.request, ans.response) == ("harmful", "unharmful")
    assert split_answers(text)[1].startswith("<result>\nRequest: harmful")
