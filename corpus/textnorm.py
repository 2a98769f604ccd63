"""The one text normalisation used for dedup and decontamination, and word n-grams over it."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NON_WORD = re.compile(r"[^\w]+")


def normalize_text(s: str | None) -> str:
    """NFKC, casefold, collapse whitespace, strip. ``None`` gives ``""``."""
    if not s:
        return ""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def words(s: str | None) -> list[str]:
    """Normalised words with punctuation removed (``"Don't!"`` -> ``"dont"``); empty words dropped."""
    out = []
    for w in normalize_text(s).split():
        w = _NON_WORD.sub("", w).replace("_", "")
        if w:
            out.append(w)
    return out


def hash64(text: str) -> int:
    """Stable unsigned 64-bit hash (blake2b, 8 bytes)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def word_ngrams(s: str | None, n: int) -> set[int]:
    """64-bit hashes of every run of ``n`` consecutive :func:`words`; empty if the text has fewer than ``n`` words."""
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    ws = words(s)
    return {hash64(" ".join(ws[i : i + n])) for i in range(len(ws) - n + 1)}
