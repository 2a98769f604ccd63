"""The ``corpus`` command line: run a whole recipe, one stage, or print a run's statistics."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

from corpus.engine import EngineError, EngineSpec, use_engine
from corpus.label_overrides import OverrideError
from corpus.recipe import RecipeError, load_recipe
from corpus.schema import SchemaError
from corpus.sources.base import SourceError
from corpus.stages import available_stages, get_stage, stage_help
from corpus.store import CorruptPartError, RunDirLocked, StageIncomplete, lock_run_dir

app = typer.Typer(
    help="Build the GuardReasoner-VL reasoning corpus: ingest seed safety datasets, synthesize reasoning "
    "with a teacher, filter, sample hard rows, concatenate, export, train. Every stage checkpoints to "
    "Parquet under --out and resumes where it stopped.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RECIPE_HELP = "Recipe YAML (see pipelines/). Default: the embedded default recipe (offline, CPU)."
OUT_HELP = "Run directory: every stage writes <out>/<stage>/ there."
FORCE_HELP = "Rerun the stage(s) even when their manifest matches."
RETRY_FAILED_HELP = "synthesize: also retry rows that failed for a final cause (e.g. HTTP 400)."
USER_ERRORS = (RecipeError, SourceError, SchemaError, FileNotFoundError, CorruptPartError, RunDirLocked,
               OverrideError)
#: exit status of a stage that stopped with its work kept (unusable teacher, rows to retry): rerun to resume
EXIT_INCOMPLETE = 3


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _record_recipe(recipe, recipe_path: Path | None, out: Path) -> None:
    """<out>/_recipe.json: the recipe a stage last ran with (the dataset card and the plan read it)."""
    from corpus.store import stable_hash, write_json_atomic

    doc = recipe.model_dump(mode="json")
    write_json_atomic(out / "_recipe.json", {"path": str(recipe_path or "embedded:default.yaml"),
                                             "sha256": stable_hash(doc), "recipe": doc})


ENGINE_HELP = "Where the stages' units run: `local` (a process pool on this machine) or `ray` (Ray Data)."
WORKERS_HELP = "Worker processes for CPU-bound units (default: one per core; on Ray: CPUs of a local cluster)."
RAY_HELP = "Address of a running Ray cluster (e.g. ray://head:10001 or auto); default: start a local one."


def _engine_spec(engine: str, workers: int | None, ray_address: str | None) -> EngineSpec:
    try:
        return EngineSpec(engine, workers, ray_address)  # type: ignore[arg-type]
    except EngineError as exc:
        _fail(exc)
        raise  # unreachable


def _run_stages(stages: list[str], recipe_path: Path | None, out: Path, force: bool, verbose: bool,
                spec: EngineSpec | None = None, retry_failed: bool = False) -> None:
    _setup_logging(verbose)
    lock = None
    try:
        recipe = load_recipe(recipe_path)
        lock = lock_run_dir(out)
        _record_recipe(recipe, recipe_path, out)  # held until this process exits: one run per directory
        with use_engine(spec or EngineSpec()):
            for stage in stages:
                typer.secho(f"[{stage}]", bold=True, err=True)
                extra = {"retry_failed": True} if retry_failed and stage == "synthesize" else {}
                manifest = get_stage(stage).run(recipe, out, force=force, **extra)
                typer.echo(f"{stage}: {manifest.get('rows_in', 0)} in, {manifest.get('rows_out', 0)} out, "
                           f"{manifest.get('rows_dropped', 0)} dropped", err=True)
    except (*USER_ERRORS, EngineError) as exc:
        _fail(exc)
    except StageIncomplete as exc:
        typer.secho(f"incomplete: {exc}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(EXIT_INCOMPLETE) from None
    finally:
        if lock is not None:
            lock.close()


def select_stages(stages: list[str], start: str | None, until: str | None, skip: list[str]) -> list[str]:
    """The stages of a run: from ``start`` to ``until`` (inclusive), without those in ``skip``."""
    for opt, name in (("--from", start), ("--until", until), *(("--skip", s) for s in skip)):
        if name is not None and name not in stages:
            raise ValueError(f"{opt} {name!r}: not one of {stages}")
    first = stages.index(start) if start else 0
    last = stages.index(until) if until else len(stages) - 1
    if first > last:
        raise ValueError(f"--from {start!r} comes after --until {until!r}")
    return [s for s in stages[first:last + 1] if s not in skip]


@app.command()
def run(
    recipe: Path | None = typer.Argument(None, help=RECIPE_HELP),
    out: Path = typer.Option(Path("runs/default"), "--out", "-o", help=OUT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    start: str | None = typer.Option(None, "--from", help="Start at this stage (earlier ones must be done)."),
    until: str | None = typer.Option(None, "--until", help="Stop after this stage."),
    skip: list[str] = typer.Option([], "--skip", help="Leave this stage out (repeatable), e.g. --skip train-rl."),
    engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
    workers: int | None = typer.Option(None, "--workers", help=WORKERS_HELP),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_HELP),
    retry_failed: bool = typer.Option(False, "--retry-failed", help=RETRY_FAILED_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run every stage of a recipe in order, then print the statistics."""
    try:
        stages = select_stages(available_stages(), start, until, skip)
    except ValueError as exc:
        _fail(exc)
    _run_stages(stages, recipe, out, force, verbose, _engine_spec(engine, workers, ray_address), retry_failed)
    stats(out, as_json=False)
    try:
        import matplotlib  # noqa: F401  (the `report` extra)
    except ImportError:
        typer.echo("report: skipped (install the `report` extra: pip install -e '.[report]')")
        return
    report(out, browser_rows=8)


def _stage_command(stage: str):
    def command(
        recipe: Path | None = typer.Argument(None, help=RECIPE_HELP),
        out: Path = typer.Option(Path("runs/default"), "--out", "-o", help=OUT_HELP),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
        workers: int | None = typer.Option(None, "--workers", help=WORKERS_HELP),
        ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_HELP),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        _run_stages([stage], recipe, out, force, verbose, _engine_spec(engine, workers, ray_address))

    def synthesize_command(
        recipe: Path | None = typer.Argument(None, help=RECIPE_HELP),
        out: Path = typer.Option(Path("runs/default"), "--out", "-o", help=OUT_HELP),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        retry_failed: bool = typer.Option(False, "--retry-failed", help=RETRY_FAILED_HELP),
        engine: str = typer.Option("local", "--engine", help=ENGINE_HELP),
        workers: int | None = typer.Option(None, "--workers", help=WORKERS_HELP),
        ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_HELP),
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        _run_stages([stage], recipe, out, force, verbose, _engine_spec(engine, workers, ray_address), retry_failed)

    if stage == "synthesize":
        command = synthesize_command

    command.__doc__ = stage_help(stage)
    return command


train_app = typer.Typer(help="Reference training: R-SFT and GRPO (TRL).", no_args_is_help=True)
for _stage in available_stages():
    if _stage.startswith("train-"):
        train_app.command(_stage.removeprefix("train-"))(_stage_command(_stage))
    else:
        app.command(_stage)(_stage_command(_stage))
if any(s.startswith("train-") for s in available_stages()):
    app.add_typer(train_app, name="train")


@app.command()
def stats(
    run_dir: Path = typer.Argument(..., help="A run directory written by `corpus run` or a stage."),
    as_json: bool = typer.Option(False, "--json", help="Print the same figures as JSON on stdout."),
) -> None:
    """Print per-stage figures: rows by source × modality × label, categories, drops by reason."""
    from corpus.stats import collect, render

    try:
        report = collect(run_dir)
    except FileNotFoundError as exc:
        _fail(exc)
    typer.echo(json.dumps(report, indent=2, default=str) if as_json else render(report))


@app.command()
def check(
    recipe: Path | None = typer.Argument(None, help=RECIPE_HELP),
    counts: bool = typer.Option(False, "--counts", help="Also print the expected samples per source and modality "
                                "from the known dataset sizes and the recipe's fractions (no data is read)."),
) -> None:
    """Validate a recipe (keys, values, adapter options) without doing any work; print the RL clip schedule."""
    try:
        r = load_recipe(recipe)
    except RecipeError as exc:
        _fail(exc)
    typer.echo(f"{r.name}: ok ({len(r.ingest.sources)} sources, "
               f"{len(r.ingest.decontaminate.eval_sets)} eval sets)")
    from corpus.training.config import clip_schedule_line

    typer.echo(clip_schedule_line(r.train_rl))
    if counts:
        from corpus.composition import expected_counts, render_counts

        typer.echo(render_counts(expected_counts(r)))


@app.command()
def adapters() -> None:
    """List the source adapters a recipe can name, with their first docstring line."""
    from corpus.sources.base import adapters as all_adapters

    for name, cls in sorted(all_adapters().items()):
        doc = (cls.__doc__ or "").strip().splitlines()
        typer.echo(f"{name:22s} {doc[0] if doc else ''}")


# ---------------------------------------------------------------- evaluate (replaces the generic stage command)
app.registered_commands[:] = [c for c in app.registered_commands if c.name != "evaluate"]


@app.command("evaluate")
def evaluate(
    recipe: Path | None = typer.Argument(None, help=RECIPE_HELP),
    out: Path = typer.Option(Path("runs/default"), "--out", "-o", help=OUT_HELP),
    predictions: Path | None = typer.Option(
        None, "--predictions", help="Score DIR/<Benchmark>/generated_predictions.jsonl (GuardReasoner's layout); "
        "nothing is generated."),
    model: str | None = typer.Option(
        None, "--model", help="Generate with this guard (local folder, `tiny`, `rl`, `sft`, or the served name "
        "with --backend openai) on the recipe's evaluate.benchmarks, then score."),
    backend: str | None = typer.Option(None, "--backend", help="transformers, openai or vllm."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server (http://HOST:PORT/v1)."),
    protocol: str | None = typer.Option(None, "--protocol", help="strict (default) or guardreasoner (released)."),
    name: str | None = typer.Option(None, "--name", help="Report name; a published model's name shows its figures."),
    reference: str | None = typer.Option(None, "--reference", help="Published model to compare with, e.g. "
                                         "'GuardReasoner 8B'."),
    limit: int | None = typer.Option(None, "--limit", help="Answer only the first N rows of each benchmark."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object on stdout."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score a guard on the benchmarks: --predictions DIR (released layout; the report goes to
    <out>/evaluate/scores/<name>/) or --model (generate, then score: the evaluate stage); without either, the
    recipe's evaluate section. Table on stdout, or --json."""
    from corpus.evaluation.config import EvaluateConfig, PredictionsSpec
    from corpus.evaluation.report import render

    _setup_logging(verbose)
    if predictions is not None and model is not None:
        _fail(ValueError("give --predictions or --model, not both"))
    stage = get_stage("evaluate")
    try:
        r = load_recipe(recipe)
        out.mkdir(parents=True, exist_ok=True)
        if predictions is not None:
            spec = PredictionsSpec(path=str(predictions.resolve()), name=name, reference=reference,
                                   protocol=protocol or "strict")
            reports = [stage.score_predictions(r, out, spec)]
        else:
            cfg = r.evaluate.model_dump()
            if model is not None:
                model = str(Path(model).resolve()) if Path(model).exists() else model  # a folder: from the cwd
                cfg.update(model=model, name=name, reference=reference, predictions=[])
            for key, value in (("backend", backend), ("protocol", protocol), ("max_new_tokens", max_new_tokens)):
                if value is not None:
                    cfg[key] = value
            if base_url is not None:
                cfg["openai"]["base_url"] = base_url
            if limit is not None:
                for b in cfg["benchmarks"]:
                    b["limit"] = min(limit, b["limit"] or limit)
            try:
                r = r.model_copy(update={"evaluate": EvaluateConfig.model_validate(cfg)})
            except ValueError as exc:
                raise RecipeError(f"evaluate options: {exc}") from None
            reports = stage.run(r, out, force=force)["reports"]
    except (*USER_ERRORS, ValueError) as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(reports[0] if len(reports) == 1 else {"reports": reports}, indent=2))
    else:
        typer.echo("\n\n".join(render(rep) for rep in reports) or "nothing to evaluate: the recipe lists no "
                   "evaluate.benchmarks or evaluate.predictions")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory written by `corpus run` or a stage."),
    browser_rows: int = typer.Option(8, "--rows", min=1, help="Rows per stage in the sample browser."),
) -> None:
    """Write RUN/report/index.html (self-contained: inline plots and thumbnails) and the dataset card."""
    from corpus.report.html import write_report

    try:
        page = write_report(run_dir, browser_rows=browser_rows)
    except FileNotFoundError as exc:
        _fail(exc)
    typer.echo(f"report: {page}")


@app.command()
def trace(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    row_id: str = typer.Argument(..., help="A row id of any stage (or a seed source_id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the chain as JSON."),
) -> None:
    """Print the provenance chain of a row: source record -> ingest -> teacher -> filter -> sample -> RL rows."""
    from corpus.report.trace import Tracer, render

    try:
        doc = Tracer(run_dir).trace(row_id)
    except (FileNotFoundError, KeyError) as exc:
        _fail(exc)
    typer.echo(json.dumps(doc, indent=2, default=str) if as_json else render(doc))


@app.command()
def plan(
    recipe: Path | None = typer.Argument(None, help=RECIPE_HELP),
    work: Path | None = typer.Option(None, "--work", help="Keep the local ingest here (default: a temp folder)."),
    seconds_per_request: float = typer.Option(8.0, "--seconds-per-request", min=0.0,
                                              help="Assumed teacher latency for the time estimate."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Before spending: rows per source, teacher tokens on the real prompts, cost (and Batch), time, training tokens."""
    from corpus.report.plan import plan as make_plan
    from corpus.report.plan import render

    _setup_logging(False)
    try:
        p = make_plan(load_recipe(recipe), work, seconds_per_request)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(json.dumps(p, indent=2, default=str) if as_json else render(p))


@app.command("near-dups")
def near_dups(
    run_dir: Path = typer.Argument(..., help="A run directory with a finished ingest."),
    threshold: float = typer.Option(0.8, "--threshold", min=0.05, max=1.0, help="Jaccard of word-shingle sets."),
    shingle: int = typer.Option(5, "--shingle", min=1, help="Words per shingle."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures and pairs as JSON."),
) -> None:
    """Near-duplicate text among the ingested rows (MinHash LSH), per source, within and across sources."""
    from corpus.report.neardup import NearDupConfig, near_duplicate_report
    from corpus.stats import _fmt_table

    rep = near_duplicate_report(run_dir, NearDupConfig(threshold=threshold, shingle=shingle))
    if rep is None:
        _fail(FileNotFoundError(f"no finished ingest stage in {run_dir}"))
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
        return
    typer.echo(f"{rep['duplicates']} near-duplicates among {rep['rows']} text rows (Jaccard >= {threshold}, "
               f"{shingle}-word shingles, {rep['seconds']} s)")
    typer.echo("\n".join(_fmt_table(rep["by_source"], ["source", "rows", "near_dup_within", "near_dup_across",
                                                       "rate"])))
    for p in rep["pairs"]:
        typer.echo(f"  {p['id']} ({p['source']}) ~ {p['matched_id']} ({p['matched_source']}) J={p['jaccard']}")


@app.command("audit-labels")
def audit_labels(
    run_dir: Path = typer.Argument(..., help="A run directory with a finished filter stage."),
    recipe: Path | None = typer.Argument(None, help="Recipe whose synthesize section names the teacher "
                                         "(default: the embedded default recipe)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Audit at most N rows."),
) -> None:
    """Re-ask the teacher blind on the label-mismatch drops; write RUN/audit-labels/review.{jsonl,csv}."""
    from corpus.report.audit import audit

    _setup_logging(False)
    try:
        s = audit(load_recipe(recipe), run_dir, limit)
    except USER_ERRORS as exc:
        _fail(exc)
    typer.echo(f"audited {s['audited']} label-mismatch rows: {s['answered']} answered blind, {s['suspected']} "
               f"suspected label noise; review file {run_dir / s['review_file']} (fill reviewed_*_label, then "
               "set ingest.label_overrides to it)")
    if s["mode"] == "replay" and s["audited"] and not s["answered"]:
        typer.echo("note: replay mode answers only cached requests; the blind ones need an online teacher "
                   "(a recipe with synthesize.mode: online)")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
