"""Toy units for engine tests: importable by engine workers (a Ray worker imports functions by module)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from corpus.engine.units import UnitResult
from corpus.schema import Column, Schema
from corpus.store import StageWriter


def _schema(name: str, cols: list[tuple[str, pa.DataType]]) -> Schema:
    return Schema(name, 1, tuple(Column(n, t, nullable=(n != "id")) for n, t in cols))


TOY = _schema("toy", [("id", pa.string()), ("x", pa.int64())])
TOY_DROPPED = _schema("toy_dropped", [("id", pa.string()), ("x", pa.int64()), ("drop_reason", pa.string()),
                                      ("detail", pa.string())])


def pid_of(task: int) -> tuple[int, int]:
    """(task, the pid of the process that ran it)."""
    return task, os.getpid()


def boom(task: int) -> int:
    if task == 3:
        raise ValueError("unit 3 is broken")
    return task


def double_even(table: pa.Table, task) -> UnitResult:
    """Keep rows with an even ``x`` (doubled), drop the odd ones with a reason."""
    rows = table.to_pylist()
    kept = [{"id": r["id"], "x": r["x"] * 2} for r in rows if r["x"] % 2 == 0]
    dropped = [{"id": r["id"], "x": r["x"], "drop_reason": "odd", "detail": f"x={r['x']}"}
               for r in rows if r["x"] % 2]
    return UnitResult(pa.Table.from_pylist(kept, schema=TOY.arrow),
                      pa.Table.from_pylist(dropped, schema=TOY_DROPPED.arrow) if dropped else None,
                      counters={"rows_in": len(rows)})


def write_upstream(root: Path, n_parts: int = 6, rows: int = 7) -> list[Path]:
    """``n_parts`` Parquet parts of ``rows`` toy rows each under ``root/up``."""
    parts = []
    for p in range(n_parts):
        path = root / "up" / f"part-{p:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [f"r{p}-{i}" for i in range(rows)], "x": list(range(p, p + rows))}), path)
        parts.append(path)
    return parts


def toy_writer(run: Path, force: bool = False) -> StageWriter:
    return StageWriter(run, "toy", TOY, config={"k": 1}, input_fingerprint="up", force=force,
                       dropped_schema=TOY_DROPPED)
