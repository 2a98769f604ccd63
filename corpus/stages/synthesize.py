"""Stage ``synthesize``: the teacher writes step-by-step reasoning for every ingested row.

One unit per ingest part; every ingested row comes out exactly once with the teacher columns
(schemas/synthesized.json), failures included with their status. The teacher cache is the journal:
each answer is committed before its request counts as done, so a run killed at any point and started
again re-buys nothing and writes every row once; requests cut mid-flight (a real API may bill them)
are counted as ``interrupted_requests`` from the request journal (``_requests.log``).

Failures are never frozen. A unit with rows that failed for a retryable cause (connection, timeout,
429, 5xx, malformed body) is written but the stage is left incomplete (no manifest, exit status 3
from the command line, figures in ``_attempt.json``): a plain rerun redoes exactly those units,
answered rows coming from the cache, so only the failed rows are requested again. Rows that failed
for a final cause (400 invalid request, a missing image) keep the stage complete; they are retried
only with ``retry_failed`` (``--retry-failed``). An unusable endpoint stops the stage at once
(:class:`~corpus.llm.breaker.TeacherUnavailable`), keeping every finished unit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.guard_format import guard_user_text
from corpus.llm.cache import ResponseCache
from corpus.llm.config import SynthesizeConfig, default_cache_dir
from corpus.llm.failures import is_retryable_error
from corpus.llm.journal import RequestJournal, interrupted_requests
from corpus.llm.pricing import cost_usd
from corpus.llm.progress import Progress
from corpus.llm.request import ChatRequest, Outcome, image_part
from corpus.llm.runner import Runner
from corpus.schema import load_schema
from corpus.store import StageDir, StageIncomplete, StageWriter, write_json_atomic
from corpus.templates import fill, load_prompt

STAGE = "synthesize"
UPSTREAM = "ingest"
SYSTEM_PROMPT = "teacher_system.txt"
DECIDE_REQUEST = "teacher_decide_request.txt"
DECIDE_RESPONSE = "teacher_decide_response.txt"
JOURNAL = "_requests.log"
ATTEMPT = "_attempt.json"  # figures of the last attempt that left the stage incomplete

HELP = (
    "Ask the teacher model (any OpenAI-compatible server) for step-by-step reasoning on every ingested row, "
    "given the gold labels (unknown labels are left to the teacher). Modes: online (live, cached, resumable), "
    "batch (OpenAI Batch API) and replay (cache only, offline). Writes teacher_output, teacher_status, usage "
    "and cost per row; tokens, cost and projection in the manifest."
)


def schema():
    return load_schema("sample").extend(load_schema("synthesized"))


def system_prompt(request_label: str | None, response: str | None, response_label: str | None) -> str:
    """The teacher's system message: task, step rules, the gold labels; unknown labels left to the teacher."""
    notes = []
    if request_label is None:
        notes.append(load_prompt(DECIDE_REQUEST).strip())
    if response is not None and response_label is None:
        notes.append(load_prompt(DECIDE_RESPONSE).strip())
    return fill(load_prompt(SYSTEM_PROMPT), request_label=request_label or "None",
                response_label=response_label or "None", decide="".join(f"{n}\n" for n in notes))


def teacher_messages(row: dict, run_dir: Path) -> list[dict]:
    """[system, user] with the ``Human user:/AI assistant:`` transcript and image references."""
    images = row.get("images") or []
    text = guard_user_text(row.get("prompt"), row.get("response"), len(images))
    user: str | list[dict] = text
    if images:
        user = [{"type": "text", "text": text}] + [image_part(im["sha256"], run_dir / im["path"]) for im in images]
    return [
        {"role": "system", "content": system_prompt(row.get("request_label"), row.get("response"),
                                                    row.get("response_label"))},
        {"role": "user", "content": user},
    ]


def build_request(row: dict, cfg: SynthesizeConfig, run_dir: Path) -> ChatRequest:
    return ChatRequest(model=cfg.model, messages=teacher_messages(row, run_dir),
                       params=cfg.generation.request_fields(), image_max_pixels=cfg.image_max_pixels)


def output_config(cfg: SynthesizeConfig) -> dict:
    """What decides the stage's output (hashed into the manifest). Throughput knobs are left out on
    purpose: changing concurrency or limits re-runs nothing."""
    prompts = "".join(load_prompt(p) for p in (SYSTEM_PROMPT, DECIDE_REQUEST, DECIDE_RESPONSE))
    return {
        "model": cfg.model,
        "mode": cfg.mode,
        "generation": cfg.generation.model_dump(),
        "image_max_pixels": cfg.image_max_pixels,
        "price": cfg.price().model_dump() if cfg.price() else None,
        "retry_truncated": cfg.retry_truncated,
        "retry_empty": cfg.retry_empty,
        "prompts_sha256": hashlib.sha256(prompts.encode("utf-8")).hexdigest(),
    }


def open_cache(recipe, cfg: SynthesizeConfig) -> ResponseCache:
    cache_dir = recipe.resolve(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    return ResponseCache(cache_dir, [recipe.resolve(p) for p in cfg.replay_caches], cfg.cache_synchronous)


def teacher_columns(outcomes: list[Outcome], keys: list[str], cfg: SynthesizeConfig) -> dict[str, pa.Array]:
    price = cfg.price()
    return {
        "teacher_output": pa.array([o.output for o in outcomes], pa.string()),
        "teacher_status": pa.array([o.status for o in outcomes], pa.string()),
        "teacher_error": pa.array([o.error for o in outcomes], pa.string()),
        "teacher_model": pa.array([cfg.model] * len(outcomes), pa.string()),
        "request_key": pa.array(keys, pa.string()),
        "prompt_tokens": pa.array([o.prompt_tokens for o in outcomes], pa.int64()),
        "completion_tokens": pa.array([o.completion_tokens for o in outcomes], pa.int64()),
        "cost_usd": pa.array([cost_usd(price, o.prompt_tokens, o.completion_tokens) for o in outcomes],
                             pa.float64()),
    }


def _unit_of(part: Path) -> int:
    return int(part.stem.split("-")[1])


def _requests(table: pa.Table, cfg: SynthesizeConfig, run_dir: Path) -> list[ChatRequest]:
    return [build_request(row, cfg, run_dir) for row in table.to_pylist()]


def failure_counters(outcomes: list[Outcome]) -> dict[str, int]:
    """``failed_retryable`` (a rerun retries them) and ``failed_final`` (only ``--retry-failed`` does)."""
    failed = [o for o in outcomes if o.status == "failed"]
    retryable = sum(1 for o in failed if is_retryable_error(o.error))
    return {"failed_retryable": retryable, "failed_final": len(failed) - retryable}


async def _synthesize(recipe, run_dir: Path, writer: StageWriter, parts: list[Path], cfg: SynthesizeConfig,
                      cache: ResponseCache, progress: Progress, failures: dict[str, str], stats: dict) -> None:
    client = None
    journal = None
    if cfg.mode == "online":
        from corpus.llm.client import TeacherClient  # the openai SDK is only imported when it is used

        journal = RequestJournal(writer.path / JOURNAL)
        client = TeacherClient(cfg, journal=journal)
    runner = Runner(cfg, cache, client, progress, failures=failures)
    try:
        for part in parts:
            table = pq.read_table(part)
            reqs = _requests(table, cfg, run_dir)
            outcomes = await runner.resolve(reqs)
            cols = teacher_columns(outcomes, [r.key for r in reqs], cfg)
            out = table
            for name, arr in cols.items():
                out = out.append_column(name, arr)
            counters = Counter({"rows_in": table.num_rows})
            counters.update(f"status:{o.status}" for o in outcomes)
            counters["reasks"] = sum(o.reasks for o in outcomes)
            counters.update(failure_counters(outcomes))
            writer.write_unit(_unit_of(part), out, counters=dict(counters))
    finally:
        stats.update(runner.stats)
        if client is not None:
            stats.update(client.stats)
            await client.close()
        if journal is not None:
            journal.close()


def _units_to_redo(writer: StageWriter, retry_failed: bool) -> set[int]:
    """Finished units holding rows a rerun retries: retryable failures always, final ones on request."""
    return {u for u, c in writer.unit_counters().items()
            if c.get("failed_retryable") or (retry_failed and c.get("failed_final"))}


def _final_failures(writer: StageWriter, units: set[int]) -> dict[str, str]:
    """Errors of the rows of ``units`` that failed for a final cause: a redone unit keeps them as they are
    (only ``retry_failed`` asks the teacher again)."""
    out: dict[str, str] = {}
    for u in units:
        try:
            t = pq.read_table(writer.path / f"part-{u:05d}.parquet",
                              columns=["request_key", "teacher_status", "teacher_error"])
        except (OSError, pa.ArrowException):  # a damaged part: its rows are simply asked again
            continue
        for key, status, error in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True):
            if status == "failed" and not is_retryable_error(error):
                out[key] = error
    return out


def run(recipe, run_dir, force: bool = False, retry_failed: bool = False) -> dict:
    """Do the stage. ``retry_failed``: also retry rows that failed for a final cause (e.g. HTTP 400)."""
    run_dir = Path(run_dir)
    cfg: SynthesizeConfig = recipe.synthesize
    upstream = StageDir(run_dir, UPSTREAM)
    writer = StageWriter(run_dir, STAGE, schema(), config=output_config(cfg),
                         input_fingerprint=upstream.fingerprint(), force=force)
    if writer.skipped:
        if not (retry_failed and _units_to_redo(writer, True)):
            return writer.manifest()
        writer.reopen()
    redo = _units_to_redo(writer, retry_failed) & writer.done_units()
    kept_failures = {} if retry_failed else _final_failures(writer, redo)
    writer.discard(redo)
    (writer.path / ATTEMPT).unlink(missing_ok=True)
    done = writer.done_units()
    parts = [p for p in upstream.parts() if _unit_of(p) not in done]
    total = upstream.num_rows()
    cache = open_cache(recipe, cfg)
    if cfg.mode != "replay":
        from corpus.llm.client import api_key_from_env

        api_key_from_env(cfg)  # fail before any work when the key is missing
    try:
        failures: dict[str, str] = dict(kept_failures)
        batch_stats: dict = {}
        if cfg.mode == "batch":
            from corpus.llm.batch import BatchRunner

            reqs = [r for p in parts for r in _requests(pq.read_table(p), cfg, run_dir)]
            batch = BatchRunner(cfg, cache, writer.path / "_batches")
            failures.update(batch.run(reqs))
            batch_stats = batch.summary()
        progress = Progress(total, total - sum(pq.ParquetFile(p).metadata.num_rows for p in parts),
                            enabled=cfg.progress)
        stats: dict = {}
        try:
            asyncio.run(_synthesize(recipe, run_dir, writer, parts, cfg, cache, progress, failures, stats))
        except StageIncomplete:
            _write_attempt(writer, cfg, stats, progress, batch_stats, "the teacher endpoint is unusable")
            raise
        finally:
            progress.close()
    finally:
        cache.close()
    teacher = _accounting(writer, cfg, stats, progress, batch_stats)
    pending = _units_to_redo(writer, False)
    if pending:
        _write_attempt(writer, cfg, stats, progress, batch_stats, "rows failed for retryable causes", teacher)
        raise StageIncomplete(
            f"synthesize: {teacher['failed_retryable']} rows failed for retryable causes "
            f"({_error_kinds(writer, pending)}) at {cfg.base_url or 'api.openai.com'} (model {cfg.model!r}); "
            "the stage is not complete: rerun the same command to retry exactly those rows "
            "(received answers come from the cache)")
    return writer.finish(extra={"teacher": teacher})


def _error_kinds(writer: StageWriter, units: set[int]) -> str:
    kinds: Counter[str] = Counter()
    for u in sorted(units):
        t = pq.read_table(writer.path / f"part-{u:05d}.parquet", columns=["teacher_status", "teacher_error"])
        kinds.update(e.split(":", 1)[0] for s, e in zip(t.column("teacher_status").to_pylist(),
                                                         t.column("teacher_error").to_pylist(), strict=True)
                     if s == "failed" and is_retryable_error(e))
    return ", ".join(f"{k}: {n}" for k, n in kinds.most_common())


def _write_attempt(writer: StageWriter, cfg: SynthesizeConfig, stats: dict, progress: Progress, batch: dict,
                   reason: str, teacher: dict | None = None) -> None:
    """What an attempt that left the stage incomplete did (``corpus stats`` shows it)."""
    teacher = teacher or _accounting(writer, cfg, stats, progress, batch)
    write_json_atomic(writer.path / ATTEMPT, {"incomplete": reason, **teacher})


def _accounting(writer: StageWriter, cfg: SynthesizeConfig, stats: dict, progress: Progress, batch: dict) -> dict:
    cols = ["teacher_status", "prompt_tokens", "completion_tokens", "cost_usd"]
    tables = [pq.read_table(p, columns=cols) for p in writer._listed()]
    table = pa.concat_tables(tables) if tables else None
    failures: Counter[str] = Counter()
    done = writer.done_units()
    for u, c in writer.unit_counters().items():
        if u in done:
            failures.update({k: c.get(k, 0) for k in ("failed_retryable", "failed_final")})
    statuses: Counter[str] = Counter()
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    if table is not None and table.num_rows:
        statuses.update(table.column("teacher_status").to_pylist())
        for c in totals:
            totals[c] = pc.sum(table.column(c)).as_py() or 0
    return {
        "model": cfg.model,
        "mode": cfg.mode,
        "base_url": cfg.base_url,
        "statuses": dict(sorted(statuses.items())),
        "prompt_tokens": int(totals["prompt_tokens"]),
        "completion_tokens": int(totals["completion_tokens"]),
        "cost_usd": round(float(totals["cost_usd"]), 6),
        "price_per_1m": cfg.price().model_dump() if cfg.price() else None,
        "failed_retryable": failures["failed_retryable"],
        "failed_final": failures["failed_final"],
        "failed_final_retried_with": "--retry-failed",
        "interrupted_requests": interrupted_requests(writer.path / JOURNAL),
        "this_attempt": {**progress.summary(), **dict(sorted(stats.items()))},
        **({"batch": batch} if batch else {}),
    }


def stats(run_dir) -> dict:
    sd = StageDir(run_dir, STAGE)
    m = sd.manifest()
    if m is not None:
        return dict(m.get("teacher", {}))
    attempt = sd.path / ATTEMPT
    return json.loads(attempt.read_text(encoding="utf-8")) if attempt.exists() else {}
