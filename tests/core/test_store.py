"""The checkpoint store: atomic parts, manifests, skip, force, resume, schema enforcement."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from corpus.schema import Schema, SchemaError, load_schema, parse_type
from corpus.store import CorruptPartError, RunDirLocked, StageDir, StageWriter, lock_run_dir

SAMPLE = load_schema("sample")


def row(i: int, **kw) -> dict:
    base = {
        "id": f"{i:016x}", "source": "s", "source_split": "train", "source_id": str(i), "modality": "text",
        "prompt": f"prompt {i} {{braces}}", "response": None, "images": [], "request_label": "harmful",
        "response_label": None, "refusal_label": None, "label_origin": {"request": "gold", "response": None},
        "categories": [], "raw_categories": [], "meta": "{}",
    }
    base.update(kw)
    return base


def table(rows):
    return pa.Table.from_pylist(rows, schema=SAMPLE.arrow)


def dropped(reason: str, n: int = 1):
    return pa.Table.from_pylist([{"drop_reason": reason, "detail": "x", "id": None, "source": "s",
                                  "source_split": "train", "source_id": str(i), "record": "{}"} for i in range(n)])


def test_units_manifest_and_skip(tmp_path):
    w = StageWriter(tmp_path, "ingest", SAMPLE, {"a": 1}, "fp")
    assert not w.skipped
    w.write_unit(0, table([row(0), row(1)]), dropped("bad", 2), counters={"rows_in": 4})
    w.write_unit(1, table([row(2)]), None, counters={"rows_in": 1})
    m = w.finish()
    assert (m["rows_in"], m["rows_out"], m["rows_dropped"]) == (5, 3, 2)
    assert m["drop_reasons"] == {"bad": 2}
    assert json.loads((tmp_path / "ingest" / "_manifest.json").read_text())["output_fingerprint"] == m[
        "output_fingerprint"]
    again = StageWriter(tmp_path, "ingest", SAMPLE, {"a": 1}, "fp")
    assert again.skipped
    assert StageDir(tmp_path, "ingest").read().num_rows == 3


@pytest.mark.parametrize("change", ["config", "input", "force"])
def test_changed_config_input_or_force_reruns(tmp_path, change):
    w = StageWriter(tmp_path, "ingest", SAMPLE, {"a": 1}, "fp")
    w.write_unit(0, table([row(0)]))
    w.finish()
    cfg, fp, force = {"a": 1}, "fp", False
    if change == "config":
        cfg = {"a": 2}
    elif change == "input":
        fp = "other"
    else:
        force = True
    w2 = StageWriter(tmp_path, "ingest", SAMPLE, cfg, fp, force=force)
    assert not w2.skipped
    assert w2.done_units() == set()  # stale parts removed
    assert not (tmp_path / "ingest" / "_manifest.json").exists()


def test_resume_keeps_finished_units_only_for_same_key(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    w.write_unit(0, table([row(0)]))
    # killed here: no manifest
    w2 = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    assert w2.done_units() == {0} and w2.resumed_units == 1
    w3 = StageWriter(tmp_path, "st", SAMPLE, {"a": 2}, "fp")
    assert w3.done_units() == set()


def test_no_temporary_files_left_and_tmp_ignored(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {}, "fp")
    (w.path / ".part-00003.parquet.tmp-1").write_bytes(b"half")  # a killed writer's leftover
    w.write_unit(0, table([row(0)]))
    assert w.done_units() == {0}
    assert [p.name for p in w.parts()] == ["part-00000.parquet"]


def test_schema_enforced_on_write(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {}, "fp")
    bad = table([row(0)]).set_column(4, "modality", pa.array(["video"]))
    with pytest.raises(SchemaError, match="modality"):
        w.write_unit(0, bad)
    with pytest.raises(SchemaError, match="request_label"):
        w.write_unit(0, table([row(0, request_label="maybe")]))
    missing = table([row(0)]).drop_columns(["meta"])
    with pytest.raises(SchemaError, match="missing columns"):
        w.write_unit(0, missing)
    with pytest.raises(SchemaError, match="label_origin.request"):
        w.write_unit(0, table([row(0, label_origin={"request": "guess", "response": None})]))
    assert w.done_units() == set()


def test_braces_survive_round_trip(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {}, "fp")
    text = "a {x} }{ {{y}} {0} %s"
    w.write_unit(0, table([row(0, prompt=text)]))
    assert StageDir(tmp_path, "st").read().column("prompt").to_pylist() == [text]


def test_parse_type_nested():
    t = parse_type("list<struct<a:string,b:list<int32>>>")
    assert t == pa.list_(pa.struct([("a", pa.string()), ("b", pa.list_(pa.int32()))]))


def test_extend_adds_columns():
    extra = Schema("x", 1, (SAMPLE.columns[0],) + ())
    assert SAMPLE.extend(extra).names == SAMPLE.names


def _finished_two_units(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    w.write_unit(0, table([row(0), row(1)]), dropped("bad", 2), counters={"rows_in": 4})
    w.write_unit(1, table([row(2)]), dropped("worse", 1), counters={"rows_in": 2})
    return w.finish()


def test_readers_verify_every_part_and_output_against_the_manifest(tmp_path):
    m = _finished_two_units(tmp_path)
    assert set(m["part_files"]) == {"part-00000.parquet", "part-00001.parquet", "dropped/part-00000.parquet",
                                    "dropped/part-00001.parquet"}
    sd = StageDir(tmp_path, "st")
    assert sd.fingerprint() == m["output_fingerprint"] and sd.read().num_rows == 3
    good = (sd.path / "part-00000.parquet").read_bytes()
    shutil.copy(sd.path / "part-00001.parquet", sd.path / "part-00000.parquet")  # valid, but another unit's rows
    with pytest.raises(CorruptPartError, match=r"part-00000\.parquet: does not match the manifest"):
        sd.read()
    (sd.path / "part-00000.parquet").write_bytes(good)
    assert sd.read().num_rows == 3
    data = bytearray((sd.path / "part-00001.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the hash tells
    (sd.path / "part-00001.parquet").write_bytes(bytes(data))
    with pytest.raises(CorruptPartError, match=r"part-00001\.parquet: .*sha256"):
        sd.parts()
    with pytest.raises(CorruptPartError, match="part-00001"):
        sd.fingerprint()
    (sd.path / "part-00001.parquet").unlink()
    with pytest.raises(CorruptPartError, match="part-00001.parquet: .*missing"):
        sd.parts()


def test_a_damaged_dropped_part_reopens_the_stage_and_only_its_unit_is_redone(tmp_path):
    _finished_two_units(tmp_path)
    d = tmp_path / "st" / "dropped" / "part-00001.parquet"
    d.write_bytes(d.read_bytes()[:-10])
    w = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    assert not w.skipped and w.done_units() == {0} and w.redone_units == [1]
    w.write_unit(1, table([row(2)]), dropped("worse", 1), counters={"rows_in": 2})
    m = w.finish()
    assert (m["rows_in"], m["rows_out"], m["rows_dropped"]) == (6, 3, 3) and m["timings"]["units_redone"] == [1]
    assert StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp").skipped


def test_stale_temporaries_of_dead_processes_removed_live_ones_kept(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    w.write_unit(0, table([row(0)]))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = [w.path / f".part-00001.parquet.tmp-{dead}", w.path / "_units" / f".00001.json.tmp-{dead}",
             w.path / "dropped" / f".part-00001.parquet.tmp-{dead}"]
    live = w.path / f".part-00002.parquet.tmp-{os.getppid()}"  # a process that still runs
    for f in [*stale, live]:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"half")
    w2 = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    assert sorted(w2.removed_temporaries) == sorted(stale) and live.exists()
    assert w2.done_units() == {0}


LOCK_HOLDER = """
import sys, time
from corpus.store import lock_run_dir
lock = lock_run_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_run_dir_lock_names_the_holder_and_dies_with_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirLocked, match=f"pid {holder.pid}"):
            lock_run_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    lock = lock_run_dir(tmp_path)
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    lock.close()


def test_a_part_the_stage_rewrites_itself_is_not_mistaken_for_damage(tmp_path):
    from corpus.store import write_parquet_atomic

    w = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    w.write_unit(0, table([row(0), row(1)]))
    write_parquet_atomic(table([row(0, request_label="unharmful"), row(1)]), w.path / "part-00000.parquet")
    again = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")  # resumed (no manifest yet)
    assert again.done_units() == {0} and again.redone_units == []
    (w.path / "part-00000.parquet").write_bytes((w.path / "part-00000.parquet").read_bytes()[:-5])  # not via the store
    assert StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp").redone_units == [0]


def test_a_unit_without_file_records_is_kept_when_readable_and_redone_when_not(tmp_path):
    w = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    w.write_unit(0, table([row(0)]), counters={"rows_in": 1})
    w.write_unit(1, table([row(1)]), counters={"rows_in": 1})
    for u in (0, 1):  # as an older writer left them: counters only
        (w.path / "_units" / f"{u:05d}.json").write_text('{"rows_in": 1}')
    (w.path / "part-00001.parquet").write_bytes(b"PAR1 truncated")
    again = StageWriter(tmp_path, "st", SAMPLE, {"a": 1}, "fp")
    assert again.done_units() == {0} and again.redone_units == [1]
