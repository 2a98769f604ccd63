"""Read a run directory for the report: stage tables as polars frames, manifests, and the figures the
report, the card and the trace share (composition, funnel, drops, Table 6, teacher, sampling, RL)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from corpus.stages import STAGE_ORDER
from corpus.store import StageDir

#: GuardReasoner-VL paper, Table 6 (samples, reasoning steps) per modality
PAPER_TABLE6 = {
    "text": (63_799, 353_440),
    "image": (13_267, 57_322),
    "text_image": (46_030, 221_033),
    "overall": (123_096, 631_795),
}
MODALITIES = ("text", "image", "text_image")
GROUP = ["source", "modality", "request_label", "response_label"]


class RunData:
    """Lazy, cached access to one run directory's checkpoints."""

    def __init__(self, run_dir: Path | str):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise FileNotFoundError(f"no run directory at {self.run_dir}")
        self._frames: dict[tuple[str, str | None], pl.DataFrame | None] = {}

    # -- raw access ------------------------------------------------------------------------------
    def stages(self) -> list[str]:
        """Stages of STAGE_ORDER that have a directory in the run."""
        return [s for s in STAGE_ORDER if (self.run_dir / s).is_dir()]

    def manifest(self, stage: str) -> dict:
        return StageDir(self.run_dir, stage).manifest() or {}

    def frame(self, stage: str, output: str | None = None, columns: list[str] | None = None) -> pl.DataFrame | None:
        """All parts of a stage (or of an output: ``dropped``, a held-out set) as one frame; ``columns``
        reads only those (the ones a part lacks are left out), which keeps figures of a large run small."""
        key = (stage, output, tuple(columns) if columns else None)
        if key not in self._frames:
            frames = [self._read(p, columns) for p in StageDir(self.run_dir, stage).parts(output)]
            frames = [f for f in frames if f.height or len(frames) == 1]
            self._frames[key] = pl.concat(frames, how="diagonal_relaxed") if frames else None
        return self._frames[key]

    @staticmethod
    def _read(path: Path, columns: list[str] | None) -> pl.DataFrame:
        if columns is None:
            return pl.read_parquet(path)
        present = set(pq.read_schema(path).names)
        return pl.read_parquet(path, columns=[c for c in columns if c in present])

    def find(self, stage: str, output: str | None, where: pl.Expr, n: int | None = None) -> list[dict[str, Any]]:
        """Whole rows matching ``where``, part by part (one part in memory at a time), at most ``n``."""
        out: list[dict[str, Any]] = []
        for p in StageDir(self.run_dir, stage).parts(output):
            f = pl.read_parquet(p)
            try:
                hits = f.filter(where)
            except pl.exceptions.ColumnNotFoundError:
                continue
            out += hits.head(n - len(out)).to_dicts() if n is not None else hits.to_dicts()
            if n is not None and len(out) >= n:
                break
        return out

    def rows(self, stage: str, output: str | None = None) -> int:
        return StageDir(self.run_dir, stage).num_rows(output)

    # -- figures ---------------------------------------------------------------------------------
    def composition(self, stage: str, output: str | None = None) -> list[dict[str, Any]]:
        """Rows by source × modality × labels."""
        f = self.frame(stage, output, GROUP)
        if f is None or not f.height:
            return []
        group = [c for c in GROUP if c in f.columns]
        return f.group_by(group).agg(pl.len().alias("rows")).sort(group, nulls_last=True).to_dicts()

    def drops(self, stage: str, columns: list[str] | None = None) -> pl.DataFrame | None:
        return self.frame(stage, "dropped", columns)

    def drop_counts(self, stage: str) -> list[dict[str, Any]]:
        d = self.drops(stage, ["drop_reason"])
        if d is None or not d.height:
            return []
        return (d.group_by("drop_reason").agg(pl.len().alias("rows"))
                .sort(["rows", "drop_reason"], descending=[True, False]).to_dicts())

    @cached_property
    def funnel(self) -> list[dict[str, Any]]:
        """Rows at each step from the seed records to the RL set, with the drops of each step."""
        steps: list[dict[str, Any]] = []
        m = self.manifest("ingest")
        if m:
            steps.append({"step": "seed records", "stage": "ingest", "rows": m.get("rows_in", 0)})
            heldout = sum((m.get("outputs") or {}).values())
            steps.append({"step": "ingested (train)", "stage": "ingest", "rows": m.get("rows_out", 0),
                          "dropped": self.drop_counts("ingest"), "heldout": heldout})
        if self.manifest("synthesize"):
            syn = self.frame("synthesize", columns=["teacher_status"])
            answered = 0 if syn is None else syn.filter(pl.col("teacher_status") == "ok").height
            steps.append({"step": "teacher answered", "stage": "synthesize", "rows": answered,
                          "dropped": self._status_drops()})
        for stage, label in (("filter", "filtered (SFT set)"), ("export", "exported SFT rows")):
            if self.manifest(stage):
                steps.append({"step": label, "stage": stage, "rows": self.manifest(stage).get("rows_out", 0),
                              "dropped": self.drop_counts(stage)})
        if self.manifest("sample"):
            s = self.frame("sample", columns=["hard"])
            hard = 0 if s is None else int(s["hard"].sum())
            steps.append({"step": "hard rows (rejection sampling)", "stage": "sample", "rows": hard,
                          "dropped": self.drop_counts("sample") + ([{"drop_reason": "not_hard", "rows":
                                                                    s.height - hard}] if s is not None and
                                                                   s.height - hard else [])})
        if self.manifest("concat"):
            steps.append({"step": "RL set (hard + concatenated)", "stage": "concat",
                          "rows": self.manifest("concat").get("rows_out", 0), "dropped": self.drop_counts("concat")})
        if self.manifest("rl-export"):
            m = self.manifest("rl-export")
            steps.append({"step": "exported RL rows", "stage": "rl-export", "rows": m.get("rows_out", 0),
                          "dropped": [{"drop_reason": k, "rows": v} for k, v in (m.get("drop_reasons") or {}).items()]})
        return steps

    def _status_drops(self) -> list[dict[str, Any]]:
        syn = self.frame("synthesize", columns=["teacher_status"])
        if syn is None:
            return []
        bad = syn.filter(pl.col("teacher_status") != "ok")
        return (bad.group_by("teacher_status").agg(pl.len().alias("rows"))
                .rename({"teacher_status": "drop_reason"}).sort("rows", descending=True).to_dicts())

    def table6(self) -> list[dict[str, Any]]:
        """Paper Table 6 layout per modality, with the paper's figures beside ours."""
        f = self.frame("filter", columns=["modality", "step_count", "steps"])
        out = []
        for mod in (*MODALITIES, "overall"):
            sel = f if mod == "overall" or f is None else f.filter(pl.col("modality") == mod)
            n = 0 if sel is None else sel.height
            steps = 0 if sel is None or not n else int(sel["step_count"].sum())
            chars = 0 if sel is None or not n else int(sel.select(
                pl.col("steps").list.eval(pl.element().str.len_chars()).list.sum().sum()).item())
            p_n, p_s = PAPER_TABLE6[mod]
            out.append({"modality": mod, "samples": n, "steps": steps,
                        "mean_steps": round(steps / n, 2) if n else None,
                        "chars_per_step": round(chars / steps, 1) if steps else None,
                        "paper_samples": p_n, "paper_steps": p_s, "paper_mean_steps": round(p_s / p_n, 2)})
        return out

    def reasoning_lengths(self) -> pl.DataFrame | None:
        """modality, step_count and reasoning characters of every kept filter row (computed part by part)."""
        frames = []
        for p in StageDir(self.run_dir, "filter").parts():
            f = pl.read_parquet(p, columns=["modality", "step_count", "reasoning"])
            frames.append(f.select("modality", "step_count", pl.col("reasoning").str.len_chars().alias("chars")))
        return pl.concat(frames) if frames else None

    def teacher(self) -> dict[str, Any]:
        m = self.manifest("synthesize").get("teacher") or {}
        syn = self.frame("synthesize", columns=["source", "teacher_status", "teacher_error", "prompt_tokens",
                                                "completion_tokens", "cost_usd"])
        out: dict[str, Any] = {k: m.get(k) for k in ("model", "mode", "prompt_tokens", "completion_tokens",
                                                     "cost_usd", "price_per_1m", "statuses")}
        if syn is not None and syn.height:
            failed = syn.filter(pl.col("teacher_status") != "ok")
            out["failures_by_cause"] = (failed.group_by(["teacher_status", "teacher_error"])
                                        .agg(pl.len().alias("rows")).sort("rows", descending=True).to_dicts())
            out["by_source"] = (syn.group_by("source").agg(
                pl.len().alias("rows"), pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum(),
                pl.col("cost_usd").sum().round(6)).sort("source").to_dicts())
        attempt = m.get("this_attempt") or {}
        out["latency"] = {k: v for k, v in attempt.items() if any(w in k for w in ("latency", "seconds", "per_s"))}
        out["this_attempt"] = attempt
        return out

    def sampling(self) -> dict[str, Any]:
        s = self.frame("sample", columns=["source", "k", "n_right", "hard"])
        if s is None or not s.height:
            return {}
        right = s.group_by(["k", "n_right"]).agg(pl.len().alias("rows")).sort(["k", "n_right"]).to_dicts()
        per_source = (s.group_by("source").agg(pl.len().alias("candidates"), pl.col("hard").sum().alias("hard"))
                      .with_columns((pl.col("hard") / pl.col("candidates")).round(4).alias("hard_rate"))
                      .sort("source").to_dicts())
        return {"rule": self.manifest("sample").get("rule"), "n_right": right, "hard_by_source": per_source}

    def rl(self) -> dict[str, Any]:
        c = self.frame("concat", columns=["kind", "modality"])
        if c is None or not c.height:
            return {}
        kinds = c.group_by("kind").agg(pl.len().alias("rows")).sort("kind").to_dicts()
        concat = sum(k["rows"] for k in kinds if k["kind"] == "concat")
        return {"rows": c.height, "kinds": kinds, "concat_share": round(concat / c.height, 4),
                "by_modality": c.group_by(["kind", "modality"]).agg(pl.len().alias("rows"))
                .sort(["kind", "modality"]).to_dicts(),
                "formats": self.manifest("rl-export").get("formats") or {}}

    def decontamination(self) -> dict[str, Any]:
        m = self.manifest("ingest")
        d = self.drops("ingest", ["drop_reason", "source"])
        leaks: list[dict] = []
        if d is not None and d.height:
            leaks = (d.filter(pl.col("drop_reason").str.starts_with("leak:"))
                     .with_columns(pl.col("drop_reason").str.strip_prefix("leak:").alias("benchmark"))
                     .group_by(["benchmark", "source"]).agg(pl.len().alias("rows"))
                     .sort(["benchmark", "source"]).to_dicts())
        heldout = {name: n for name, n in (m.get("outputs") or {}).items()}
        return {"eval_sets": (m.get("decontamination") or {}).get("eval_sets") or {}, "leaks": leaks,
                "heldout": heldout, "exact_duplicates": sum(r["rows"] for r in self.drop_counts("ingest")
                                                            if r["drop_reason"] == "duplicate")}


def meta_of(row: dict) -> dict:
    """A row's ``meta`` JSON as a dict ({} when absent or not JSON)."""
    try:
        value = json.loads(row.get("meta") or "{}")
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
