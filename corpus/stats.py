"""``corpus stats``: per-stage figures read from the checkpoints (counts, labels, categories, drops).

Generic figures come from the Parquet parts of every stage; a stage module may add its own through a
``stats(run_dir)`` function (reasoning steps, hardness, RL composition, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from corpus.stages import STAGE_ORDER, get_stage
from corpus.store import StageDir

GROUP = ["source", "modality", "request_label", "response_label"]


def _scan(parts: list[Path]) -> pl.LazyFrame | None:
    return pl.scan_parquet([str(p) for p in parts]) if parts else None


def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.to_dicts()


def table_summary(parts: list[Path]) -> dict[str, Any]:
    """Counts of a set of parts: by source × modality × labels, and categories."""
    lf = _scan(parts)
    if lf is None:
        return {"rows": 0}
    cols = lf.collect_schema().names()
    out: dict[str, Any] = {"rows": int(lf.select(pl.len()).collect().item())}
    group = [c for c in GROUP if c in cols]
    if group:
        df = lf.group_by(group).agg(pl.len().alias("rows")).sort(group, nulls_last=True).collect()
        out["by_source_modality_label"] = _rows(df)
    if "categories" in cols:
        cats = (lf.select(pl.col("categories").explode().alias("category")).drop_nulls()
                .group_by("category").agg(pl.len().alias("rows")).sort("rows", descending=True).collect())
        out["categories"] = {r["category"]: r["rows"] for r in _rows(cats)}
    return out


def drop_summary(parts: list[Path]) -> dict[str, Any]:
    lf = _scan(parts)
    if lf is None:
        return {"rows": 0, "by_reason": {}}
    by_reason = lf.group_by("drop_reason").agg(pl.len().alias("rows")).sort("rows", descending=True).collect()
    by_source = (lf.group_by(["source", "drop_reason"]).agg(pl.len().alias("rows"))
                 .sort(["source", "rows"], descending=[False, True]).collect())
    return {
        "rows": int(by_reason["rows"].sum()),
        "by_reason": {r["drop_reason"]: r["rows"] for r in _rows(by_reason)},
        "by_source_reason": _rows(by_source),
    }


def stage_report(run_dir: Path, stage: str) -> dict[str, Any] | None:
    sd = StageDir(run_dir, stage)
    if not sd.path.is_dir():
        return None
    manifest = sd.manifest()
    report: dict[str, Any] = {
        "complete": manifest is not None,
        "manifest": {k: manifest.get(k) for k in ("rows_in", "rows_out", "rows_dropped", "outputs", "timings",
                                                  "counters", "usage", "cost")
                     if k in manifest} if manifest else None,
        "kept": table_summary(sd.parts()),
        "dropped": drop_summary(sd.parts("dropped")),
    }
    outputs = (manifest or {}).get("outputs") or {}
    if outputs:
        report["outputs"] = {name: table_summary(sd.parts(name)) for name in outputs}
    try:
        module = get_stage(stage)
    except ModuleNotFoundError:
        module = None
    if module is not None and hasattr(module, "stats"):
        report["details"] = module.stats(run_dir)
    return report


def collect(run_dir: Path | str) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory at {run_dir}")
    stages = {}
    for stage in STAGE_ORDER:
        rep = stage_report(run_dir, stage)
        if rep is not None:
            stages[stage] = rep
    return {"run_dir": str(run_dir), "stages": stages}


def _fmt_table(rows: list[dict[str, Any]], cols: list[str]) -> list[str]:
    if not rows:
        return ["  (none)"]
    cells = [[("-" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return lines


def render(report: dict[str, Any]) -> str:
    """Plain-text tables of a ``collect()`` report."""
    lines = [f"run: {report['run_dir']}"]
    for stage, rep in report["stages"].items():
        kept = rep["kept"]
        state = "complete" if rep["complete"] else "INCOMPLETE"
        lines += ["", f"== {stage} ({state}): {kept['rows']} rows kept, {rep['dropped']['rows']} dropped"]
        if kept.get("by_source_modality_label"):
            lines.append(" rows by source × modality × label:")
            cols = [c for c in GROUP if c in kept["by_source_modality_label"][0]] + ["rows"]
            lines += _fmt_table(kept["by_source_modality_label"], cols)
        if kept.get("categories"):
            lines.append(" categories:")
            lines += _fmt_table([{"category": k, "rows": v} for k, v in kept["categories"].items()],
                                ["category", "rows"])
        if rep["dropped"]["by_reason"]:
            lines.append(" drops by reason:")
            lines += _fmt_table([{"reason": k, "rows": v} for k, v in rep["dropped"]["by_reason"].items()],
                                ["reason", "rows"])
            lines.append(" drops by source:")
            lines += _fmt_table(rep["dropped"]["by_source_reason"], ["source", "drop_reason", "rows"])
        for name, summ in (rep.get("outputs") or {}).items():
            lines.append(f" output {name}: {summ['rows']} rows")
            if summ.get("by_source_modality_label"):
                cols = [c for c in GROUP if c in summ["by_source_modality_label"][0]] + ["rows"]
                lines += _fmt_table(summ["by_source_modality_label"], cols)
        details = rep.get("details")
        if details:
            lines.append(" details:")
            lines += _render_details(details, indent="  ")
    return "\n".join(lines)


def _render_details(obj: Any, indent: str) -> list[str]:
    """Stage-specific figures: tables of dict rows where possible, else compact JSON."""
    out: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                out.append(f"{indent}{key}:")
                out += [indent + line for line in _fmt_table(value, list(value[0].keys()))]
            elif isinstance(value, dict):
                out.append(f"{indent}{key}:")
                out += _render_details(value, indent + "  ")
            else:
                out.append(f"{indent}{key}: {json.dumps(value, default=str)}")
    else:
        out.append(f"{indent}{json.dumps(obj, default=str)}")
    return out
