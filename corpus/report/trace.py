"""``corpus trace RUN ID``: the provenance chain of one row of any stage.

source file and row (or hub id, split) → ingest id and decision → teacher request key, model, tokens,
cost → filter decision → export → sampled answers → RL rows it is in (hard or concatenated, with the
members) → the exported RL rows. ID is a row id of any stage (an RL concatenation id is traced through
each member) or, failing that, a seed ``source_id`` (every row of that id is listed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from corpus.report.card import recipe_record
from corpus.report.run_data import RunData

LABELS = ["modality", "request_label", "response_label", "label_origin"]


def _one(data: RunData, stage: str, output: str | None, row_id: str) -> dict | None:
    hits = data.find(stage, output, pl.col("id") == row_id, 1)
    return hits[0] if hits else None


def _pick(row: dict, keys: list[str]) -> dict:
    return {k: row.get(k) for k in keys if k in row}


class Tracer:
    def __init__(self, run_dir: Path | str):
        self.data = RunData(run_dir)
        rec = recipe_record(self.data.run_dir) or {}
        self.specs = {s["name"]: s for s in rec.get("recipe", {}).get("ingest", {}).get("sources") or []}

    def source_step(self, row: dict) -> dict:
        spec = self.specs.get(row.get("source"), {})
        out = {"source": row.get("source"), "split": row.get("source_split"), "source_id": row.get("source_id"),
               "adapter": spec.get("adapter"), "hub": spec.get("hub"), "path": spec.get("path"),
               "member": spec.get("member")}
        if row.get("record"):
            out["record"] = row["record"]
        return {k: v for k, v in out.items() if v is not None}

    def chain(self, row_id: str) -> dict[str, Any]:
        """The chain of one sample id (an ingested or dropped row)."""
        d = self.data
        out: dict[str, Any] = {"id": row_id}
        base = None
        heldout = d.manifest("ingest").get("heldout_output")
        for output, status in ((None, "kept"), (heldout, "heldout"), ("dropped", "dropped")):
            if status == "heldout" and not heldout:
                continue
            base = _one(d, "ingest", output, row_id)
            if base is not None:
                out["ingest"] = {"status": status, **_pick(base, LABELS + ["drop_reason", "detail"])}
                break
        syn = _one(d, "synthesize", None, row_id)
        base = base or syn
        if base is None:
            return out
        out["source"] = self.source_step(base)
        if syn is not None:
            out["synthesize"] = _pick(syn, ["request_key", "teacher_model", "teacher_status", "teacher_error",
                                            "prompt_tokens", "completion_tokens", "cost_usd"])
        kept = _one(d, "filter", None, row_id)
        if kept is not None:
            out["filter"] = {"status": "kept", **_pick(kept, ["step_count", "request_label", "response_label",
                                                              "label_origin"])}
        else:
            dropped = _one(d, "filter", "dropped", row_id)
            if dropped is not None:
                out["filter"] = {"status": "dropped", **_pick(dropped, ["drop_reason", "detail", "teacher_request",
                                                                         "teacher_response"])}
        exp = _one(d, "export", None, row_id)
        if exp is not None:
            out["export"] = _pick(exp, ["step_count", "target_chars", "n_images"])
        smp = _one(d, "sample", None, row_id)
        if smp is not None:
            answers = [_pick(r, ["request", "response", "correct"]) for r in smp.get("rollouts") or []]
            out["sample"] = {**_pick(smp, ["k", "n_right", "hard"]), "answers": answers}
        rl_rows = self._rl_rows_with(row_id)
        if rl_rows:
            out["rl"] = rl_rows
        return out

    def _rl_rows_with(self, row_id: str) -> list[dict]:
        hits = self.data.find("concat", None, (pl.col("id") == row_id) | pl.col("members").list.contains(row_id))
        rows = []
        for r in hits:
            rows.append({"id": r["id"], "kind": r["kind"], "members": r.get("members") or [],
                         "exported": self._exported(r["id"])})
        return rows

    def _exported(self, rl_id: str) -> list[dict]:
        out = []
        for fmt, info in (self.data.manifest("rl-export").get("formats") or {}).items():
            path = self.data.run_dir / "rl-export" / info["path"]
            if path.suffix != ".parquet" or not path.exists():
                continue
            lazy = pl.scan_parquet(path)  # only the matching rows are materialised
            names = lazy.collect_schema().names()
            if "id" in names:
                hit = lazy.filter(pl.col("id") == rl_id).collect()
            elif "extra_info" in names:
                hit = lazy.filter(pl.col("extra_info").struct.field("id") == rl_id).collect()
            else:
                continue
            for r in hit.to_dicts():
                out.append({"format": fmt, "file": f"rl-export/{info['path']}",
                            "answer": r.get("answer") or (r.get("reward_model") or {}).get("ground_truth")})
        return out

    def trace(self, ident: str) -> dict[str, Any]:
        """The chain of ``ident``; raise KeyError when no stage has a row of that id or source_id."""
        d = self.data
        concat = _one(d, "concat", None, ident)
        if concat is not None and concat.get("kind") == "concat":
            return {"id": ident, "kind": "concat", "members": [self.chain(m) for m in concat["members"]],
                    "rl": self._rl_rows_with(ident)}
        found = self.chain(ident)
        if len(found) > 1:
            return found
        ids: list[str] = []
        unkeyed: list[dict] = []
        heldout = d.manifest("ingest").get("heldout_output")
        for output in [None, *([heldout] if heldout else []), "dropped"]:
            for r in d.find("ingest", output, pl.col("source_id") == ident):
                (ids if r.get("id") else unkeyed).append(r.get("id") or r)
        if not ids and not unkeyed:
            raise KeyError(f"no row with id or source_id {ident!r} in {d.run_dir}")
        chains = [self.chain(i) for i in dict.fromkeys(ids)]
        chains += [{"id": None, "source": self.source_step(r), "ingest": {"status": "dropped",
                                                                         **_pick(r, ["drop_reason", "detail"])}}
                   for r in unkeyed]
        return {"source_id": ident, "rows": chains}


def render(doc: dict[str, Any], indent: str = "") -> str:
    """The chain as indented text, one step per block."""
    lines: list[str] = []
    if "rows" in doc:
        lines.append(f"{indent}source_id {doc['source_id']}: {len(doc['rows'])} row(s)")
        for r in doc["rows"]:
            lines.append(render(r, indent + "  "))
        return "\n".join(lines)
    if doc.get("kind") == "concat" and "members" in doc:
        lines.append(f"{indent}RL row {doc['id']} (concatenation of {len(doc['members'])} members)")
        for m in doc["members"]:
            lines.append(render(m, indent + "  "))
        lines += _rl_lines(doc.get("rl") or [], indent)
        return "\n".join(lines)
    lines.append(f"{indent}row {doc.get('id')}")
    for step in ("source", "ingest", "synthesize", "filter", "export", "sample"):
        if step in doc:
            body = ", ".join(f"{k}={_short(v)}" for k, v in doc[step].items())
            lines.append(f"{indent}  -> {step}: {body}")
    lines += _rl_lines(doc.get("rl") or [], indent)
    return "\n".join(lines)


def _rl_lines(rows: list[dict], indent: str) -> list[str]:
    out = []
    for r in rows:
        out.append(f"{indent}  -> rl: {r['kind']} row {r['id']} members={r['members']}")
        for e in r["exported"]:
            out.append(f"{indent}     -> {e['format']}: {e['file']} answer={_short(e['answer'])}")
    return out


def _short(v: Any, n: int = 160) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[:n] + "…"
