"""Score prediction lines under a protocol and build the report: results, weighted averages, the other
protocol on the same lines, and the published figures when the model is named.

Report (JSON, F1 x 100, not rounded)::

    {"protocol": "guardreasoner",
     "results": [{"benchmark": "AegisSafetyTest", "task": "prompt", "f1": 88.77..., "n": 150, "unparsable": 1}, ...],
     "weighted": {"prompt": ..., "response": ..., "refusal": null},
     "name": "GuardReasoner-8B",
     "other_protocol": {"protocol": "strict", "results": [...], "weighted": {...}},
     "difference": {"results": [{"benchmark", "task", "f1_delta"}], "weighted": {...}},   # this minus other
     "published": {"model": "GuardReasoner 8B", "paper": ..., "results": [{"benchmark", "task", "f1"}],
                   "weighted": {...}}}                                                      # only when named
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from corpus.evaluation.predictions import PredictionsError
from corpus.evaluation.protocols import (
    BENCHMARK_TASKS,
    GOLD_FROM_BENCHMARK,
    GOLD_KEYS,
    PROTOCOLS,
    TASKS,
    Score,
    benchmark_tasks,
    canonical,
    get_protocol,
    weighted,
)
from corpus.evaluation.published import published_f1

_ORDER = {name: i for i, name in enumerate(BENCHMARK_TASKS)}


def tasks_for(benchmark: str, lines: Sequence[dict], given: Mapping[str, Sequence[str]] | None = None) -> tuple:
    """The tasks a benchmark is scored on: given (recipe), known (the scorer's map), else its explicit gold keys."""
    if given and benchmark in given:
        return tuple(given[benchmark])
    known = benchmark_tasks(benchmark)
    if known:
        return known
    present = tuple(t for t in TASKS if any(line.get(GOLD_KEYS[t]) is not None for line in lines))
    if not present:
        raise PredictionsError(f"benchmark {benchmark!r} is not one the scorer knows ({sorted(BENCHMARK_TASKS)}) "
                               "and its lines carry no gold per task: give its tasks (evaluate.benchmarks[].tasks)")
    return present


def score_all(predictions: Mapping[str, Sequence[dict]], protocol: str,
              tasks: Mapping[str, Sequence[str]] | None = None,
              benchmark_gold: Mapping[str, Sequence[dict | None]] | None = None) -> list[Score]:
    """Scores of every benchmark and task, in the scorer's order (task, then benchmark)."""
    proto = get_protocol(protocol)
    scores: list[Score] = []
    for benchmark, lines in predictions.items():
        name = canonical(benchmark)
        gold_rows = (benchmark_gold or {}).get(benchmark) or (benchmark_gold or {}).get(name)
        for task in tasks_for(benchmark, lines, tasks):
            if name in GOLD_FROM_BENCHMARK and lines and GOLD_KEYS[task] not in lines[0]:
                if gold_rows is None:
                    raise PredictionsError(
                        f"{benchmark}: its gold labels come from the benchmark rows (the released scorer reads "
                        f"them from the benchmark file): list {name} in ingest.decontaminate.eval_sets or "
                        "evaluate.benchmarks")
                if len(gold_rows) != len(lines):
                    raise PredictionsError(f"{benchmark}: {len(lines)} prediction lines but {len(gold_rows)} "
                                           "benchmark rows; they must match row for row")
            scores.append(proto.score(lines, name, task, gold_rows))
    return sorted(scores, key=lambda s: (TASKS.index(s.task), _ORDER.get(s.benchmark, len(_ORDER)), s.benchmark))


def _results(scores: Sequence[Score]) -> list[dict[str, Any]]:
    return [s.as_result() for s in scores]


def build_report(predictions: Mapping[str, Sequence[dict]], protocol: str, *, name: str | None = None,
                 tasks: Mapping[str, Sequence[str]] | None = None,
                 benchmark_gold: Mapping[str, Sequence[dict | None]] | None = None,
                 published: tuple[str, dict] | None = None) -> dict[str, Any]:
    """The report of one set of prediction lines (see the module docstring)."""
    other = next(p for p in PROTOCOLS if p != protocol)
    mine = score_all(predictions, protocol, tasks, benchmark_gold)
    theirs = score_all(predictions, other, tasks, benchmark_gold)
    w_mine, w_theirs = weighted(mine), weighted(theirs)
    report: dict[str, Any] = {
        "protocol": protocol,
        "results": _results(mine),
        "weighted": w_mine,
        "name": name,
        "other_protocol": {"protocol": other, "results": _results(theirs), "weighted": w_theirs},
        "difference": {
            "results": [{"benchmark": a.benchmark, "task": a.task, "f1_delta": a.f1 - b.f1}
                        for a, b in zip(mine, theirs)],
            "weighted": {t: _minus(w_mine[t], w_theirs[t]) for t in TASKS},
        },
        "details": [{"benchmark": s.benchmark, "task": s.task, "pairs": s.pairs, "skipped_no_gold": s.skipped,
                     "dropped_unparsable": s.dropped} for s in mine],
    }
    if published is not None:
        model, entry = published
        report["published"] = {
            "model": model, "paper": entry.get("paper"), "size": entry.get("size"),
            "results": [{"benchmark": s.benchmark, "task": s.task, "f1": published_f1(entry, s.benchmark, s.task)}
                        for s in mine],
            "weighted": {t: _published_weighted(entry, mine, t) for t in TASKS},
        }
    return report


def _published_weighted(entry: dict, scores: Sequence[Score], task: str) -> float | None:
    """The paper's weighted average of a task, only when our benchmarks of that task are exactly the paper's."""
    ours = {s.benchmark for s in scores if s.task == task}
    theirs = set((entry.get("results") or {}).get(task) or {})
    return (entry.get("weighted") or {}).get(task) if ours and ours == theirs else None


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}".replace("-0.00", "0.00")


def render(report: Mapping[str, Any]) -> str:
    """The report as a plain-text table (2 decimals), weighted averages per task after each task's rows."""
    proto, other = report["protocol"], report["other_protocol"]["protocol"]
    pub = report.get("published")
    head = f"{report.get('name') or 'predictions'}: protocol {proto} (beside it: {other})"
    if pub:
        head += f"; published: {pub['model']} ({pub.get('paper') or '?'}" + (
            f", size {pub['size']})" if pub.get("size") else ")")
    cols = ["task", "benchmark", "n", f"unparsable {proto}", f"F1 {proto}", f"unparsable {other}", f"F1 {other}",
            f"{proto}-{other}"]
    if pub:
        cols += ["published", "ours-published"]
    rows: list[list[str]] = []
    others = report["other_protocol"]["results"]
    pubs = pub["results"] if pub else [None] * len(report["results"])
    for task in TASKS:
        entries = [(r, o, p) for r, o, p in zip(report["results"], others, pubs) if r["task"] == task]
        if not entries:
            continue
        for r, o, p in entries:
            row = [task, r["benchmark"], str(r["n"]), str(r["unparsable"]), _f(r["f1"]), str(o["unparsable"]),
                   _f(o["f1"]), _f(r["f1"] - o["f1"])]
            if pub:
                row += [_f(p["f1"]), _f(_minus(r["f1"], p["f1"]))]
            rows.append(row)
        w, wo = report["weighted"][task], report["other_protocol"]["weighted"][task]
        row = [task, "weighted avg", str(sum(r["n"] for r, _, _ in entries)), "", _f(w), "", _f(wo),
               _f(_minus(w, wo))]
        if pub:
            wp = pub["weighted"].get(task)
            row += [_f(wp), _f(_minus(w, wp))]
        rows.append(row)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
