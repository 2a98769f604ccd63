"""Exact dedup on normalised text plus image hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from corpus.textnorm import normalize_text


def content_key(prompt: str | None, response: str | None, image_sha256s: Iterable[str] = ()) -> str:
    """sha256 hex of (normalised prompt, normalised response, sorted image hashes); None and "" are the same."""
    payload = [normalize_text(prompt), normalize_text(response), sorted(image_sha256s)]
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


class Deduper:
    """Seen-set of content keys remembering which source had each key first.

    Pre-seed it from the keys (and sources) of already-written parts so a resumed run rebuilds its state.
    """

    def __init__(self, keys: Iterable[str] = (), source: str | None = None):
        self._first: dict[str, str | None] = {}
        self.update(keys, source)

    def update(self, keys: Iterable[str], source: str | None = None) -> None:
        for k in keys:
            self._first.setdefault(k, source)

    def seen(self, key: str, source: str | None = None) -> bool:
        """True if ``key`` was seen before; otherwise record it (with ``source``) and return False."""
        if key in self._first:
            return True
        self._first[key] = source
        return False

    def first_source(self, key: str) -> str | None:
        """The source that first had ``key`` (None if unknown or unseen)."""
        return self._first.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def __len__(self) -> int:
        return len(self._first)
