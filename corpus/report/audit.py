"""``corpus audit-labels RUN``: a label-noise audit of the rows the filter dropped for a label mismatch.

Those rows (the teacher, shown the gold label, still disagreed) are the best evidence of label noise in
the seed datasets. Each is re-asked *blind* (the same teacher request with every gold label removed, so
the teacher decides alone) through the same cached, resumable client synthesize uses; a row where the
blind teacher also disagrees with the gold is *suspected label noise*. Written under ``RUN/audit-labels/``:

- ``review.jsonl`` and ``review.csv``: prompt, image paths, response, gold labels, the guided and blind
  teacher answers, the blind reasoning, and empty ``reviewed_request_label`` / ``reviewed_response_label``
  columns for a person to fill. Either file, corrected, is accepted back as ``ingest.label_overrides``.
- ``summary.json``: rows audited, answered, suspected, and rates per source and per category (shown in
  the report).
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from corpus.guard_format import parse_answers
from corpus.llm.progress import Progress
from corpus.llm.request import ChatRequest
from corpus.llm.runner import Runner
from corpus.stages.synthesize import open_cache, teacher_messages
from corpus.store import write_json_atomic

OUT = "audit-labels"
MISMATCH = "label_mismatch:"
REVIEW_COLUMNS = ["id", "source", "source_id", "modality", "categories", "drop_reason", "prompt", "response",
                  "images", "gold_request_label", "gold_response_label", "teacher_request", "teacher_response",
                  "blind_status", "blind_request", "blind_response", "suspected_label_noise", "blind_reasoning",
                  "reviewed_request_label", "reviewed_response_label"]


def blind_request(row: dict, cfg, run_dir: Path) -> ChatRequest:
    """The teacher request of ``row`` with every gold label removed (the teacher decides)."""
    blind = {**row, "request_label": None, "response_label": None}
    return ChatRequest(model=cfg.model, messages=teacher_messages(blind, run_dir),
                       params=cfg.generation.request_fields(), image_max_pixels=cfg.image_max_pixels)


def mismatched_rows(run_dir: Path) -> list[dict]:
    parts = sorted((run_dir / "filter" / "dropped").glob("part-*.parquet"))
    if not parts:
        return []
    d = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    return d.filter(pl.col("drop_reason").str.starts_with(MISMATCH)).to_dicts()


async def _resolve(cfg, cache, reqs: list[ChatRequest]):
    client = None
    if cfg.mode != "replay":
        from corpus.llm.client import TeacherClient, api_key_from_env

        api_key_from_env(cfg)
        client = TeacherClient(cfg)
    progress = Progress(len(reqs), 0, enabled=cfg.progress, desc="audit-labels")
    try:
        return await Runner(cfg, cache, client, progress).resolve(reqs)
    finally:
        progress.close()
        if client is not None:
            await client.close()


def audit(recipe, run_dir: Path | str, limit: int | None = None) -> dict[str, Any]:
    """Re-ask the mismatched rows blind, write the review files and the summary; return the summary."""
    run_dir = Path(run_dir)
    if not (run_dir / "filter" / "_manifest.json").exists():
        raise FileNotFoundError(f"audit-labels needs a finished filter stage in {run_dir}")
    cfg = recipe.synthesize
    if cfg.mode == "batch":
        cfg = cfg.model_copy(update={"mode": "online"})  # a few hundred rows: not worth a batch round trip
    rows = mismatched_rows(run_dir)[:limit]
    reqs = [blind_request(r, cfg, run_dir) for r in rows]
    cache = open_cache(recipe, cfg)
    try:
        outcomes = asyncio.run(_resolve(cfg, cache, reqs)) if reqs else []
        cache.flush()
    finally:
        cache.close()
    review = []
    for row, out in zip(rows, outcomes):
        ans = parse_answers(out.output) if out.status == "ok" else None
        kind = row["drop_reason"][len(MISMATCH):]
        gold = row.get(f"{kind}_label")
        blind = getattr(ans, kind, None) if ans is not None and ans.found else None
        review.append({
            "id": row["id"], "source": row["source"], "source_id": row["source_id"], "modality": row["modality"],
            "categories": row.get("categories") or [], "drop_reason": row["drop_reason"],
            "prompt": row.get("prompt"), "response": row.get("response"),
            "images": [im["path"] for im in row.get("images") or []],
            "gold_request_label": row.get("request_label"), "gold_response_label": row.get("response_label"),
            "teacher_request": row.get("teacher_request"), "teacher_response": row.get("teacher_response"),
            "blind_status": out.status if ans is None or ans.found else "no_answers",
            "blind_request": ans.request if ans is not None else None,
            "blind_response": ans.response if ans is not None else None,
            "suspected_label_noise": blind is not None and blind != gold,
            "blind_reasoning": out.output, "reviewed_request_label": None, "reviewed_response_label": None,
        })
    out_dir = run_dir / OUT
    out_dir.mkdir(exist_ok=True)
    write_review(review, out_dir)
    summary = summarize(review, cfg)
    write_json_atomic(out_dir / "summary.json", summary)
    return summary


def write_review(review: list[dict], out_dir: Path) -> None:
    with (out_dir / "review.jsonl").open("w", encoding="utf-8") as f:
        for r in review:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with (out_dir / "review.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=REVIEW_COLUMNS)
        w.writeheader()
        for r in review:
            w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else
                        ("" if v is None else v) for k, v in r.items()})


def _rates(review: list[dict], key) -> list[dict[str, Any]]:
    audited: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    suspected: Counter[str] = Counter()
    for r in review:
        for k in key(r):
            audited[k] += 1
            answered[k] += r["blind_status"] == "ok"
            suspected[k] += bool(r["suspected_label_noise"])
    return [{"name": k, "audited": audited[k], "answered": answered[k], "suspected": suspected[k],
             "suspected_rate": round(suspected[k] / answered[k], 4) if answered[k] else None}
            for k in sorted(audited)]


def summarize(review: list[dict], cfg) -> dict[str, Any]:
    by_source = [{"source": r.pop("name"), **r} for r in _rates(review, lambda r: [r["source"]])]
    by_category = [{"category": r.pop("name"), **r}
                   for r in _rates(review, lambda r: r["categories"] or ["(none)"])]
    return {"teacher": cfg.model, "mode": cfg.mode, "audited": len(review),
            "answered": sum(r["blind_status"] == "ok" for r in review),
            "suspected": sum(bool(r["suspected_label_noise"]) for r in review),
            "by_source": by_source, "by_category": by_category, "review_file": f"{OUT}/review.jsonl"}


def audit_summary(run_dir: Path | str) -> dict[str, Any] | None:
    """The last audit's summary of a run, or None."""
    p = Path(run_dir) / OUT / "summary.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
