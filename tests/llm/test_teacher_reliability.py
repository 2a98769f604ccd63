"""The teacher stage through the real command line against a real local server: failed rows are retried
by a plain rerun, an unusable endpoint stops the run within seconds, one run per directory, parts are
verified, stale temporaries are removed."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
from cli_helpers import cli, spawn, write_recipe
from llm_helpers import API_KEY, make_row, manifest, read_rows, text_rows, write_ingest

from corpus.testing import FakeOpenAI

SYN = "synthesize"


def _rows_with(markers: dict[int, str], n: int = 24) -> list[dict]:
    """``n`` text rows; row i's prompt carries ``markers[i]`` (a server script marker) when given."""
    return [make_row(i, prompt=f"question {i} {markers.get(i, '')}".strip(),
                     request_label="harmful" if i % 2 else "unharmful") for i in range(n)]


def _stats(run) -> dict:
    p = cli("stats", run, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["stages"][SYN]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- 2. failed rows are not frozen -------------------------------------------------------------------

def test_retryable_failures_leave_the_stage_incomplete_and_a_plain_rerun_retries_exactly_them(tmp_path):
    flaky, bad = {3: "FLAKY", 10: "FLAKY", 17: "FLAKY"}, {5: "BAD", 20: "BAD"}
    rows = _rows_with({**flaky, **bad})
    run = tmp_path / "run"
    write_ingest(run, rows, part_rows=8)
    with FakeOpenAI(script={"FLAKY": ["500"] * 2, "BAD": ["400"] * 99}) as srv:
        recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache", max_retries=1)
        first = cli(SYN, recipe, "--out", run)
        assert first.returncode == 3, first.stderr
        assert "3 rows failed for retryable causes (http_500: 3)" in first.stderr and "rerun" in first.stderr
        assert not (run / SYN / "_manifest.json").exists()
        st = _stats(run)
        assert st["complete"] is False
        assert st["details"]["failed_retryable"] == 3 and st["details"]["failed_final"] == 2
        assert st["details"]["incomplete"] == "rows failed for retryable causes"
        # downstream does not consume the incomplete stage
        assert cli("filter", recipe, "--out", run).returncode == 2

        srv.configure(script={"BAD": ["400"] * 99})  # the server recovers; the 400s stay 400s
        before = Counter(srv.requests)
        second = cli(SYN, recipe, "--out", run)
        assert second.returncode == 0, second.stderr
        sent = Counter(srv.requests) - before
        assert sorted(sent.values()) == [1, 1, 1] and len(sent) == 3  # exactly the three flaky rows, once each
        assert all("FLAKY" in json.dumps(srv.bodies[k]) for k in sent)
        m = manifest(run)
        assert m["teacher"]["failed_retryable"] == 0 and m["teacher"]["failed_final"] == 2
        assert m["teacher"]["failed_final_retried_with"] == "--retry-failed"
        assert m["teacher"]["statuses"] == {"failed": 2, "ok": 22}

        before = srv.total_requests
        assert cli(SYN, recipe, "--out", run).returncode == 0 and srv.total_requests == before  # up to date

        srv.configure(script={})  # the bad rows would now be accepted: only --retry-failed asks again
        retried = cli(SYN, recipe, "--out", run, "--retry-failed")
        assert retried.returncode == 0, retried.stderr
        assert srv.total_requests - before == 2
    out = read_rows(run)
    assert Counter(r["teacher_status"] for r in out) == {"ok": 24} and len({r["id"] for r in out}) == 24
    assert manifest(run)["teacher"]["failed_final"] == 0


# ---- 3. circuit breaker and preflight -----------------------------------------------------------------

def _assert_stops(p: subprocess.CompletedProcess, seconds: float, limit: float, base_url: str, *words: str):
    assert p.returncode == 3, p.stderr
    assert seconds < limit, seconds
    err = p.stderr
    assert base_url in err and "teacher-test" in err and API_KEY not in err
    for w in words:
        assert w in err, err


def _timed(*args) -> tuple[subprocess.CompletedProcess, float]:
    t = time.monotonic()
    p = cli(*args)
    return p, time.monotonic() - t


def test_dead_port_stops_before_any_row_and_the_right_url_then_completes(tmp_path):
    run = tmp_path / "run"
    write_ingest(run, text_rows(40), part_rows=10)
    dead = f"http://127.0.0.1:{_closed_port()}/v1"
    recipe = write_recipe(tmp_path / "r.json", dead, tmp_path / "cache")  # defaults: 6 retries, 120 s timeout
    p, dt = _timed(SYN, recipe, "--out", run)
    _assert_stops(p, dt, 20, dead, "cannot connect")
    assert not list((run / SYN).glob("part-*.parquet"))
    with FakeOpenAI() as srv:
        recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache")
        assert cli(SYN, recipe, "--out", run).returncode == 0
        assert srv.total_answered == 40
    assert manifest(run)["teacher"]["statuses"] == {"ok": 40}


@pytest.mark.parametrize(("server_kw", "synth_kw", "words"), [
    ({"require_key": "sk-some-other-key"}, {}, ["HTTP 401", "refused"]),
    ({"models": ["another-model"]}, {}, ["does not serve this model", "another-model"]),
    ({"models": ["another-model"]}, {"preflight": False}, ["HTTP 404"]),
    ({"fault_mix": {"quota": 1.0}}, {}, ["quota exhausted"]),
    ({"fault_mix": {"disconnect": 1.0}}, {}, ["8 consecutive connection errors"]),
    ({"fault_mix": {"slow": 1.0}, "slow_seconds": 60, "transient_attempts": 99}, {"timeout": 1.0},
     ["consecutive timeout errors"]),
], ids=["401", "unknown-model-preflight", "404-breaker", "quota", "disconnects", "hang"])
def test_unusable_endpoint_stops_within_seconds_naming_url_and_model(tmp_path, server_kw, synth_kw, words):
    run = tmp_path / "run"
    write_ingest(run, text_rows(200), part_rows=50)
    with FakeOpenAI(**server_kw) as srv:
        recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache", concurrency=16,
                              max_retries=6, backoff_initial=1.0, backoff_max=60.0, **synth_kw)
        p, dt = _timed(SYN, recipe, "--out", run)
        _assert_stops(p, dt, 25, srv.base_url, *words)
        assert srv.total_requests <= 16 + 8  # one wave at most, never units x retries
        assert srv.model_list_requests == (0 if synth_kw.get("preflight") is False else 1)
    assert _stats(run)["details"]["incomplete"] == "the teacher endpoint is unusable"


def test_breaker_keeps_finished_units_and_a_rerun_resumes(tmp_path):
    rows = text_rows(16) + [make_row(16 + i, prompt=f"later DENIED {i}") for i in range(16)]
    run = tmp_path / "run"
    write_ingest(run, rows, part_rows=16)
    with FakeOpenAI(script={"DENIED": ["403"] * 99}) as srv:
        recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache", concurrency=4)
        p = cli(SYN, recipe, "--out", run)
        assert p.returncode == 3 and "HTTP 403" in p.stderr
        assert [x.name for x in (run / SYN).glob("part-*.parquet")] == ["part-00000.parquet"]
        srv.configure(script={})
        before = srv.total_answered
        assert cli(SYN, recipe, "--out", run).returncode == 0
        assert srv.total_answered - before == 16 and srv.repeated_answers() == {}
    assert manifest(run)["rows_out"] == 32


# ---- 4. one run per directory --------------------------------------------------------------------------

def test_second_run_on_the_same_directory_fails_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    write_ingest(run, text_rows(40), part_rows=10)
    with FakeOpenAI(latency=0.5) as srv:
        recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache", concurrency=2)
        holder = spawn(SYN, recipe, "--out", run, log=tmp_path / "holder.log")
        try:
            deadline = time.monotonic() + 60
            while srv.total_requests == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            second, dt = _timed(SYN, recipe, "--out", run, "--force")
            assert second.returncode == 2 and f"pid {holder.pid}" in second.stderr and str(run) in second.stderr
            assert holder.poll() is None  # the first run is untouched
        finally:
            holder.kill()
            holder.wait()
        p = cli(SYN, recipe, "--out", run)  # the lock dies with its holder
        assert p.returncode == 0, p.stderr
        assert srv.repeated_answers() == {}


# ---- 5. parts verified against the manifest ---------------------------------------------------------------

def _finished(tmp_path, srv, n=40, part_rows=10):
    run = tmp_path / "run"
    write_ingest(run, text_rows(n), part_rows=part_rows)
    recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache")
    assert cli(SYN, recipe, "--out", run).returncode == 0
    return run, recipe


def test_a_part_copied_over_another_is_named_by_the_reader_and_redone_by_a_rerun(tmp_path, server):
    run, recipe = _finished(tmp_path, server)
    good = (run / SYN / "part-00002.parquet").read_bytes()
    shutil.copy(run / SYN / "part-00001.parquet", run / SYN / "part-00002.parquet")  # valid Parquet, wrong rows
    p = cli("filter", recipe, "--out", run)
    assert p.returncode == 2 and "part-00002.parquet" in p.stderr and "does not match the manifest" in p.stderr
    assert not (run / "filter" / "_manifest.json").exists()
    before = server.total_requests
    assert cli(SYN, recipe, "--out", run).returncode == 0
    assert server.total_requests == before  # redone from the cache
    assert (run / SYN / "part-00002.parquet").read_bytes() == good
    assert manifest(run)["timings"]["units_redone"] == [2]
    p = cli("filter", recipe, "--out", run)
    assert p.returncode == 0, p.stderr
    ids = [r["id"] for r in pq.read_table(run / "filter" / "part-00002.parquet").to_pylist()]
    assert len(set(ids)) == len(ids) and all(20 <= int(i[3:]) < 30 for i in ids)


def test_a_truncated_part_is_named_by_the_reader_and_redone_by_a_rerun(tmp_path, server):
    run, recipe = _finished(tmp_path, server)
    part = run / SYN / "part-00003.parquet"
    part.write_bytes(part.read_bytes()[:-100])
    p = cli("filter", recipe, "--out", run)
    assert p.returncode == 2 and "part-00003.parquet" in p.stderr and "bytes, recorded" in p.stderr
    assert "Traceback" not in p.stderr
    assert cli(SYN, recipe, "--out", run).returncode == 0
    assert pq.read_table(part).num_rows == 10 and manifest(run)["timings"]["units_redone"] == [3]
    assert cli("filter", recipe, "--out", run).returncode == 0


def test_resume_redoes_a_damaged_unit_and_removes_stale_temporaries(tmp_path):
    rows = _rows_with({30: "FLAKY"}, n=40)
    run = tmp_path / "run"
    write_ingest(run, rows, part_rows=10)
    with FakeOpenAI(script={"FLAKY": ["500"] * 2}) as srv:
        recipe = write_recipe(tmp_path / "r.json", srv.base_url, tmp_path / "cache", max_retries=1)
        assert cli(SYN, recipe, "--out", run).returncode == 3  # incomplete: unit 3 has a retryable failure
        part = run / SYN / "part-00001.parquet"
        part.write_bytes(part.read_bytes()[:-50])  # a damaged finished unit of the stage in progress
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()  # the pid of a process that has exited
        stale = [run / SYN / f".part-00002.parquet.tmp-{dead}", run / SYN / "_units" / f".00002.json.tmp-{dead}"]
        for f in stale:
            f.write_bytes(b"half a file")
        before = srv.total_requests
        assert cli(SYN, recipe, "--out", run).returncode == 0
        assert srv.total_requests - before == 1  # only the flaky row: unit 1 was redone from the cache
    assert not any(f.exists() for f in stale)
    assert not list((run / SYN).rglob("*.tmp-*"))
    m = manifest(run)
    assert m["timings"]["temporaries_removed"] == 2 and set(m["timings"]["units_redone"]) == {1, 3}
    assert sorted(r["id"] for r in read_rows(run)) == sorted(r["id"] for r in rows)
