"""The local engine: CPU units on a process pool, serial units in-process, failures surface, the unit runner."""

from __future__ import annotations

import os

import pytest

from corpus.engine import EngineError, EngineSpec, LocalEngine, use_engine
from corpus.engine.units import part_tasks, run_units
from corpus.testing.engine_units import boom, double_even, pid_of, toy_writer, write_upstream


def test_cpu_units_run_in_worker_processes_and_every_unit_once():
    engine = LocalEngine(EngineSpec("local", workers=2, min_parallel_rows=0))
    try:
        out = list(engine.map(pid_of, list(range(12)), work="cpu"))
    finally:
        engine.close()
    assert sorted(i for i, _ in out) == list(range(12))
    assert all(res[0] == i for i, res in out)
    pids = {res[1] for _, res in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # one worker may take every tiny task


def test_serial_units_stay_in_this_process():
    engine = LocalEngine(EngineSpec("local", workers=2, min_parallel_rows=0))
    out = list(engine.map(pid_of, [0, 1, 2], work="serial"))
    assert [i for i, _ in out] == [0, 1, 2] and {r[1] for _, r in out} == {os.getpid()}


def test_a_failing_unit_raises_in_the_driver():
    engine = LocalEngine(EngineSpec("local", workers=2, min_parallel_rows=0))
    try:
        with pytest.raises(ValueError, match="unit 3 is broken"):
            list(engine.map(boom, list(range(8)), work="cpu"))
    finally:
        engine.close()


def test_small_work_stays_in_process():
    engine = LocalEngine(EngineSpec("local", workers=2))  # default threshold: 8000 rows
    out = list(engine.map(pid_of, [0, 1, 2], work="cpu", rows=300))
    assert {r[1] for _, r in out} == {os.getpid()}


def test_spec_rejects_unknown_engine_and_bad_workers():
    with pytest.raises(EngineError, match="not one of"):
        EngineSpec("spark")  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="at least 1"):
        EngineSpec("local", workers=0)


@pytest.mark.parametrize("workers", [1, 2])
def test_run_units_commits_every_unit_and_resumes(tmp_path, workers):
    parts = write_upstream(tmp_path)
    run = tmp_path / f"run{workers}"
    writer = toy_writer(run)
    with use_engine(EngineSpec("local", workers=workers, min_parallel_rows=0)):
        totals = run_units(writer, double_even, part_tasks(parts, writer.done_units()), work="cpu")
    manifest = writer.finish()
    assert manifest["rows_in"] == 42 and manifest["rows_out"] == totals["kept"] == 21
    assert manifest["rows_dropped"] == totals["dropped"] == 21
    assert manifest["drop_reasons"] == {"odd": 21}
    # a second writer after losing two units redoes exactly those
    fingerprint = manifest["output_fingerprint"]
    (run / "toy" / "_manifest.json").unlink()
    for u in (1, 4):
        (run / "toy" / f"part-{u:05d}.parquet").unlink()
    again = toy_writer(run)
    tasks = part_tasks(parts, again.done_units())
    assert [t.unit for t in tasks] == [1, 4]
    with use_engine(EngineSpec("local", workers=workers, min_parallel_rows=0)):
        run_units(again, double_even, tasks, work="cpu")
    assert again.finish()["output_fingerprint"] == fingerprint
