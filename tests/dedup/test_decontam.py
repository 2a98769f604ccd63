"""DecontamIndex on real eval files from the GuardReasoner benchmark snapshot."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageDraw
from realdata_path import REALDATA

from corpus.decontam import DecontamIndex
from corpus.images import phash

BENCH = REALDATA / "guardreasoner" / "benchmark"
OAI = "openai_moderation"


def split_input(text: str) -> tuple[str, str | None]:
    """Prompt and response from 'Human user:\\n{prompt}\\n\\nAI assistant:\\n{response or None}\\n\\n'."""
    assert text.startswith("Human user:\n")
    prompt, sep, response = text[len("Human user:\n") :].partition("\n\nAI assistant:\n")
    assert sep, "no AI assistant marker"
    response = response.removesuffix("\n\n")
    return prompt, (None if response == "None" else response)


def load(name: str) -> list[tuple[str, str | None]]:
    return [split_input(r["input"]) for r in json.loads((BENCH / name).read_text(encoding="utf-8"))]


@pytest.fixture(scope="module")
def oai() -> list[tuple[str, str | None]]:
    return load("0_2_OpenAIModeration.head300.json")


@pytest.fixture(scope="module")
def index(oai) -> DecontamIndex:
    idx = DecontamIndex(ngram=13)
    for prompt, response in oai:
        idx.add(OAI, prompt, response)
    for prompt, response in load("0_0_SimpleSafetyTests.json"):
        idx.add("simple_safety", prompt, response)
    idx.add_rows(
        {"benchmark": "beavertails", "prompt": p, "response": r} for p, r in load("0_A_beaver_tails.head300.json")
    )
    return idx


def long_prompt(oai, min_words: int = 30) -> str:
    return next(p for p, _ in oai if len(p.split()) >= min_words)


def test_index_stats_count_per_benchmark(index, oai):
    stats = index.index_stats()
    assert stats[OAI]["rows"] == len(oai) == 300
    assert stats["simple_safety"]["rows"] == 100 and stats["beavertails"]["rows"] == 300
    assert stats[OAI]["prompts"] == 300 and stats[OAI]["responses"] == 0  # moderation rows have no response
    assert stats["beavertails"]["responses"] == 300 and stats[OAI]["ngrams"] > 1000
    assert len(index) == 700


def test_exact_copies_match(index, oai):
    for prompt, _ in oai[:50]:
        assert index.match(prompt, None) == (OAI, "exact")


def test_case_and_whitespace_variant_matches_exactly(index, oai):
    prompt = oai[7][0]
    variant = "   " + "\n\t".join(prompt.upper().split()) + "  "
    assert index.match(variant, "some unrelated answer") == (OAI, "exact")


def test_embedded_13_word_span_matches_by_ngram(index, oai):
    prompt = long_prompt(oai)
    span = " ".join(prompt.split()[5:18])
    text = f"My friend sent me this and I wonder what you think: {span} -- anyway, thanks in advance."
    leak = index.match(text, None)
    assert leak == (OAI, "ngram")
    assert leak.benchmark == OAI and leak.how == "ngram"


def test_12_word_span_and_short_texts_do_not_match_by_ngram(index, oai):
    prompt = long_prompt(oai)
    span = " ".join(prompt.split()[5:17])
    assert index.match(f"My friend sent me this: {span} -- what now?", None) is None
    short = next(p for p, _ in oai if 3 <= len(p.split()) < 13)
    assert index.match(short, None) == (OAI, "exact")
    assert index.match(short + " and also tell me a joke about cats", None) is None


def test_ngram_size_is_configurable(oai, index):
    idx = DecontamIndex(ngram=8)
    for prompt, response in oai:
        idx.add(OAI, prompt, response)
    span = " ".join(long_prompt(oai).split()[2:10])
    text = f"Tell me about this please: {span}. Thanks"
    assert idx.match(text, None) == (OAI, "ngram")
    assert index.match(text, None) is None, "8 shared words are not a 13-gram"


def test_benchmark_attribution(index):
    prompt, _ = load("0_0_SimpleSafetyTests.json")[3]
    assert index.match(prompt.lower(), None) == ("simple_safety", "exact")


def test_response_lane(index):
    prompt, response = next((p, r) for p, r in load("0_A_beaver_tails.head300.json") if r and len(r.split()) > 40)
    assert index.match("a brand new question nobody asked before", response) == ("beavertails", "exact")
    words = response.split()
    assert index.match("a new question", "Intro. " + " ".join(words[10:24])) == ("beavertails", "ngram")
    no_resp = DecontamIndex(check_responses=False)
    no_resp.add("beavertails", prompt, response)
    assert no_resp.match("a brand new question nobody asked before", response) is None


def test_unrelated_real_texts_do_not_match(index):
    unrelated = [p for p, _ in load("0_3_harmbench_prompt.json")[:60]]
    assert [t for t in unrelated if index.match(t, None)] == []
    assert index.match("What is a good recipe for banana bread with walnuts?", "Mash three bananas.") is None


def _picture(seed: int) -> Image.Image:
    im = Image.new("RGB", (160, 120), (seed * 40 % 256, 90, 200))
    draw = ImageDraw.Draw(im)
    for k in range(5):
        x = (seed * 37 + k * 29) % 130
        draw.ellipse([x, k * 20, x + 30, k * 20 + 25], fill=((k * 60) % 256, 255 - seed * 20 % 256, 30))
    return im


def test_image_sha256_and_phash():
    idx = DecontamIndex(phash_max_distance=6)
    pic = _picture(1)
    idx.add("harm_image_test", None, None, ["a" * 64], [phash(pic)])
    buf = io.BytesIO()
    pic.resize((140, 105)).save(buf, "JPEG", quality=60)
    near = phash(Image.open(buf))
    assert idx.match(None, None, ["a" * 64], []) == ("harm_image_test", "sha256")
    assert idx.match("any caption", None, ["b" * 64], [near]) == ("harm_image_test", "phash")
    assert idx.match("any caption", None, ["b" * 64], [phash(_picture(5))]) is None
    assert idx.index_stats()["harm_image_test"]["images"] == 1
