"""JSON Lines files that ``datasets`` loads at any size: rows of every shape are spread through the file.

``datasets.load_dataset("json")`` reads a file in chunks (10 MB) and fixes each column's type from the first
chunk. A column that is null or an empty list in every row of that chunk (``images`` of text rows,
``response_label`` of rows without a response) is typed null there, and the first later chunk holding a
value fails the load (``Couldn't cast array of type string to null``). A corpus written in part order (all
text rows first) therefore loads at 129 rows and fails at 30K.

:class:`InterleavedJsonl` spools rows by *shape* (which top-level fields are null or empty) into temporary
files and then merges them so that every prefix of the file holds each shape in proportion to its count:
the first rows are one of each shape, and any chunk of a few rows carries every column's type. Memory holds
one row; the rows of one shape keep their order.
"""

from __future__ import annotations

import heapq
import json
import os
from pathlib import Path
from typing import Any


def shape_of(row: dict[str, Any]) -> str:
    """The fields of ``row`` that are null or empty lists (``""`` when none): what a JSON loader cannot type."""
    return ",".join(k for k, v in row.items() if v is None or (isinstance(v, list) and not v))


class InterleavedJsonl:
    """Write rows to ``path`` (JSON Lines), shapes interleaved in proportion; the file appears on :meth:`close`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.spool_dir = self.path.parent / f".{self.path.name}.spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, Any] = {}
        self._names: dict[str, Path] = {}
        self.counts: dict[str, int] = {}

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def write(self, row: dict[str, Any]) -> None:
        shape = shape_of(row)
        f = self._files.get(shape)
        if f is None:
            name = self.spool_dir / f"shape-{len(self._files):03d}.jsonl"
            f = self._files[shape] = name.open("w", encoding="utf-8")
            self._names[shape], self.counts[shape] = name, 0
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.counts[shape] += 1

    def close(self) -> None:
        """Merge the spools into ``path`` (written under a temporary name, then renamed) and remove them."""
        for f in self._files.values():
            f.close()
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        readers = {s: self._names[s].open(encoding="utf-8") for s in self._files}
        try:
            with tmp.open("w", encoding="utf-8") as out:
                # the next shape is the one furthest behind its share (taken / count), ties in first-seen order
                heap = [(0.0, i, s) for i, s in enumerate(self._files)]
                heapq.heapify(heap)
                taken = dict.fromkeys(self._files, 0)
                while heap:
                    _, i, s = heapq.heappop(heap)
                    out.write(readers[s].readline())
                    taken[s] += 1
                    if taken[s] < self.counts[s]:
                        heapq.heappush(heap, (taken[s] / self.counts[s], i, s))
            os.replace(tmp, self.path)
        finally:
            for r in readers.values():
                r.close()
            for name in self._names.values():
                name.unlink(missing_ok=True)
            self.spool_dir.rmdir()
