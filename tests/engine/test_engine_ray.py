"""The Ray engine on a real local Ray cluster: the same units as the local engine, the same files, resumable
across engines."""

from __future__ import annotations

import os

import pytest

from corpus.engine import EngineSpec, RayEngine, use_engine
from corpus.engine.units import part_tasks, run_units
from corpus.testing.engine_units import double_even, pid_of, toy_writer, write_upstream

pytest.importorskip("ray.data")


def test_ray_units_run_as_tasks_and_resume_a_local_run(tmp_path):
    parts = write_upstream(tmp_path, n_parts=6)
    # reference: every unit on the local engine, in-process
    ref = toy_writer(tmp_path / "local")
    with use_engine(EngineSpec("local", workers=1)):
        run_units(ref, double_even, part_tasks(parts, ref.done_units()))
    expected = ref.finish()["output_fingerprint"]

    # a run that committed three units locally, then was stopped; resumed on Ray
    half = toy_writer(tmp_path / "mixed")
    with use_engine(EngineSpec("local", workers=1)):
        run_units(half, double_even, part_tasks(parts[:3], half.done_units()))
    resumed = toy_writer(tmp_path / "mixed")
    tasks = part_tasks(parts, resumed.done_units())
    assert [t.unit for t in tasks] == [3, 4, 5]
    with use_engine(EngineSpec("ray", workers=2)) as engine:
        assert isinstance(engine, RayEngine)
        pids = {pid for _, (_, pid) in engine.map(pid_of, list(range(4)))}
        assert os.getpid() not in pids
        totals = run_units(resumed, double_even, tasks)
    assert totals["kept"] + totals["dropped"] == 3 * 7
    manifest = resumed.finish()
    assert manifest["output_fingerprint"] == expected
    assert manifest["timings"]["units_resumed"] == 3
