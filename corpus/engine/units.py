"""Run a stage's units on an engine: the engine owns reading, writing, resume and progress.

A stage declares its units (:class:`UnitTask`: the parts a unit reads, and which columns) and a pure
transform ``table -> UnitResult``; :func:`run_units` skips the units already committed, runs the
others on the current engine (each reads its parts, transforms, and commits its own files through a
:class:`~corpus.store.UnitSink`), and reports progress as units finish.

Units assembled by id from rows of many parts (``UnitTask.ids``) are first routed by a shuffle: one task
per input part reads it once and writes each unit's share under ``<stage>/_shuffle/``, so each unit reads
only its own rows and every part is read once, not once per unit.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from corpus.engine.base import Work, current_engine
from corpus.engine.progress import RowProgress
from corpus.store import StageWriter, UnitSink


@dataclass(frozen=True)
class UnitTask:
    """One unit of work: its number (the part it writes) and the Parquet parts it reads."""

    unit: int
    inputs: tuple[str, ...]
    columns: tuple[str, ...] | None = None
    rows: int = 0
    #: read only the rows with these ids (a unit assembled from rows of many parts)
    ids: tuple[str, ...] | None = None
    #: what the transform needs beyond the rows (e.g. the unit's share of a plan made by the driver)
    payload: Any = None


@dataclass
class UnitResult:
    """What a transform returns for one unit."""

    kept: pa.Table
    dropped: pa.Table | None = None
    outputs: dict[str, pa.Table] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)


#: ``transform(rows, task) -> UnitResult``: pure, the same on every engine
Transform = Callable[[pa.Table, "UnitTask"], UnitResult]


def read_unit(task: UnitTask) -> pa.Table:
    """The rows of a unit: its input parts (only the rows in ``task.ids`` when given), concatenated.

    Parts are read one at a time and filtered before the next is read, so a unit assembled from rows of
    many parts holds only its own rows.
    """
    cols = list(task.columns) if task.columns else None
    wanted = pa.array(task.ids, pa.string()) if task.ids is not None else None
    tables = []
    for p in task.inputs:
        t = pq.read_table(p, columns=cols)
        tables.append(t.filter(pc.is_in(t.column("id"), value_set=wanted)) if wanted is not None else t)
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def execute_unit(task: UnitTask, transform: Transform, sink: UnitSink) -> dict[str, int]:
    """Read, transform and commit one unit (runs on an engine worker); returns its row counts."""
    result = transform(read_unit(task), task)
    sink.write(task.unit, result.kept, result.dropped, result.outputs, result.counters)
    dropped = result.dropped.num_rows if result.dropped is not None else 0
    return {"unit": task.unit, "kept": result.kept.num_rows, "dropped": dropped, "rows": task.rows}


def part_tasks(parts: Sequence, done: set[int], columns: Sequence[str] | None = None) -> list[UnitTask]:
    """One unit per upstream part (unit i reads part i), without the units already done."""
    cols = tuple(columns) if columns else None
    return [UnitTask(unit, (str(p),), cols, pq.ParquetFile(p).metadata.num_rows)
            for unit, p in enumerate(parts) if unit not in done]


@dataclass(frozen=True)
class ScatterTask:
    """One input part of a shuffle: the row positions it sends to each unit (in part order)."""

    part: int
    path: str
    columns: tuple[str, ...] | None
    units: tuple[int, ...]
    positions: tuple[tuple[int, ...], ...]


def _share_path(scratch: Path, unit: int, part: int) -> Path:
    return scratch / f"u{unit:05d}" / f"p{part:05d}.parquet"


def scatter_part(task: ScatterTask, scratch: str) -> int:
    """Read one part and write each unit's rows of it (a temporary name, then a rename); returns rows sent."""
    t = pq.read_table(task.path, columns=list(task.columns) if task.columns else None)
    sent = 0
    for unit, pos in zip(task.units, task.positions):
        path = _share_path(Path(scratch), unit, task.part)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        pq.write_table(t.take(pa.array(pos, pa.int64())), tmp, compression="lz4")
        os.replace(tmp, path)
        sent += len(pos)
    return sent


def shuffle_by_id(tasks: Sequence[UnitTask], scratch: Path) -> list[UnitTask]:
    """Route the rows of id-assembled units (``ids`` over several inputs) to one file per (unit, part).

    Reads the ``id`` column of every input part in the driver, runs one scatter task per part on the current
    engine, and returns the tasks rewritten to read only their shares. Every row whose id a unit lists goes
    to that unit, in the order :func:`read_unit` would have read it, so the units see the same tables.
    """
    wanted: dict[str, set[int]] = defaultdict(set)
    for t in tasks:
        for rid in t.ids or ():
            wanted[rid].add(t.unit)
    parts = sorted({p for t in tasks for p in t.inputs})
    columns = tasks[0].columns
    if any(t.columns != columns for t in tasks):
        raise ValueError("shuffle_by_id: the units read different columns")
    shutil.rmtree(scratch, ignore_errors=True)
    scatter: list[ScatterTask] = []
    shares: dict[int, dict[str, str]] = defaultdict(dict)
    for k, path in enumerate(parts):
        routes: dict[int, list[int]] = defaultdict(list)
        for pos, rid in enumerate(pq.read_table(path, columns=["id"]).column("id").to_pylist()):
            for unit in sorted(wanted.get(rid, ())):
                routes[unit].append(pos)
        if routes:
            units = tuple(sorted(routes))
            scatter.append(ScatterTask(k, path, columns, units, tuple(tuple(routes[u]) for u in units)))
            for u in units:
                shares[u][path] = str(_share_path(scratch, u, k))
    rows = sum(len(p) for s in scatter for p in s.positions)
    with current_engine() as engine:
        for _ in engine.map(partial(scatter_part, scratch=str(scratch)), scatter, work="cpu", rows=rows):
            pass
    out = []
    for t in tasks:
        if t.ids is None:
            out.append(t)
        elif shares.get(t.unit):  # its shares in the order of its inputs, as read_unit reads them
            out.append(replace(t, inputs=tuple(shares[t.unit][p] for p in t.inputs if p in shares[t.unit]),
                               ids=None))
        else:  # no rows: its first input with no ids is an empty table with the columns
            out.append(replace(t, inputs=t.inputs[:1], ids=()))
    return out


def _needs_shuffle(tasks: Sequence[UnitTask]) -> bool:
    return sum(1 for t in tasks if t.ids is not None and len(t.inputs) > 1) > 1


def run_units(writer: StageWriter, transform: Transform, tasks: Sequence[UnitTask], *, work: Work = "cpu",
              desc: str | None = None, total_rows: int | None = None) -> Counter:
    """Run ``transform`` over every task on the current engine; returns kept/dropped row totals."""
    fn = partial(execute_unit, transform=transform, sink=writer.sink())
    scratch = writer.path / "_shuffle"
    if _needs_shuffle(tasks):
        tasks = shuffle_by_id(tasks, scratch)
    todo = sum(t.rows for t in tasks)
    total = total_rows if total_rows is not None else todo
    progress = RowProgress(desc or writer.stage, total, done=total - todo)
    totals: Counter[str] = Counter()
    try:
        with current_engine() as engine:
            for _, counts in engine.map(fn, list(tasks), work=work, rows=todo):
                totals.update({"kept": counts["kept"], "dropped": counts["dropped"]})
                progress.update(counts["rows"])
    finally:
        progress.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return totals
