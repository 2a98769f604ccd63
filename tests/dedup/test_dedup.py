"""Text normalisation, n-grams, content keys and the Deduper."""

from __future__ import annotations

from corpus.dedup import Deduper, content_key
from corpus.textnorm import normalize_text, word_ngrams, words


def test_normalize_text():
    assert normalize_text("  Hello\t\tWORLD \n\u00a0again ") == "hello world again"
    assert normalize_text("ＦＵＬＬ ｗｉｄｔｈ ﬁ") == "full width fi"  # NFKC folds width and ligatures
    assert normalize_text("Straße") == "strasse"  # casefold, not lower
    assert normalize_text(None) == "" and normalize_text("   ") == ""


def test_words_strip_punctuation_and_ngrams():
    assert words("Don't STOP -- now, please!") == ["dont", "stop", "now", "please"]
    assert word_ngrams("a b c", 4) == set()
    grams = word_ngrams("one two three four", 2)
    assert len(grams) == 3 and all(isinstance(g, int) for g in grams)
    assert word_ngrams("One, two; THREE four", 2) == grams


def test_content_key_equal_under_normalisation():
    a = content_key("How do I  bake Bread?", "Mix flour\nand water.", ["bb", "aa"])
    assert a == content_key("how do i bake bread?", "  MIX FLOUR and water. ", ["aa", "bb"])
    assert len(a) == 64
    assert a != content_key("how do i bake bread?", "mix flour and water.", ["aa"])
    assert a != content_key("how do i bake bread", "mix flour and water.", ["aa", "bb"])  # punctuation counts
    assert content_key("x", None) == content_key("x", "") == content_key("x", "  ", [])
    assert content_key("ab", "c") != content_key("a", "bc")


def test_deduper_seen_and_resume():
    d = Deduper()
    k1, k2 = content_key("p1", "r1"), content_key("p2", None)
    assert d.seen(k1, "wildguard") is False
    assert d.seen(k1, "aegis") is True
    assert d.first_source(k1) == "wildguard"
    assert d.seen(k2, "aegis") is False and len(d) == 2
    resumed = Deduper([k1, k2], source="written-parts")
    assert k1 in resumed and resumed.seen(k2) is True and resumed.first_source(k2) == "written-parts"
    assert resumed.seen(content_key("p3", "r3")) is False and len(resumed) == 3
