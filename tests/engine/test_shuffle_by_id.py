"""Units assembled by id from many parts: a shuffle routes each part's rows once, and every unit sees the same
table it would have read by filtering every part."""

from __future__ import annotations

import random
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import corpus.engine.units as units
from corpus.engine import EngineSpec, use_engine
from corpus.engine.units import UnitTask, read_unit, run_units, shuffle_by_id
from corpus.testing.engine_units import double_even, toy_writer, write_upstream


def _tasks(parts, seed: int = 7, n_parts: int = 6) -> list[UnitTask]:
    """Five units over random ids of the first ``n_parts`` toy parts (7 rows each), one listing an id twice, one
    empty, one with a missing id; each unit lists every input part."""
    ids = [f"r{p}-{i}" for p in range(n_parts) for i in range(7)]
    random.Random(seed).shuffle(ids)
    chunks = [ids[0:9], ids[9:20] + ids[9:10], [], ids[20:42] + ["nowhere"], ["nowhere"]]
    inputs = tuple(str(p) for p in parts)
    return [UnitTask(u, inputs, ("id", "x"), rows=len(c), ids=tuple(c)) for u, c in enumerate(chunks)]


def test_each_unit_reads_the_same_rows_after_the_shuffle(tmp_path):
    parts = write_upstream(tmp_path)
    # a duplicate id in two parts: filtering brought both rows, so must the shuffle
    pq.write_table(pa.table({"id": ["r0-3", "r5-1"], "x": [100, 101]}), tmp_path / "up" / "part-00006.parquet")
    parts.append(tmp_path / "up" / "part-00006.parquet")
    tasks = _tasks(parts)
    with use_engine(EngineSpec("local", workers=2, min_parallel_rows=0)):
        routed = shuffle_by_id(tasks, tmp_path / "scratch")
    assert [t.unit for t in routed] == [t.unit for t in tasks]
    for before, after in zip(tasks, routed):
        assert read_unit(after).equals(read_unit(before)), before.unit
        assert len(after.inputs) <= len(parts)
    assert read_unit(routed[2]).num_rows == 0 and read_unit(routed[4]).num_rows == 0
    assert read_unit(routed[0]).num_rows == 9
    files = sorted(p.relative_to(tmp_path / "scratch").as_posix() for p in (tmp_path / "scratch").rglob("*"))
    assert not [f for f in files if ".tmp-" in f]


@pytest.mark.parametrize("workers", [1, 2])
def test_run_units_reads_each_part_once_and_leaves_no_scratch(tmp_path, workers):
    parts = write_upstream(tmp_path, n_parts=8)
    tasks = _tasks(parts, seed=workers, n_parts=8)
    expected = {}
    for t in tasks:  # what each unit would hold by filtering every part
        expected[t.unit] = sorted(read_unit(t).column("id").to_pylist())
    reads: list[str] = []
    real = pq.read_table

    def counting(path, *a, **k):
        reads.append(str(path))
        return real(path, *a, **k)

    writer = toy_writer(tmp_path / "run")
    with mock.patch.object(units.pq, "read_table", counting), \
            use_engine(EngineSpec("local", workers=workers, min_parallel_rows=0)):
        run_units(writer, double_even, tasks, work="cpu")
    manifest = writer.finish()
    if workers == 1:  # in-process: every read is seen
        upstream = sorted(r for r in reads if "/up/" in r)
        # each part: its id column in the driver and its scatter task; the two units without rows read the first
        # part's (empty) selection
        assert upstream == sorted([str(p) for p in parts] * 2 + [str(parts[0])] * 2)
    assert not (tmp_path / "run" / "toy" / "_shuffle").exists()
    kept = pq.read_table(sorted((tmp_path / "run" / "toy").glob("part-*.parquet"))).column("id").to_pylist()
    dropped = sum(expected.values(), [])
    assert manifest["rows_out"] + manifest["rows_dropped"] == len(dropped)
    assert set(kept) <= set(dropped)
