"""The dataset card: ``RUN/report/README.md`` in the Hugging Face dataset-card format, generated from the run.

YAML header (licence, task categories, size category, one config per SFT/RL file) and sections: sources
with their licences and hub ids, composition, Table 6, teacher and cost, recipe and its hash, drop reasons,
the label mappings (unverified ones marked) and known limits. Licences propagate (licences.py): one
non-commercial source makes the corpus non-commercial; a source without a known licence is flagged.
The data file paths are relative to the run directory: publish the run directory with this card as its
README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from corpus.report.licences import corpus_licence, licence_of
from corpus.report.run_data import RunData

SIZE_BOUNDS = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]


def size_category(n: int) -> str:
    return next((label for bound, label in SIZE_BOUNDS if n < bound), "1M<n<10M")


def recipe_record(run_dir: Path) -> dict | None:
    """``RUN/_recipe.json`` (written by every ``corpus`` stage command), or None."""
    p = Path(run_dir) / "_recipe.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None


def md_table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> str:
    if not rows:
        return "(none)\n"
    cols = cols or list(rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            v = json.dumps(v, default=str) if isinstance(v, (dict, list)) else ("" if v is None else str(v))
            cells.append(v.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def source_rows(data: RunData, recipe: dict | None) -> list[dict[str, Any]]:
    """One row per source of the run: adapter, hub id or path, licence, rows at ingest and in the SFT set."""
    specs = {s["name"]: s for s in ((recipe or {}).get("recipe", {}).get("ingest", {}).get("sources") or [])}
    ingest, filt = data.frame("ingest", columns=["source"]), data.frame("filter", columns=["source"])
    names = sorted(set(specs) | set(ingest["source"].unique().to_list() if ingest is not None else []))
    rows = []
    for name in names:
        spec = specs.get(name, {})
        if spec and not spec.get("enabled", True):
            continue
        lic = licence_of(spec.get("adapter", ""), spec.get("hub"))
        rows.append({
            "source": name, "adapter": spec.get("adapter", "?"), "hub_id": spec.get("hub") or lic.hub,
            "read_from": spec.get("hub") or spec.get("path"), "licence": lic.licence or "UNKNOWN",
            "ingested": 0 if ingest is None else ingest.filter(ingest["source"] == name).height,
            "sft_rows": 0 if filt is None else filt.filter(filt["source"] == name).height,
            "label_mapping": lic.mapping + (" (unverified)" if lic.unverified else ""),
            "note": lic.note, "_licence": lic.licence,
        })
    return rows


def build_card(run_dir: Path | str) -> str:
    data = RunData(run_dir)
    recipe = recipe_record(data.run_dir)
    sources = source_rows(data, recipe)
    licence, non_commercial, warnings = corpus_licence([s["_licence"] for s in sources if s["ingested"]])
    n_sft, n_rl = data.rows("filter"), data.rows("concat")
    configs = []
    if data.manifest("export").get("exports", {}).get("trl"):
        configs.append({"config_name": "sft", "default": True,
                        "data_files": [{"split": "train", "path": "export/trl/train.jsonl"}]})
    if (data.manifest("rl-export").get("formats") or {}).get("trl"):
        configs.append({"config_name": "rl", "data_files": [{"split": "train", "path": "rl-export/trl/train.parquet"}]})
    name = (recipe or {}).get("recipe", {}).get("name") or data.run_dir.name
    header = {
        "license": licence,
        "pretty_name": f"GuardReasoner-VL reasoning corpus ({name})",
        "language": ["en"],
        "task_categories": ["text-classification", "image-text-to-text"],
        "tags": ["safety", "guardrail", "reasoning", "content-moderation"],
        "size_categories": [size_category(max(n_sft, n_rl))],
        "configs": configs,
    }
    t = data.teacher()
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
             f"# {header['pretty_name']}", "",
             f"Built by guardreasoner-corpus from run `{data.run_dir}`: {n_sft} SFT rows with step-by-step "
             f"reasoning, {n_rl} RL rows. Data file paths are relative to the run directory.", "",
             "## Licence", ""]
    if non_commercial:
        nc = sorted({s["source"] for s in sources if s["_licence"] and s["_licence"].startswith("cc-by-nc")})
        lines.append(f"**Non-commercial.** Rows derived from {', '.join(nc)} are licensed {licence.upper()}, so "
                     "the corpus as a whole may not be used commercially. Each row keeps its `source`; dropping "
                     "those sources lifts this restriction only if every remaining source allows it.")
    else:
        lines.append(f"Licence: {licence}. Every source's own terms apply to its rows (see Sources).")
    for w in warnings:
        unknown = ", ".join(s["source"] for s in sources if not s["_licence"] and s["ingested"])
        lines.append(f"\n**Warning:** {w} ({unknown}).")
    lines += ["", "## Sources", "", md_table(sources, ["source", "adapter", "hub_id", "licence", "ingested",
                                                        "sft_rows", "note"])]
    lines += ["## Composition", "", "Rows of the SFT set by source × modality × label:", "",
              md_table(data.composition("filter")), "Funnel:", "",
              md_table([{"step": s["step"], "rows": s["rows"]} for s in data.funnel])]
    lines += ["## Reasoning statistics (paper Table 6 layout)", "", md_table(data.table6())]
    lines += ["## Teacher", "", md_table([{"model": t.get("model"), "mode": t.get("mode"),
                                           "prompt_tokens": t.get("prompt_tokens"),
                                           "completion_tokens": t.get("completion_tokens"),
                                           "cost_usd": t.get("cost_usd"), "price_per_1m": t.get("price_per_1m")}])]
    stage_hashes = [{"stage": s, "config_hash": data.manifest(s).get("config_hash"),
                     "output_fingerprint": data.manifest(s).get("output_fingerprint")} for s in data.stages()]
    lines += ["## Recipe", ""]
    if recipe:
        lines.append(f"Recipe `{recipe['path']}` (`{name}`), sha256 of its validated content `{recipe['sha256']}`.")
    else:
        lines.append("**Recipe unknown**: the run directory has no `_recipe.json`.")
    lines += ["", md_table(stage_hashes)]
    drops = []
    for stage in data.stages():
        drops += [{"stage": stage, **r} for r in data.drop_counts(stage)]
    lines += ["## Drop reasons", "", md_table(drops)]
    lines += ["## Label mappings", "", "How each source's labels became the guard's request/response labels. "
              "Mappings marked (unverified) are assumptions not confirmed by a primary source; rows whose "
              "label the teacher filled have `label_origin: teacher`, reviewed labels `label_origin: reviewed`.", "",
              md_table(sources, ["source", "label_mapping"])]
    limits = ["Labels come from the seed datasets and are only as good as them; see the label-noise audit "
              "(`corpus audit-labels`).",
              "Reasoning was written by a teacher model given the gold labels; rows where it disagreed were dropped."]
    if t.get("mode") == "replay":
        limits.append("The teacher ran in replay mode: answers and token counts come from a shipped cache "
                      "(recorded GuardReasoner-8B reasoning for text rows, templated answers elsewhere); its "
                      "usage figures are estimates, not billed tokens.")
    if any(s["label_mapping"].endswith("(unverified)") and s["ingested"] for s in sources):
        limits.append("Some label mappings are unverified (see Label mappings).")
    lines += ["## Known limits", ""] + [f"- {x}" for x in limits] + [""]
    return "\n".join(lines)


def write_card(run_dir: Path | str) -> Path:
    out = Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "README.md"
    path.write_text(build_card(run_dir), encoding="utf-8")
    return path
