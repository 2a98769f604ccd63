"""Run a stage's units on an engine: the engine owns reading, writing, resume and progress.

A stage declares its units (:class:`UnitTask`: the parts a unit reads, and which columns) and a pure
transform ``table -> UnitResult``; :func:`run_units` skips the units already committed, runs the
others on the current engine (each reads its parts, transforms, and commits its own files through a
:class:`~corpus.store.UnitSink`), and reports progress as units finish.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
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


def run_units(writer: StageWriter, transform: Transform, tasks: Sequence[UnitTask], *, work: Work = "cpu",
              desc: str | None = None, total_rows: int | None = None) -> Counter:
    """Run ``transform`` over every task on the current engine; returns kept/dropped row totals."""
    fn = partial(execute_unit, transform=transform, sink=writer.sink())
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
    return totals
