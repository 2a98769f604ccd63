"""The one text normalisation used for dedup and decontamination, and word n-grams over it."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s]+")


def normalize_text(s: str | None) -> str:
    """NFKC, casefold, collapse whitespace, strip. ``None`` gives ``""``."""
    if not s:
        return ""
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def words(s: str | None) -> list[str]:
    """Normalised words with punctuation removed (``"Don't!"`` -> ``"dont"``); empty words dropped."""
    return _PUNCT.sub("", normalize_text(s)).replace("_", "").split()


def hash64(text: str) -> int:
    """Stable unsigned 64-bit hash (blake2b, 8 bytes)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def word_ngrams(s: str | None, n: int) -> set[int]:
    """Hashes of every run of ``n`` consecutive :func:`words`; empty if the text has fewer than ``n`` words.

    The hashes are Python's string hash: fast and stable within one process, which is all an in-memory
    index needs (it is rebuilt by every run); never persist them.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    ws = words(s)
    return {hash(" ".join(ws[i : i + n])) for i in range(len(ws) - n + 1)}
