"""``corpus report RUN``: one self-contained static HTML page about a run (inline PNG plots, inline
thumbnails, no network at view time). Drop reasons open (``<details>``) to show example rows."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from corpus.report import plots
from corpus.report.run_data import MODALITIES, RunData

EXAMPLES_PER_REASON = 5
BROWSER_ROWS = 8
THUMB_PX = 96
TEXT_CUT = 600

CSS = """
body{font-family:system-ui,sans-serif;margin:0 2em 3em;color:#222;max-width:1400px}
h1{margin-top:.6em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}
th{background:#f3f3f3} td.num{text-align:right} .plots{display:flex;flex-wrap:wrap;gap:1em}
img.plot{max-width:100%;border:1px solid #eee} img.thumb{width:96px;margin:2px;border:1px solid #ccc}
details{margin:.2em 0} summary{cursor:pointer;color:#0645ad}
pre{white-space:pre-wrap;max-width:70em;margin:0;font-size:12px}
.muted{color:#777} .warn{color:#a40}
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot'); var ok = 0;
  imgs.forEach(function (i) { if (i.complete && i.naturalWidth > 0) { ok += 1; } });
  document.body.setAttribute('data-plots-loaded', String(ok));
  document.body.setAttribute('data-plots-total', String(imgs.length));
});
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def cut(text: Any, n: int = TEXT_CUT) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[:n] + f"… [{len(s) - n} more characters]"


def table(rows: list[dict[str, Any]], cols: list[str] | None = None) -> str:
    if not rows:
        return '<p class="muted">(none)</p>'
    cols = cols or list(rows[0].keys())
    head = "".join(f"<th>{esc(c)}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, (dict, list)):
                v = json.dumps(v, default=str)
            cls = ' class="num"' if isinstance(r.get(c), (int, float)) else ""
            cells.append(f"<td{cls}>{esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def plot(uri: str, alt: str) -> str:
    return f'<img class="plot" alt="{esc(alt)}" src="{uri}">'


def thumbnail(run_dir: Path, rel: str) -> str:
    """An inline JPEG thumbnail of a stored image, or a note when it cannot be read."""
    from PIL import Image

    path = run_dir / rel
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except (OSError, ValueError) as exc:
        return f'<span class="warn">[image {esc(rel)}: {esc(exc)}]</span>'
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="thumb" alt="{esc(rel)}" src="{uri}">'


def row_card(run_dir: Path, row: dict[str, Any]) -> str:
    """One row of the sample browser: thumbnails, prompt, response, labels, reasoning, drop reason."""
    thumbs = "".join(thumbnail(run_dir, im["path"]) for im in (row.get("images") or []) if im and im.get("path"))
    fields = [("id", row.get("id")), ("source", f"{row.get('source')} / {row.get('source_id')}"),
              ("modality", row.get("modality")),
              ("labels", f"request={row.get('request_label')} response={row.get('response_label')} "
                         f"origin={json.dumps(row.get('label_origin'))}")]
    if row.get("drop_reason"):
        fields.append(("dropped", f"{row['drop_reason']}: {row.get('detail') or ''}"))
    for key in ("teacher_request", "teacher_response"):
        if row.get(key) is not None:
            fields.append((key, row[key]))
    if row.get("kind"):
        fields.append(("kind", f"{row['kind']} members={row.get('members')}"))
    if row.get("n_right") is not None:
        fields.append(("sampling", f"{row['n_right']}/{row.get('k')} right, hard={row.get('hard')}"))
    text = [("prompt", row.get("prompt")), ("response", row.get("response")),
            ("reasoning", row.get("reasoning") or row.get("teacher_output")), ("record", row.get("record"))]
    parts = [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in fields]
    parts += [f"<tr><th>{esc(k)}</th><td><pre>{esc(cut(v))}</pre></td></tr>" for k, v in text if v is not None]
    if thumbs:
        parts.insert(0, f"<tr><th>images</th><td>{thumbs}</td></tr>")
    return f"<table class=\"row\">{''.join(parts)}</table>"


def examples(data: RunData, stage: str, output: str | None, where: pl.Expr, extra: dict | None = None) -> str:
    """Row cards of the first rows of a stage output matching ``where``."""
    rows = data.find(stage, output, where, EXAMPLES_PER_REASON)
    return "".join(row_card(data.run_dir, {**r, **(extra or {})}) for r in rows)


class Report:
    """Builds the page section by section from a :class:`RunData`."""

    def __init__(self, run_dir: Path | str, browser_rows: int = BROWSER_ROWS):
        self.data = RunData(run_dir)
        self.run_dir = self.data.run_dir
        self.browser_rows = browser_rows
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, html)

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    # -- sections ----------------------------------------------------------------------------------
    def composition(self) -> None:
        d = self.data
        body = []
        stages = [(s, o) for s, o in (("ingest", None), ("filter", None), ("concat", None)) if d.rows(s, o)]
        for stage, output in stages:
            f = d.frame(stage, output, ["source", "modality"])
            f = f.with_columns(pl.when(pl.col("source").str.contains("+", literal=True))
                               .then(pl.lit("(concatenated)")).otherwise(pl.col("source")).alias("source"))
            by = f.group_by(["source", "modality"]).agg(pl.len().alias("rows")).sort("source")
            sources = sorted(by["source"].unique().to_list())
            series = {m: [int(by.filter((pl.col("source") == s) & (pl.col("modality") == m))["rows"].sum())
                          for s in sources] for m in MODALITIES}
            body.append(plot(plots.stacked(sources, series, f"{stage}: rows per source × modality"),
                             f"composition {stage}"))
        body = ['<div class="plots">' + "".join(body) + "</div>"]
        for stage, output in stages:
            body.append(f"<details><summary>{esc(stage)}: rows by source × modality × label</summary>"
                        f"{table(d.composition(stage, output))}</details>")
        self.add("composition", "Composition", "".join(body))

    def funnel(self) -> None:
        steps = self.data.funnel
        if not steps:
            return
        body = [plot(plots.hbar([s["step"] for s in steps], [s["rows"] for s in steps], "Rows from seed to RL set"),
                     "funnel")]
        body.append(table([{"step": s["step"], "stage": s["stage"], "rows": s["rows"],
                            "dropped": sum(r["rows"] for r in s.get("dropped") or []),
                            "held out": s.get("heldout", "")} for s in steps]))
        for s in steps:
            drops = s.get("dropped") or []
            if not drops:
                continue
            stage = s["stage"]
            items = []
            for r in drops:
                reason = r["drop_reason"]
                if stage == "synthesize":
                    rows = examples(self.data, stage, None, pl.col("teacher_status") == reason,
                                    {"drop_reason": reason})
                elif stage == "sample" and reason == "not_hard":
                    rows = examples(self.data, stage, None, ~pl.col("hard"), {"drop_reason": reason})
                else:
                    rows = examples(self.data, stage, "dropped", pl.col("drop_reason") == reason)
                items.append(f"<details><summary>{esc(reason)}: {r['rows']} rows</summary>{rows}</details>")
            items = "".join(items)
            body.append(f"<h3>{esc(s['step'])} ({esc(stage)}): drop reasons</h3>{items}")
        self.add("funnel", "Funnel and drop reasons", "".join(body))

    def table6(self) -> None:
        f = self.data.reasoning_lengths()
        if f is None:
            return
        rows = self.data.table6()
        steps = {m: f.filter(pl.col("modality") == m)["step_count"].to_list() for m in MODALITIES}
        chars = {m: f.filter(pl.col("modality") == m)["chars"].to_list() for m in MODALITIES}
        body = (table(rows) + '<p class="muted">Paper: GuardReasoner-VL Table 6 (samples, steps); characters per '
                'step are not published.</p><div class="plots">'
                + plot(plots.histograms(steps, "Reasoning steps per sample", "steps"), "steps histogram")
                + plot(plots.histograms(chars, "Reasoning length per sample", "characters"), "length histogram")
                + "</div>")
        self.add("table6", "Reasoning statistics (Table 6)", body)

    def decontamination(self) -> None:
        dc = self.data.decontamination()
        body = ["<h3>Eval sets indexed</h3>",
                table([{"eval_set": k, **v} for k, v in dc["eval_sets"].items()]),
                "<h3>Leaks dropped, per benchmark and source</h3>", table(dc["leaks"]),
                "<h3>Held-out splits</h3>", table([{"split": k, "rows": v} for k, v in dc["heldout"].items()]),
                f"<p>Exact duplicates dropped at ingest: {dc['exact_duplicates']}</p>"]
        if dc["leaks"]:
            by_bench: dict[str, int] = {}
            for r in dc["leaks"]:
                by_bench[r["benchmark"]] = by_bench.get(r["benchmark"], 0) + r["rows"]
            body.insert(0, plot(plots.bars(list(by_bench), list(by_bench.values()), "Leaks per benchmark", "rows"),
                                "leaks"))
        neardup = self.neardup_figures()
        if neardup:
            body.append(neardup)
        self.add("decontamination", "Decontamination and duplicates", "".join(body))

    def neardup_figures(self) -> str:
        from corpus.report.neardup import near_duplicate_report

        try:
            rep = near_duplicate_report(self.run_dir)
        except ImportError:  # rensa (the `report` extra) is not installed
            return '<p class="muted">Near-duplicates: install the `report` extra (rensa).</p>'

        if rep is None:
            return ""
        return (f"<h3>Near-duplicate text (MinHash LSH, Jaccard ≥ {rep['threshold']}, {rep['shingle']}-word "
                f"shingles)</h3><p>{rep['duplicates']} of {rep['rows']} ingested text rows have an earlier "
                f"near-duplicate ({rep['seconds']} s).</p>" + table(rep["by_source"]) +
                "<details><summary>pairs</summary>" + table(rep["pairs"][:50]) + "</details>")

    def teacher(self) -> None:
        t = self.data.teacher()
        if not t.get("model"):
            return
        summary = [{"model": t["model"], "mode": t["mode"], "prompt_tokens": t["prompt_tokens"],
                    "completion_tokens": t["completion_tokens"], "cost_usd": t["cost_usd"],
                    "price_per_1m": t["price_per_1m"]}]
        by_source = t.get("by_source") or []
        body = [table(summary)]
        if by_source:
            body.append(plot(plots.stacked([r["source"] for r in by_source],
                                           {"prompt": [r["prompt_tokens"] for r in by_source],
                                            "completion": [r["completion_tokens"] for r in by_source]},
                                           "Teacher tokens per source", "tokens"), "teacher tokens"))
            body.append(table(by_source))
        body += ["<h3>Failures by cause</h3>", table(t.get("failures_by_cause") or []),
                 "<h3>Latency and throughput (last attempt)</h3>", table([t["latency"]] if t["latency"] else [])]
        self.add("teacher", "Teacher", "".join(body))

    def sampling(self) -> None:
        s = self.data.sampling()
        if not s:
            return
        labels = [f"{r['n_right']}/{r['k']}" for r in s["n_right"]]
        body = ['<div class="plots">',
                plot(plots.bars(labels, [r["rows"] for r in s["n_right"]], "Right answers out of k", "rows"),
                     "right of k"),
                plot(plots.bars([r["source"] for r in s["hard_by_source"]],
                                [r["hard_rate"] for r in s["hard_by_source"]], "Hard rate per source", "hard rate",
                                ylim=1.05), "hard rate"),
                "</div>", f"<p>Hard rule: {esc(s['rule'])}</p>", table(s["hard_by_source"])]
        self.add("sampling", "Rejection sampling", "".join(body))

    def rl(self) -> None:
        r = self.data.rl()
        if not r:
            return
        kinds = sorted({x["kind"] for x in r["by_modality"]})
        series = {m: [sum(x["rows"] for x in r["by_modality"] if x["kind"] == k and x["modality"] == m)
                      for k in kinds] for m in MODALITIES}
        body = [plot(plots.stacked(kinds, series, "RL set: kind × modality"), "rl composition"),
                f"<p>{r['rows']} rows; concatenated share {r['concat_share']:.1%}</p>", table(r["by_modality"]),
                "<h3>Exported formats</h3>", table([{"format": k, **v} for k, v in r["formats"].items()])]
        self.add("rl", "RL set", "".join(body))

    def label_audit(self) -> None:
        from corpus.report.audit import audit_summary

        s = audit_summary(self.run_dir)
        if not s:
            self.add("label-audit", "Label-noise audit", '<p class="muted">Not run yet: <code>corpus audit-labels '
                     f'{esc(self.run_dir)} RECIPE</code> re-asks the teacher blind on the label-mismatch drops.</p>')
            return
        body = [f"<p>{s['audited']} rows the filter dropped for a label mismatch were re-asked blind; "
                f"{s['answered']} answered, {s['suspected']} are suspected label noise (the blind teacher also "
                f"disagrees with the gold). Teacher {esc(s['teacher'])} ({esc(s['mode'])}).</p>"]
        if s["answered"]:
            body.append(plot(plots.bars([r["source"] for r in s["by_source"]],
                                        [r["suspected_rate"] or 0.0 for r in s["by_source"]],
                                        "Suspected label noise rate per source", "rate", ylim=1.05), "label noise"))
        body += ["<h3>Per source</h3>", table(s["by_source"]), "<h3>Per category</h3>", table(s["by_category"]),
                 f"<p>Review file: <code>{esc(s['review_file'])}</code></p>"]
        self.add("label-audit", "Label-noise audit", "".join(body))

    def browser(self) -> None:
        d = self.data
        body = []
        views = [("ingest", None, "kept"), ("ingest", "dropped", "dropped"), ("filter", None, "kept"),
                 ("filter", "dropped", "dropped"), ("sample", None, "kept"), ("concat", None, "kept")]
        for stage, output, what in views:
            total = d.rows(stage, output)
            if not total:
                continue
            n = self.browser_rows
            if stage == "concat":  # concatenated rows first
                rows = d.find(stage, output, pl.col("kind") == "concat", n)
                rows += d.find(stage, output, pl.col("kind") != "concat", n - len(rows)) if len(rows) < n else []
            else:
                rows = d.find(stage, output, pl.lit(True), n)
            cards = "".join(row_card(self.run_dir, r) for r in rows)
            body.append(f"<details><summary>{esc(stage)} — {what}: first {len(rows)} of {total} rows</summary>"
                        f"{cards}</details>")
        self.add("browser", "Sample browser", "".join(body))

    # -- page ------------------------------------------------------------------------------------
    def build(self) -> str:
        for section in (self.composition, self.funnel, self.table6, self.decontamination, self.teacher,
                        self.sampling, self.rl, self.label_audit, self.browser):
            section()
        nav = " · ".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _ in self.sections)
        secs = "".join(f'<section id="{a}"><h2>{esc(t)}</h2>{b}</section>' for a, t, b in self.sections)
        stages = ", ".join(self.data.stages())
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Corpus report: '
                f"{esc(self.run_dir.name)}</title><style>{CSS}</style></head><body>"
                f"<h1>Corpus report</h1><p>Run <code>{esc(self.run_dir)}</code>; stages: {esc(stages)}</p>"
                f"<nav>{nav}</nav>{secs}<script>{SCRIPT}</script></body></html>")


def write_report(run_dir: Path | str, browser_rows: int = BROWSER_ROWS) -> Path:
    """Write ``RUN/report/index.html`` (and the dataset card next to it); return the page's path."""
    rep = Report(run_dir, browser_rows)
    out = rep.run_dir / "report"
    out.mkdir(exist_ok=True)
    page = out / "index.html"
    page.write_text(rep.build(), encoding="utf-8")
    from corpus.report.card import write_card

    write_card(rep.run_dir)
    return page
