"""Engines run a stage's units of work: ``local`` (a process pool on this machine) or ``ray`` (Ray Data).

A stage hands an engine a picklable function and a list of unit tasks; the engine calls the function
once per task and yields ``(index, result)`` as tasks finish. The function itself reads its input
parts and writes its unit's checkpoint files (see :mod:`corpus.engine.units`), so no row data flows
through the driver and memory is bounded by the part size times the number of workers. Both engines
run the same function on the same Parquet parts, so a run started on one resumes on the other.

``work`` says what kind of work a unit is:

- ``cpu``: CPU-bound (parsing, image stitching): run in parallel, one process per core;
- ``serial``: must run in the calling process (a model already loaded, an async client).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

log = logging.getLogger(__name__)

EngineName = Literal["local", "ray"]
Work = Literal["cpu", "serial"]
ENGINES: tuple[str, ...] = ("local", "ray")


class EngineError(RuntimeError):
    """The engine could not be started or a unit failed on it."""


@dataclass(frozen=True)
class EngineSpec:
    """Which engine runs the stages: the ``--engine``, ``--workers`` and ``--ray-address`` options."""

    name: EngineName = "local"
    workers: int | None = None
    ray_address: str | None = None
    #: local engine: below this many rows a stage runs its units in-process (starting worker processes costs
    #: about 2-3 s, the work of ~8K rows of filter on one core); Ray always runs units as tasks
    min_parallel_rows: int = 8000

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise EngineError(f"--engine {self.name!r}: not one of {list(ENGINES)}")
        if self.workers is not None and self.workers < 1:
            raise EngineError(f"--workers {self.workers}: must be at least 1")

    @property
    def cpu_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


class Engine:
    """Base class: ``map`` runs ``fn`` on every task and yields ``(index, result)`` in completion order."""

    spec: EngineSpec

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], work: Work = "cpu",
            rows: int | None = None) -> Iterator[tuple[int, Any]]:
        """Run ``fn`` on every task; ``rows`` (the rows the tasks hold, when known) lets small work stay serial."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the engine started (worker processes, a local Ray cluster)."""

    @staticmethod
    def _serial(fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, fn(task)


def _modules_of(fn: Any, depth: int = 0) -> list[str]:
    """The ``corpus`` modules defining ``fn`` and the functions bound into it (``functools.partial``): what a
    worker imports to unpickle the task function."""
    if depth > 4:
        return []
    inner = [fn.func, *fn.args, *fn.keywords.values()] if isinstance(fn, partial) else []
    mods = [m for m in [getattr(fn, "__module__", None)] if isinstance(m, str) and m.startswith("corpus.")]
    return sorted({*mods, *(m for x in inner if callable(x) for m in _modules_of(x, depth + 1))})


class LocalEngine(Engine):
    """This machine: ``cpu`` units on a pool of ``workers`` processes (default: one per core)."""

    def __init__(self, spec: EngineSpec | None = None):
        self.spec = spec or EngineSpec()
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self, fn: Callable[[Any], Any]) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers start from a clean interpreter, never a copy of a driver holding locks or a model
            method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(method)
            if method == "forkserver":  # import the heavy modules once in the server, not in every worker
                ctx.set_forkserver_preload(["pyarrow", "pyarrow.parquet", "corpus.engine.units", *_modules_of(fn)])
            self._pool = ProcessPoolExecutor(self.spec.cpu_workers, mp_context=ctx)
        return self._pool

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], work: Work = "cpu",
            rows: int | None = None) -> Iterator[tuple[int, Any]]:
        small = rows is not None and rows < self.spec.min_parallel_rows
        if work == "serial" or self.spec.cpu_workers == 1 or len(tasks) <= 1 or small:
            yield from self._serial(fn, tasks)
            return
        pool = self._get_pool(fn)
        limit = 2 * self.spec.cpu_workers  # bounded in flight: results never pile up in memory
        pending: dict[Future, int] = {}
        todo = iter(enumerate(tasks))
        try:
            while True:
                for i, task in todo:
                    pending[pool.submit(fn, task)] = i
                    if len(pending) >= limit:
                        break
                if not pending:
                    return
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    yield pending.pop(fut), fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _ray_call(row: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    return {"index": row["index"], "result": pickle.dumps(fn(pickle.loads(row["task"])))}


class RayEngine(Engine):
    """A Ray cluster (``ray_address``; default: a local one started here): ``cpu`` units as Ray Data tasks.

    The run directory must be on storage every node sees (the units read and write it directly).
    """

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        self._started_here = False
        self._ready = False

    def connect(self) -> None:
        """Join or start the cluster (on the first parallel stage, so serial stages never pay for it); also
        called by stages that build their own Ray Data pipelines (sampling through ``ray.data.llm``)."""
        if self._ready:
            return
        try:
            import ray
            from ray.data import DataContext
        except ImportError as exc:  # pragma: no cover - depends on the extra
            raise EngineError("--engine ray needs Ray Data: pip install 'guardreasoner-corpus[ray]'") from exc
        spec = self.spec
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                      "log_to_driver": False}
            if spec.ray_address:
                kwargs["address"] = spec.ray_address
            else:
                kwargs["num_cpus"] = spec.cpu_workers
                kwargs["object_store_memory"] = 256 * 1024 * 1024
            try:
                ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 - ray raises many kinds; name the address
                where = spec.ray_address or "a local cluster"
                raise EngineError(f"--engine ray: cannot start or join {where}: {exc}") from exc
            self._started_here = True
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        self._ready = True
        log.info("ray engine: %s, %s CPUs", spec.ray_address or "local cluster", ray.cluster_resources().get("CPU"))

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], work: Work = "cpu",
            rows: int | None = None) -> Iterator[tuple[int, Any]]:
        if work == "serial" or not tasks:
            yield from self._serial(fn, tasks)
            return
        self.connect()
        import ray.data

        items = [{"index": i, "task": pickle.dumps(t)} for i, t in enumerate(tasks)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map(_ray_call, fn_kwargs={"fn": fn}, num_cpus=1)
        for row in ds.iter_rows():
            yield int(row["index"]), pickle.loads(row["result"])

    def close(self) -> None:
        if self._started_here:
            import ray

            ray.shutdown()
            self._started_here = False
        self._ready = False


def make_engine(spec: EngineSpec | None = None) -> Engine:
    spec = spec or EngineSpec()
    return RayEngine(spec) if spec.name == "ray" else LocalEngine(spec)


_current: ContextVar[Engine | None] = ContextVar("corpus_engine", default=None)


@contextmanager
def use_engine(spec: EngineSpec | None = None) -> Iterator[Engine]:
    """Make an engine for the stages run inside the block (``current_engine()``); close it after."""
    engine = make_engine(spec)
    token = _current.set(engine)
    try:
        yield engine
    finally:
        _current.reset(token)
        engine.close()


@contextmanager
def _default_engine() -> Iterator[Engine]:
    engine = _current.get()
    if engine is not None:
        yield engine
        return
    with use_engine() as engine:
        yield engine


def active_engine() -> Engine | None:
    """The engine of the enclosing ``use_engine`` block, or None outside one (then a stage runs locally)."""
    return _current.get()


def current_engine():
    """The engine of the enclosing ``use_engine`` block, or a local one for the duration of a ``with``."""
    return _default_engine()
