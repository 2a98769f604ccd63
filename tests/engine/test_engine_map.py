"""The local engine: CPU units on a process pool, serial units in-process, failures surface, the unit runner."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from corpus.engine import EngineError, EngineSpec, LocalEngine, use_engine
from corpus.engine.units import UnitResult, part_tasks, run_units
from corpus.schema import Column, Schema
from corpus.store import StageWriter


def _pid_of(task: int) -> tuple[int, int]:
    return task, os.getpid()


def _boom(task: int) -> int:
    if task == 3:
        raise ValueError("unit 3 is broken")
    return task


def test_cpu_units_run_in_worker_processes_and_every_unit_once():
    engine = LocalEngine(EngineSpec("local", workers=2, min_parallel_rows=0))
    try:
        out = list(engine.map(_pid_of, list(range(12)), work="cpu"))
    finally:
        engine.close()
    assert sorted(i for i, _ in out) == list(range(12))
    assert all(res[0] == i for i, res in out)
    pids = {res[1] for _, res in out}
    assert os.getpid() not in pids and len(pids) == 2


def test_serial_units_stay_in_this_process():
    engine = LocalEngine(EngineSpec("local", workers=2, min_parallel_rows=0))
    out = list(engine.map(_pid_of, [0, 1, 2], work="serial"))
    assert [i for i, _ in out] == [0, 1, 2] and {r[1] for _, r in out} == {os.getpid()}


def test_a_failing_unit_raises_in_the_driver():
    engine = LocalEngine(EngineSpec("local", workers=2, min_parallel_rows=0))
    try:
        with pytest.raises(ValueError, match="unit 3 is broken"):
            list(engine.map(_boom, list(range(8)), work="cpu"))
    finally:
        engine.close()


def test_small_work_stays_in_process():
    engine = LocalEngine(EngineSpec("local", workers=2))  # default threshold: 8000 rows
    out = list(engine.map(_pid_of, [0, 1, 2], work="cpu", rows=300))
    assert {r[1] for _, r in out} == {os.getpid()}


def test_spec_rejects_unknown_engine_and_bad_workers():
    with pytest.raises(EngineError, match="not one of"):
        EngineSpec("spark")  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="at least 1"):
        EngineSpec("local", workers=0)


def _schema(name: str, cols: list[tuple[str, pa.DataType]]) -> Schema:
    return Schema(name, 1, tuple(Column(n, t, nullable=(n != "id")) for n, t in cols))


TOY = _schema("toy", [("id", pa.string()), ("x", pa.int64())])
TOY_DROPPED = _schema("toy_dropped", [("id", pa.string()), ("x", pa.int64()), ("drop_reason", pa.string()),
                                      ("detail", pa.string())])


def _double_even(table: pa.Table, task) -> UnitResult:
    rows = table.to_pylist()
    kept = [{"id": r["id"], "x": r["x"] * 2} for r in rows if r["x"] % 2 == 0]
    dropped = [{"id": r["id"], "x": r["x"], "drop_reason": "odd", "detail": f"x={r['x']}"}
               for r in rows if r["x"] % 2]
    return UnitResult(pa.Table.from_pylist(kept), pa.Table.from_pylist(dropped) if dropped else None,
                      counters={"rows_in": len(rows)})


def _upstream(tmp_path, n_parts: int = 6, rows: int = 7) -> list:
    parts = []
    for p in range(n_parts):
        path = tmp_path / "up" / f"part-{p:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [f"r{p}-{i}" for i in range(rows)], "x": list(range(p, p + rows))}), path)
        parts.append(path)
    return parts


def _toy_writer(run, force=False) -> StageWriter:
    return StageWriter(run, "toy", TOY, config={"k": 1}, input_fingerprint="up", force=force,
                       dropped_schema=TOY_DROPPED)


@pytest.mark.parametrize("workers", [1, 2])
def test_run_units_commits_every_unit_and_resumes(tmp_path, workers):
    parts = _upstream(tmp_path)
    run = tmp_path / f"run{workers}"
    writer = _toy_writer(run)
    with use_engine(EngineSpec("local", workers=workers, min_parallel_rows=0)):
        totals = run_units(writer, _double_even, part_tasks(parts, writer.done_units()), work="cpu")
    manifest = writer.finish()
    assert manifest["rows_in"] == 42 and manifest["rows_out"] == totals["kept"] == 21
    assert manifest["rows_dropped"] == totals["dropped"] == 21
    assert manifest["drop_reasons"] == {"odd": 21}
    # a second writer after losing two units redoes exactly those
    fingerprint = manifest["output_fingerprint"]
    (run / "toy" / "_manifest.json").unlink()
    for u in (1, 4):
        (run / "toy" / f"part-{u:05d}.parquet").unlink()
    again = _toy_writer(run)
    tasks = part_tasks(parts, again.done_units())
    assert [t.unit for t in tasks] == [1, 4]
    with use_engine(EngineSpec("local", workers=workers, min_parallel_rows=0)):
        run_units(again, _double_even, tasks, work="cpu")
    assert again.finish()["output_fingerprint"] == fingerprint
