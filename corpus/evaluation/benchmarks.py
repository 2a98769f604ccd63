"""Benchmark rows for evaluation, read by the eval-set adapters ingest already has (read-only use).

Each record goes through its adapter (``guardreasoner`` for GuardReasoner's ``data/benchmark/*.json``,
``wildguardmix`` for WildGuardTest, ``vltest`` for HarmImageTest / SPA-VL-Eval, ...). Images are read from
the source's image root, normalised and stored once under ``<run>/images/`` like ingest stores them, so the
guard input is the one :mod:`corpus.guard_format` builds (one ``<image>`` per image) with real files behind it.
A record the adapter cannot use, or an image that cannot be read, becomes a dropped row with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpus.images import ImageRejected, normalise_image, store_image
from corpus.sources.base import Drop, SourceError
from corpus.store import stable_hash

if TYPE_CHECKING:
    from corpus.recipe import Recipe, SourceSpec


@dataclass
class BenchRow:
    """One benchmark row: the guard's input and the gold labels (or why it cannot be used)."""

    index: int
    source_id: str
    prompt: str | None = None
    response: str | None = None
    images: list[dict] = field(default_factory=list)
    request_label: str | None = None
    response_label: str | None = None
    refusal_label: str | None = None
    drop: tuple[str, str] | None = None

    @property
    def id(self) -> str:
        return stable_hash([self.source_id, self.prompt, self.response, [i["sha256"] for i in self.images]])[:16]

    def gold(self) -> dict[str, str | None]:
        return {"request_label": self.request_label, "response_label": self.response_label,
                "refusal_label": self.refusal_label}


def load_benchmark(recipe: Recipe, spec: SourceSpec, run_dir: Path | None, with_images: bool = True) -> list[BenchRow]:
    """Every row of a benchmark in file order (dropped records included, with ``drop`` set).

    With ``with_images`` the images are stored under ``run_dir/images/``; without, only labels matter.
    """
    from corpus.stages.ingest import SourceReader

    reader = SourceReader(recipe, spec)
    rows: list[BenchRow] = []
    cfg = recipe.ingest
    for rec in reader.records():
        if rec.fields is None:
            rows.append(BenchRow(len(rows), str(rec.index), drop=(rec.drop.reason, rec.drop.detail)))
            continue
        try:
            converted = reader.adapter.convert(rec.fields, rec.index)
        except SourceError:
            raise
        except Exception as exc:  # one bad record never kills the run
            converted = Drop(f"adapter_error:{type(exc).__name__}", f"record {rec.index}: {exc}")
        if isinstance(converted, Drop):
            rows.append(BenchRow(len(rows), str(rec.index), drop=(converted.reason, converted.detail)))
            continue
        for d in converted:
            row = BenchRow(len(rows), d.source_id, d.prompt, d.response, [], d.request_label, d.response_label,
                           d.refusal_label)
            if with_images:
                try:
                    for img in d.images:
                        norm = normalise_image(reader.image_bytes(img), max_pixels=cfg.max_image_pixels,
                                               max_bytes=cfg.max_image_bytes)
                        row.images.append(store_image(norm, run_dir))
                except ImageRejected as exc:
                    row.images, row.drop = [], (exc.reason, f"{img.ref or 'inline image'}: {exc.detail}")
            rows.append(row)
    if reader.image_root is not None:
        reader.image_root.close()
    return rows


def load_heldout(run_dir: Path, name: str, limit: int | None = None) -> list[BenchRow]:
    """Rows the ingest stage held out as ``name`` (unified rows; their images are already in the run)."""
    from corpus.store import StageDir

    ingest = StageDir(run_dir, "ingest")
    if not ingest.complete:
        raise FileNotFoundError(f"evaluate: heldout {name!r} needs the finished `ingest` stage in {run_dir}")
    table = ingest.read(output=name, columns=["source_id", "prompt", "response", "images", "request_label",
                                              "response_label", "refusal_label"])
    rows = [] if table is None else table.to_pylist()[:limit]
    return [BenchRow(i, r["source_id"] or str(i), r["prompt"], r["response"],
                     [{"sha256": im["sha256"], "path": im["path"]} for im in r["images"] or []],
                     r["request_label"], r["response_label"], r["refusal_label"]) for i, r in enumerate(rows)]


def gold_rows(rows: list[BenchRow]) -> list[dict[str, Any] | None]:
    """The gold labels of every row, row for row (the released scorer reads WildGuardTest's this way)."""
    return [None if r.drop and r.prompt is None else r.gold() for r in rows]
