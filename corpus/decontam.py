"""Decontamination against eval sets: normalised exact text, word n-gram overlap, image sha256 and phash.

Text is matched lane by lane: a training prompt against eval prompts, a training response against eval
responses (``check_responses=False`` turns the response lane off, e.g. when refusal boilerplate shared by many
datasets would flag too much). Texts and n-grams are kept as 64-bit hashes to bound memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from corpus.images import PhashIndex
from corpus.textnorm import hash64, normalize_text, word_ngrams


class Leak(NamedTuple):
    benchmark: str
    how: str  # "sha256" | "exact" | "ngram" | "phash"


class DecontamIndex:
    """Index of eval-set rows; :meth:`match` says whether a training row leaks one of them.

    ``ngram``: word n-gram size (texts shorter than that only match exactly); ``phash_max_distance``: the
    largest Hamming distance between 64-bit perceptual hashes that counts as the same image.
    """

    def __init__(self, ngram: int = 13, phash_max_distance: int = 4, check_responses: bool = True):
        self.ngram = ngram
        self.phash_max_distance = phash_max_distance
        self.check_responses = check_responses
        self._names: list[str] = []
        self._ids: dict[str, int] = {}
        self._exact: dict[str, dict[int, int]] = {"prompt": {}, "response": {}}
        self._ngrams: dict[str, dict[int, int]] = {"prompt": {}, "response": {}}
        self._sha: dict[str, int] = {}
        self._phash = PhashIndex()
        self._stats: dict[str, dict[str, int]] = {}

    def _id(self, benchmark: str) -> int:
        if benchmark not in self._ids:
            self._ids[benchmark] = len(self._names)
            self._names.append(benchmark)
            self._stats[benchmark] = dict.fromkeys(("rows", "prompts", "responses", "ngrams", "images"), 0)
        return self._ids[benchmark]

    def add(
        self,
        benchmark: str,
        prompt: str | None,
        response: str | None = None,
        image_sha256s: Iterable[str] = (),
        image_phashes: Iterable[int] = (),
    ) -> None:
        """Index one eval row (the first benchmark to add a text or image owns it)."""
        b = self._id(benchmark)
        st = self._stats[benchmark]
        st["rows"] += 1
        for lane, text in (("prompt", prompt), ("response", response)):
            norm = normalize_text(text)
            if not norm:
                continue
            st[f"{lane}s"] += 1
            self._exact[lane].setdefault(hash64(norm), b)
            grams = self._ngrams[lane]
            for g in word_ngrams(norm, self.ngram):
                grams.setdefault(g, b)
                st["ngrams"] += 1
        for sha in image_sha256s:
            self._sha.setdefault(sha, b)
            st["images"] += 1
        for h in image_phashes:
            self._phash.add(int(h), b)

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows with keys benchmark, prompt, response, image_sha256s, image_phashes (the last three optional)."""
        for r in rows:
            self.add(
                r["benchmark"],
                r.get("prompt"),
                r.get("response"),
                r.get("image_sha256s") or (),
                r.get("image_phashes") or (),
            )

    def match(
        self,
        prompt: str | None,
        response: str | None = None,
        image_sha256s: Iterable[str] = (),
        image_phashes: Iterable[int] = (),
    ) -> Leak | None:
        """First leak found, checking sha256, then exact text, then n-grams, then phash; None if clean."""
        for sha in image_sha256s:
            if sha in self._sha:
                return Leak(self._names[self._sha[sha]], "sha256")
        lanes = [("prompt", normalize_text(prompt))]
        if self.check_responses:
            lanes.append(("response", normalize_text(response)))
        lanes = [(lane, t) for lane, t in lanes if t and self._exact[lane]]
        for lane, norm in lanes:
            b = self._exact[lane].get(hash64(norm))
            if b is not None:
                return Leak(self._names[b], "exact")
        for lane, norm in lanes:
            grams = self._ngrams[lane]
            if not grams:
                continue
            for g in word_ngrams(norm, self.ngram):
                b = grams.get(g)
                if b is not None:
                    return Leak(self._names[b], "ngram")
        for h in image_phashes:
            hit = self._phash.query(int(h), self.phash_max_distance)
            if hit is not None:
                return Leak(self._names[hit[1]], "phash")
        return None

    def index_stats(self) -> dict[str, dict[str, int]]:
        """Per benchmark: rows, prompts, responses, n-grams and images added."""
        return {name: dict(st) for name, st in self._stats.items()}

    def __len__(self) -> int:
        return sum(st["rows"] for st in self._stats.values())
