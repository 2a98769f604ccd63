"""Stage ``evaluate``: the guard answers the benchmarks greedily, and its answers (and any prediction folders
the recipe lists) are scored in the authors' protocol and the strict one, beside the published figures.

Generation (``evaluate.model``, default ``auto`` = the trained RL checkpoint, else the SFT one): the rows of
each benchmark in ``evaluate.benchmarks`` (read by the eval-set adapters, see
:mod:`corpus.evaluation.benchmarks`) get the guard input of :func:`corpus.guard_format.guard_messages` and one
greedy answer from the sampling backend (transformers, openai-compatible server, vLLM). Rows go in units of
``unit_rows`` per benchmark, each unit's Parquet part is its commit, so a killed run resumes at the first
unfinished unit. The answers are written in GuardReasoner's layout,
``<run>/evaluate/predictions/<Benchmark>/generated_predictions.jsonl``, and scored from there.

Output: ``<run>/evaluate/results.json`` (``{"reports": [...]}``, one report per model or prediction folder,
see :mod:`corpus.evaluation.report`), ``results.txt`` (the tables) and the manifest (with the reports).
Dropped rows: records the adapter cannot use, unreadable images, rows without a gold label for any task of
the benchmark (``no_label``) and rows the backend could not answer (``generation_failed``).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from corpus.evaluation.benchmarks import BenchRow, gold_rows, load_benchmark, load_heldout
from corpus.evaluation.predictions import PREDICTIONS_FILE, prediction_files, read_predictions, write_predictions
from corpus.evaluation.protocols import GOLD_KEYS, benchmark_tasks, canonical
from corpus.evaluation.published import find_published, require_published
from corpus.evaluation.report import build_report, render
from corpus.guard_format import guard_messages
from corpus.sampling.base import GenerationRequest, SamplingParams
from corpus.schema import load_schema
from corpus.store import MANIFEST, StageDir, StageWriter, file_sha256, stable_hash, write_json_atomic

if TYPE_CHECKING:
    from corpus.evaluation.config import EvaluateConfig
    from corpus.recipe import Recipe, SourceSpec
    from corpus.sampling.base import Backend

HELP = (
    "Evaluate a guard: greedy answers of the model (default: the trained RL checkpoint) on the recipe's benchmarks "
    "(GuardReasoner's text sets, WildGuardTest, the VL test sets), written as <run>/evaluate/predictions/"
    "<Benchmark>/generated_predictions.jsonl, and F1 per benchmark and task in the released GuardReasoner "
    "scorer's protocol and the strict one, beside the published figures. Also scores prediction folders."
)
STAGE = "evaluate"
PREDICTIONS_DIR = "predictions"
SCORES_DIR = "scores"
RESULTS_JSON = "results.json"
RESULTS_TEXT = "results.txt"
MODEL_STAGES = {"rl": "train-rl", "sft": "train-sft"}
log = logging.getLogger(__name__)


def evaluated_schema():
    return load_schema("evaluated")


# ---------------------------------------------------------------- model


def resolve_model(cfg: EvaluateConfig, run_dir: Path, recipe: Recipe) -> tuple[str, Any]:
    """``(what the backend loads, identity hashed into the config)``."""
    spec = cfg.model
    if cfg.backend == "openai":
        if spec in ("auto", "tiny", "rl", "sft"):
            raise ValueError(f"evaluate.model: with backend openai, give the name the server serves (got {spec!r})")
        return spec, {"served_model": spec}
    if spec == "tiny":
        from corpus.training.tiny_model import tiny_model_fingerprint, tiny_model_path

        return str(tiny_model_path()), {"model": "tiny", "fingerprint": tiny_model_fingerprint()}
    if spec in ("auto", "rl", "sft"):
        for key in (["rl", "sft"] if spec == "auto" else [spec]):
            stage = MODEL_STAGES[key]
            folder = run_dir / stage / "model"
            m = StageDir(run_dir, stage).manifest()
            if m is not None and (folder / "config.json").is_file():
                return str(folder), {"model": stage, "fingerprint": m.get("output_fingerprint")}
        wanted = " or ".join(MODEL_STAGES[k] for k in (["rl", "sft"] if spec == "auto" else [spec]))
        raise FileNotFoundError(f"evaluate.model: {spec} needs a finished {wanted} stage with a model in {run_dir}; "
                                "train first, or give a model folder (or `tiny`)")
    path = recipe.resolve(spec)
    if path is None or not path.exists():
        raise FileNotFoundError(f"evaluate.model: {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return str(path), {"model": str(path.resolve()),
                       "files": [(p.relative_to(path).as_posix() if path.is_dir() else p.name, p.stat().st_size,
                                  p.stat().st_mtime_ns) for p in files]}


def make_eval_backend(cfg: EvaluateConfig, model: str, recipe: Recipe) -> Backend:
    from corpus.sampling.base import make_backend

    if cfg.backend == "transformers":
        return make_backend("transformers", model, batch_size=cfg.batch_size, device=cfg.device, dtype=cfg.dtype)
    if cfg.backend == "openai":
        o = cfg.openai
        cache = recipe.resolve(o.cache_dir) if o.cache_dir else None
        return make_backend("openai", model, base_url=o.base_url, api_key_env=o.api_key_env,
                            concurrency=o.concurrency, timeout=o.timeout, max_retries=o.max_retries, rpm=o.rpm,
                            tpm=o.tpm, image_max_pixels=o.image_max_pixels, cache_dir=cache)
    return make_backend("vllm", model, max_images=cfg.vllm.max_images, engine_args=cfg.vllm.engine_args)


def greedy(cfg: EvaluateConfig, seed: int) -> SamplingParams:
    return SamplingParams(n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.max_new_tokens, seed=seed,
                          fanout="requests")


# ---------------------------------------------------------------- rows -> lines


def tasks_of(name: str, given: list[str] | None, rows: list[BenchRow]) -> tuple[str, ...]:
    if given:
        return tuple(given)
    known = benchmark_tasks(name)
    if known:
        return known
    present = tuple(t for t in GOLD_KEYS if any(getattr(r, GOLD_KEYS[t]) is not None for r in rows))
    return present or ("prompt",)


def label_text(row: BenchRow, tasks: tuple[str, ...]) -> str | None:
    """The gold as GuardReasoner writes ``label``: bare for one task, else an ``Answers:`` block."""
    gold = row.gold()
    if len(tasks) == 1:
        return gold[GOLD_KEYS[tasks[0]]]
    return (f"Answers: \nRequest: {gold['request_label'] or 'None'}\nCompletion: {gold['refusal_label'] or 'None'}"
            f"\nResponse: {gold['response_label'] or 'None'}\n")


def prompt_text(messages: list[dict]) -> str:
    """GuardReasoner's ``prompt`` field: the instruction, a newline, the input."""
    return "\n".join(m["content"] for m in messages)


def request_of(row: BenchRow, run_dir: Path) -> GenerationRequest:
    return GenerationRequest(
        key=row.id, messages=guard_messages(row.prompt, row.response, len(row.images)),
        images=tuple(run_dir / i["path"] for i in row.images), image_sha256=tuple(i["sha256"] for i in row.images))


def _dropped(benchmark: str, row: BenchRow, reason: str, detail: str) -> dict:
    return {"drop_reason": reason, "detail": detail[:2000], "id": row.id if row.drop is None else None,
            "source": benchmark, "source_split": None, "source_id": row.source_id,
            "record": json.dumps({"prompt": row.prompt, "response": row.response, **row.gold()}, ensure_ascii=False),
            "benchmark": benchmark, "index": row.index}


def answer_unit(benchmark: str, tasks: tuple[str, ...], rows: list[BenchRow], run_dir: Path, backend: Backend,
                params: SamplingParams) -> tuple[list[dict], list[dict], dict]:
    """Answer one unit: ``(kept rows, dropped rows, counters)``."""
    kept: list[dict] = []
    dropped: list[dict] = []
    todo: list[BenchRow] = []
    for row in rows:
        if row.drop is not None:
            dropped.append(_dropped(benchmark, row, *row.drop))
        elif all(getattr(row, GOLD_KEYS[t]) is None for t in tasks):
            dropped.append(_dropped(benchmark, row, "no_label", f"no gold label for any of {list(tasks)}"))
        else:
            todo.append(row)
    counters = {"rows_in": len(rows), "generated_tokens": 0, "truncated": 0}
    if not todo:
        return kept, dropped, counters
    requests = [request_of(r, run_dir) for r in todo]
    result = backend.generate(requests, params)
    counters["generated_tokens"] = int(result.generated_tokens)
    counters["generation_ms"] = int(result.seconds * 1000)
    for row, req, comps in zip(todo, requests, result.completions):
        if not comps or comps[0].error:
            dropped.append(_dropped(benchmark, row, "generation_failed",
                                    comps[0].error if comps else "the backend returned no answer"))
            continue
        c = comps[0]
        counters["truncated"] += int(c.finish_reason == "length")
        kept.append({"benchmark": benchmark, "index": row.index, "id": row.id,
                     "prompt": prompt_text(req.messages), "label": label_text(row, tasks), "predict": c.text,
                     **row.gold(), "images": [i["path"] for i in row.images], "tokens": int(c.tokens),
                     "finish_reason": c.finish_reason})
    return kept, dropped, counters


def prediction_lines(table: pa.Table) -> dict[str, list[dict]]:
    """The kept rows as GuardReasoner lines, per benchmark in row order."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(table.to_pylist(), key=lambda r: r["index"]):
        out[r["benchmark"]].append({"prompt": r["prompt"], "label": r["label"], "predict": r["predict"],
                                    "id": r["id"], "request_label": r["request_label"],
                                    "response_label": r["response_label"], "refusal_label": r["refusal_label"],
                                    "images": r["images"]})
    return dict(out)


# ---------------------------------------------------------------- the stage


def _sources(recipe: Recipe) -> list[tuple[Any, SourceSpec]]:
    cfg = recipe.evaluate
    eval_sets = list(recipe.ingest.decontaminate.eval_sets)
    try:
        return [(b, None if b.heldout else b.source_spec(eval_sets)) for b in cfg.benchmarks]
    except ValueError as exc:
        from corpus.recipe import RecipeError

        raise RecipeError(str(exc)) from None


def _predictions_inputs(recipe: Recipe) -> list[tuple[Any, Path, dict[str, Path]]]:
    out = []
    for spec in recipe.evaluate.predictions:
        path = recipe.resolve(spec.path)
        out.append((spec, path, prediction_files(path)))
    return out


def generation_config(cfg: EvaluateConfig, identity: Any, seed: int, sources) -> dict:
    """Everything that decides the answers (hashed); protocol, names and prediction folders are not in it."""
    out = {"model": identity, "backend": cfg.backend, "seed": seed, "max_new_tokens": cfg.max_new_tokens,
           "unit_rows": cfg.unit_rows, "benchmarks": [b.model_dump() for b, _ in sources],
           "sources": [s.model_dump() if s is not None else {"heldout": b.heldout} for b, s in sources]}
    if cfg.backend == "transformers":
        out["dtype"] = cfg.dtype
    return out


def _fingerprint(recipe: Recipe, run_dir: Path, sources, identity) -> str:
    from corpus.stages.ingest import _path_fingerprint

    items: list[Any] = [{"model": identity}]
    for bench, spec in sources:
        if spec is None:
            ingest = StageDir(run_dir, "ingest")
            if not ingest.complete:
                raise FileNotFoundError(f"evaluate benchmark {bench.name!r}: heldout {bench.heldout!r} needs the "
                                        f"finished `ingest` stage in {run_dir}; run `corpus ingest` first")
            items.append({"heldout": bench.heldout, "limit": bench.limit, "ingest": ingest.fingerprint()})
            continue
        items.append({"spec": spec.model_dump(), "path": _path_fingerprint(recipe.resolve(spec.path)),
                      "images_root": _path_fingerprint(recipe.resolve(spec.images_root))})
    return stable_hash(items)


def _reference(name: str | None, *candidates: str | None) -> tuple[str, dict] | None:
    if name:
        return require_published(name)
    return next((found for c in candidates if (found := find_published(c)) is not None), None)


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    cfg = recipe.evaluate
    sources = _sources(recipe) if cfg.enabled else []
    preds = _predictions_inputs(recipe) if cfg.enabled else []
    generate = bool(cfg.enabled and cfg.model is not None and sources)
    model, identity = resolve_model(cfg, run_dir, recipe) if generate else (None, None)
    seed = recipe.seed if cfg.seed is None else cfg.seed
    gen = generation_config(cfg, identity, seed, sources) if generate else None
    scoring = {"protocol": cfg.protocol, "name": cfg.name, "reference": cfg.reference,
               "predictions": [[s.model_dump(), {b: file_sha256(p) for b, p in files.items()}]
                               for s, _, files in preds]}
    fingerprint = _fingerprint(recipe, run_dir, sources if generate else [], identity)

    def open_writer(force: bool) -> StageWriter:
        return StageWriter(run_dir, STAGE, evaluated_schema(), config=gen, input_fingerprint=fingerprint, force=force)

    writer = open_writer(force)
    if writer.skipped:
        m = writer.manifest()
        if m.get("scoring") == scoring:
            return m
        (writer.path / MANIFEST).unlink()  # same answers, new scoring: reopen the checkpoint (every unit done)
        writer = open_writer(False)
    reports: list[dict] = []
    loaded: dict[str, list[BenchRow]] = {}
    if generate:
        loaded = _generate(recipe, cfg, run_dir, writer, sources, model, seed)
        table = writer.read()
        lines = prediction_lines(table) if table is not None else {}
        for b, _ in sources:
            if b.name in lines:
                write_predictions(writer.path / PREDICTIONS_DIR / b.name / PREDICTIONS_FILE, lines[b.name])
        tasks = {b.name: tasks_of(b.name, b.tasks, loaded.get(b.name, [])) for b, _ in sources}
        name = cfg.name or (cfg.model if cfg.model not in ("auto", "rl", "sft") else identity["model"])
        reports.append(build_report(lines, cfg.protocol, name=name, tasks=tasks,
                                    published=_reference(cfg.reference, cfg.name, cfg.model)))
    for spec, path, files in preds:
        reports.append(_score_folder(recipe, run_dir, sources, spec, path, files, loaded))
    write_reports(writer.path, reports)
    manifest = writer.finish(extra={"generation": gen, "scoring": scoring, "reports": reports, "model_path": model})
    popped = [manifest["outputs"].pop(d, None) for d in (PREDICTIONS_DIR, SCORES_DIR)]
    if any(p is not None for p in popped):  # JSON lines and reports, not Parquet outputs
        write_json_atomic(writer.path / MANIFEST, manifest)
    return manifest


def write_reports(folder: Path, reports: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / RESULTS_JSON, {"reports": reports})
    (folder / RESULTS_TEXT).write_text("\n\n".join(render(r) for r in reports) + "\n", encoding="utf-8")


def _score_folder(recipe: Recipe, run_dir: Path, sources, spec, path: Path, files: dict[str, Path],
                  loaded: dict[str, list[BenchRow]]) -> dict:
    lines = {b: read_predictions(p) for b, p in files.items()}
    gold = _benchmark_gold(recipe, run_dir, sources, lines, loaded)
    tasks = {b.name: b.tasks for b, _ in sources if b.tasks}
    return build_report(lines, spec.protocol, name=spec.name or path.name, tasks=tasks, benchmark_gold=gold,
                        published=_reference(spec.reference, spec.name, path.name))


def score_predictions(recipe: Recipe, run_dir: Path | str, spec) -> dict:
    """Score one prediction folder (a :class:`PredictionsSpec`) without touching the stage's checkpoint: the
    report goes to ``<run>/evaluate/scores/<name>/results.json`` (and ``results.txt``) and is returned.

    A rerun of the stage with a new configuration starts the stage folder afresh, scores included (cheap to redo).
    """
    run_dir = Path(run_dir)
    path = recipe.resolve(spec.path)
    report = _score_folder(recipe, run_dir, _sources(recipe), spec, path, prediction_files(path), {})
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", report["name"] or "predictions")
    write_reports(run_dir / STAGE / SCORES_DIR / name, [report])
    return report


def _generate(recipe: Recipe, cfg: EvaluateConfig, run_dir: Path, writer: StageWriter, sources, model: str,
              seed: int) -> dict[str, list[BenchRow]]:
    done = writer.done_units()
    params = greedy(cfg, seed)
    backend: Backend | None = None
    loaded: dict[str, list[BenchRow]] = {}
    unit = 0
    try:
        for bench, spec in sources:
            rows = (load_heldout(run_dir, bench.heldout, bench.limit) if spec is None
                    else load_benchmark(recipe, spec, run_dir))
            loaded[bench.name] = rows
            tasks = tasks_of(bench.name, bench.tasks, rows)
            for start in range(0, max(len(rows), 1), cfg.unit_rows):
                if unit not in done:
                    if backend is None:
                        backend = make_eval_backend(cfg, model, recipe)
                    chunk = rows[start:start + cfg.unit_rows]
                    kept, dropped, counters = answer_unit(bench.name, tasks, chunk, run_dir, backend, params)
                    log.info("evaluate: %s rows %d-%d answered", bench.name, start, start + len(chunk) - 1)
                    kept_table = pa.Table.from_pylist(kept, schema=writer.schema.arrow)
                    writer.write_unit(unit, kept_table, pa.Table.from_pylist(dropped) if dropped else None,
                                      counters=counters)
                unit += 1
    finally:
        if backend is not None:
            backend.close()
    return loaded


def _benchmark_gold(recipe: Recipe, run_dir: Path, sources, lines: dict[str, list[dict]],
                    loaded: dict[str, list[BenchRow]]) -> dict[str, list]:
    """Gold rows of the benchmarks whose released predictions carry no gold (WildGuardTest), read on demand."""
    from corpus.evaluation.protocols import GOLD_FROM_BENCHMARK

    out: dict[str, list] = {}
    for bench_name, bench_lines in lines.items():
        name = canonical(bench_name)
        if name not in GOLD_FROM_BENCHMARK or (bench_lines and "request_label" in bench_lines[0]):
            continue
        match = next(((b, s) for b, s in sources if canonical(b.name) == name and s is not None), None)
        if match is None:
            eval_set = next((s for s in recipe.ingest.decontaminate.eval_sets if canonical(s.name) == name), None)
            if eval_set is None:
                continue  # build_report says what is missing
            match = (None, eval_set)
        rows = loaded.get(match[0].name) if match[0] is not None and match[0].name in loaded else None
        if rows is None:
            rows = load_benchmark(recipe, match[1].model_copy(update={"limit": None}), run_dir, with_images=False)
        out[bench_name] = gold_rows(rows)
    return out


# ---------------------------------------------------------------- stats


def stats(run_dir: Path | str) -> dict:
    """The F1 tables of the finished stage: per report, one row per benchmark and task."""
    sd = StageDir(run_dir, STAGE)
    reports = list((sd.manifest() or {}).get("reports", []))
    for p in sorted((sd.path / SCORES_DIR).glob("*/" + RESULTS_JSON)):
        reports += json.loads(p.read_text(encoding="utf-8"))["reports"]
    out: dict[str, Any] = {}
    for rep in reports:
        others, other = rep["other_protocol"]["results"], rep["other_protocol"]["protocol"]
        pubs = (rep.get("published") or {}).get("results") or [{}] * len(rep["results"])
        rows = [{"task": r["task"], "benchmark": r["benchmark"], "n": r["n"], "unparsable": r["unparsable"],
                 f"f1_{rep['protocol']}": round(r["f1"], 2), f"f1_{other}": round(o["f1"], 2),
                 "published": p.get("f1")} for r, o, p in zip(rep["results"], others, pubs)]
        weighted = {t: (None if v is None else round(v, 2)) for t, v in rep["weighted"].items()}
        out[f"{rep.get('name')} ({rep['protocol']})"] = {"results": rows, "weighted": weighted}
    return out

