"""Image near-duplicates of the ingest stage: clusters of rows whose images are perceptually the same.

Two rows are near-duplicates when their text is the same after normalisation (image-only rows: no text) and
one image of each is within ``max_distance`` bits of each other by 64-bit perceptual hash (a re-encoded,
resized or slightly cropped copy). The ingest stage puts every member of a cluster on the side of the held-out
split its first member went to, so a copy of a held-out image never stays in train; a later member of a
train cluster is dropped as ``near_duplicate`` (the first one is kept).

Exact copies (same sha256) are the exact dedup's business (:mod:`corpus.dedup`); this module only sees rows
that passed it. Text near-duplicates are not handled here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from corpus.dedup import content_key
from corpus.images import hamming

SIDES = ("heldout", "kept")  # on equal distance, a held-out cluster wins: a leak is worse than a lost row


@dataclass(frozen=True)
class ClusterHit:
    """The nearest earlier member: its distance, the side of the split its cluster is on, and its row id."""

    distance: int
    side: str
    row_id: str


def text_key(prompt: str | None, response: str | None) -> str:
    """The row's text identity (normalised prompt and response, no images)."""
    return content_key(prompt, response, [])


class ImageClusters:
    """Perceptual hashes of the kept and held-out rows, grouped by text key.

    :meth:`nearest` does not depend on the order rows were added (ties: held-out side first, then the
    smallest row id), so a resumed run that re-adds the written rows part by part decides as an
    uninterrupted one.
    """

    def __init__(self, max_distance: int):
        if not 0 <= max_distance <= 64:
            raise ValueError(f"max_distance must be in [0, 64], got {max_distance}")
        self.max_distance = max_distance
        self._arrays: dict[str, np.ndarray] = {}  # text key -> hash buffer (grown by doubling)
        self._counts: dict[str, int] = {}
        self._members: dict[str, list[tuple[str, str]]] = {}  # text key -> [(side, row id)] per hash

    def add(self, key: str, phashes: Iterable[int], side: str, row_id: str) -> None:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, got {side!r}")
        for h in phashes:
            n = self._counts.get(key, 0)
            arr = self._arrays.get(key)
            if arr is None or n == len(arr):
                grown = np.zeros(max(8, 2 * n), dtype=np.uint64)
                if arr is not None:
                    grown[:n] = arr
                self._arrays[key] = arr = grown
            arr[n] = np.uint64(int(h))
            self._counts[key] = n + 1
            self._members.setdefault(key, []).append((side, row_id))

    def nearest(self, key: str, phashes: Iterable[int]) -> ClusterHit | None:
        """The nearest earlier member within ``max_distance`` of any of ``phashes``; None if there is none."""
        n = self._counts.get(key, 0)
        if not n:
            return None
        arr = self._arrays[key][:n]
        best: tuple[int, int, str] | None = None
        for h in phashes:
            dist = _popcount(arr ^ np.uint64(int(h)))
            d = int(dist.min())
            if d > self.max_distance:
                continue
            for i in np.flatnonzero(dist == d):
                side, row_id = self._members[key][int(i)]
                cand = (d, SIDES.index(side), row_id)
                if best is None or cand < best:
                    best = cand
        if best is None:
            return None
        return ClusterHit(best[0], SIDES[best[1]], best[2])

    def __len__(self) -> int:
        return sum(self._counts.values())


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.array([hamming(int(v), 0) for v in x], dtype=np.int64)
