"""Reasoning statistics of a filtered corpus, in the layout of the GuardReasoner-VL paper's Table 6.

Per modality and overall: samples, reasoning steps, mean steps per sample, mean characters per step.
Also token-length percentiles of the SFT target and the reasoning (tokens = whitespace-separated words,
a model-free measure: real subword counts are higher, roughly 1.3x for English), and keep/drop rates of
the filter per source and per reason (drops per source x reason are in the generic report). Reads the
filter checkpoint part by part (bounded memory).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.store import StageDir

MODALITIES = ("text", "image", "text_image")
PERCENTILES = (50, 90, 95, 99)


def _token_counts(arr: pa.ChunkedArray) -> np.ndarray:
    return pc.list_value_length(pc.utf8_split_whitespace(arr)).to_numpy(zero_copy_only=False).astype(np.int64)


def _percentiles(values: list[np.ndarray]) -> dict[str, Any]:
    v = np.concatenate(values) if values else np.zeros(0, dtype=np.int64)
    if not len(v):
        return {"n": 0, "mean": None, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    out: dict[str, Any] = {"n": int(len(v)), "mean": round(float(v.mean()), 1)}
    for p in PERCENTILES:
        out[f"p{p}"] = int(np.percentile(v, p, method="nearest"))
    out["max"] = int(v.max())
    return out


def reasoning_stats(run_dir: Path | str, stage: str = "filter") -> dict[str, Any]:
    """Figures for ``corpus stats`` (see the module docstring); an empty dict when the stage has no output."""
    sd = StageDir(run_dir, stage)
    kept_parts, drop_parts = sd.parts(), sd.parts("dropped")
    if not kept_parts and not drop_parts:
        return {}
    samples: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    step_chars: Counter[str] = Counter()
    target_tokens: dict[str, list[np.ndarray]] = defaultdict(list)
    reasoning_tokens: dict[str, list[np.ndarray]] = defaultdict(list)
    kept_by_source: Counter[str] = Counter()
    teacher_filled: Counter[str] = Counter()
    for part in kept_parts:
        t = pq.read_table(part, columns=["source", "modality", "steps", "step_count", "reasoning", "sft_target",
                                         "label_origin"])
        mods = t.column("modality").to_pylist()
        counts = t.column("step_count").to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(t.column("steps"))
        lengths = pc.utf8_length(flat).to_numpy(zero_copy_only=False)
        owners = np.repeat(np.arange(t.num_rows), counts)
        per_row_chars = np.bincount(owners, weights=lengths, minlength=t.num_rows) if len(lengths) else \
            np.zeros(t.num_rows)
        tt, rt = _token_counts(t.column("sft_target")), _token_counts(t.column("reasoning"))
        mods_arr = np.array(mods)
        for m in set(mods):
            sel = mods_arr == m
            samples[m] += int(sel.sum())
            steps[m] += int(counts[sel].sum())
            step_chars[m] += int(per_row_chars[sel].sum())
            target_tokens[m].append(tt[sel])
            reasoning_tokens[m].append(rt[sel])
        kept_by_source.update(t.column("source").to_pylist())
        for origin in t.column("label_origin").to_pylist():
            for kind in ("request", "response"):
                if origin and origin.get(kind) == "teacher":
                    teacher_filled[kind] += 1

    order = [m for m in MODALITIES if m in samples] + sorted(m for m in samples if m not in MODALITIES)

    def row(name: str, mods: list[str]) -> dict[str, Any]:
        n, s, c = sum(samples[m] for m in mods), sum(steps[m] for m in mods), sum(step_chars[m] for m in mods)
        return {"modality": name, "samples": n, "steps": s,
                "mean_steps_per_sample": round(s / n, 2) if n else None,
                "mean_chars_per_step": round(c / s, 1) if s else None}

    table6 = [row(m, [m]) for m in order] + [row("overall", order)]
    tokens = []
    for m in [*order, "overall"]:
        mods = order if m == "overall" else [m]
        for field, source in (("sft_target", target_tokens), ("reasoning", reasoning_tokens)):
            tokens.append({"modality": m, "field": field,
                           **_percentiles([a for mm in mods for a in source[mm]])})

    dropped_by: Counter[tuple[str, str]] = Counter()
    for part in drop_parts:
        t = pq.read_table(part, columns=["source", "drop_reason"])
        dropped_by.update(zip(t.column("source").to_pylist(), t.column("drop_reason").to_pylist()))
    dropped_by_source: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for (src, reason), n in dropped_by.items():
        dropped_by_source[src] += n
        by_reason[reason] += n
    keep_rows = []
    for src in sorted(set(kept_by_source) | set(dropped_by_source)):
        k, d = kept_by_source[src], dropped_by_source[src]
        keep_rows.append({"source": src, "rows_in": k + d, "kept": k, "dropped": d,
                          "keep_rate": round(k / (k + d), 4) if k + d else None})
    total_in = sum(kept_by_source.values()) + sum(dropped_by_source.values())
    reason_rows = [{"drop_reason": r, "rows": n, "share_of_input": round(n / total_in, 4) if total_in else None}
                   for r, n in by_reason.most_common()]
    return {
        "table6": table6,
        "token_lengths_whitespace": tokens,
        "keep_drop_by_source": keep_rows,
        "drops_by_reason": reason_rows,
        "teacher_filled_labels": dict(teacher_filled),
    }
