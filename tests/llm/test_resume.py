"""Resume after SIGKILL and the issue's fault mix: every row once, no answered request sent twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from llm_helpers import API_KEY, manifest, read_rows, recipe_for, text_rows, write_ingest

from corpus.stages import synthesize
from corpus.stages.synthesize import build_request
from corpus.testing import FakeOpenAI, content_key

CHILD = """
import sys
from corpus.recipe import parse_recipe
from corpus.stages import synthesize
tmp, run, url = sys.argv[1:4]
cfg = {"model": "teacher-test", "base_url": url, "api_key_env": "TEST_TEACHER_KEY", "progress": False,
       "cache_dir": tmp + "/cache", "replay_caches": [], "concurrency": 8, "backoff_initial": 0.01,
       "prices": {"teacher-test": {"prompt": 2.0, "completion": 8.0}}}
synthesize.run(parse_recipe({"name": "test", "synthesize": cfg}, "test.yaml"), run)
"""

FAULT_MIX = {"429": 0.05, "500": 0.05, "400": 0.03, "malformed": 0.03, "length": 0.05, "empty": 0.05}


def _child(tmp: Path, run: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "TEST_TEACHER_KEY": API_KEY, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp), str(run), url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun_loses_nothing_and_rebuys_nothing(tmp_path):
    run = tmp_path / "run"
    rows = text_rows(240)
    write_ingest(run, rows, part_rows=40)
    with FakeOpenAI(latency=0.03, fault_mix={"429": 0.05, "500": 0.05, "400": 0.03}) as srv:
        child = _child(tmp_path, run, srv.base_url)
        deadline = time.monotonic() + 60
        while srv.total_answered < 110 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        child.send_signal(signal.SIGKILL)
        child.wait()
        requests_at_kill = Counter(srv.requests)
        done_parts = len(list((run / "synthesize").glob("part-*.parquet")))
        assert 0 < srv.total_answered < 240 and done_parts < 6
        assert not (run / "synthesize" / "_manifest.json").exists()
        # answers the killed client had received = its journal (the cache), mapped to the server's keys
        with sqlite3.connect(tmp_path / "cache" / "responses.sqlite3") as db:
            received = {k for (k,) in db.execute("SELECT key FROM answers")}
        recipe = recipe_for(tmp_path, srv.base_url)
        server_key = {build_request(r, recipe.synthesize, run).key: content_key(
            build_request(r, recipe.synthesize, run).body(lambda p, n: "")) for r in rows}
        assert len(received) >= 100

        child = _child(tmp_path, run, srv.base_url)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()[-3000:]
        # no request whose answer had been received was sent again
        assert all(srv.requests[server_key[k]] == requests_at_kill[server_key[k]] for k in received)
        # only answers in flight at the kill (8 slots) or inside the cache's 10 ms group-commit window may
        # have been paid twice
        assert len(srv.repeated_answers()) <= 16
        assert set(srv.repeated_answers()).isdisjoint(server_key[k] for k in received)

    out = read_rows(run)
    assert Counter(r["id"] for r in out) == Counter(r["id"] for r in rows)  # none lost, none duplicated
    m = manifest(run)
    assert m["rows_out"] == 240 and m["timings"]["units_resumed"] == done_parts
    failed = [r for r in out if r["teacher_status"] == "failed"]
    assert failed and all(r["teacher_error"].startswith("http_400:") for r in failed)
    assert m["teacher"]["statuses"]["ok"] == 240 - len(failed)


def test_fault_mix_every_row_accounted_and_nothing_paid_twice(tmp_path):
    run = tmp_path / "run"
    rows = text_rows(300)
    write_ingest(run, rows, part_rows=300)
    with FakeOpenAI(latency=0.01, fault_mix=FAULT_MIX, seed=7) as srv:
        recipe = recipe_for(tmp_path, srv.base_url, concurrency=64)
        m = synthesize.run(recipe, run)
        faults = dict(srv.faults)
        assert srv.repeated_answers() == {}
        before = srv.total_requests
        synthesize.run(recipe, run, force=True)  # a rerun retries only the failures (a 400 stays a 400)
        assert srv.total_requests - before == faults.get("400", 0) and srv.repeated_answers() == {}
    out = read_rows(run)
    assert len(out) == 300 and len({r["id"] for r in out}) == 300
    status = Counter(r["teacher_status"] for r in out)
    assert set(status) <= {"ok", "failed", "length", "empty"}
    assert status["failed"] == faults.get("400", 0)  # transient faults all recovered by retries
    assert status["length"] == faults["length"] and status["empty"] == faults["empty"]
    for r in out:
        if r["teacher_status"] == "failed":
            assert r["teacher_error"].startswith("http_400:") and r["teacher_output"] is None
        else:
            assert r["teacher_error"] is None and r["prompt_tokens"] > 0
    t = m["teacher"]["this_attempt"]
    assert t["retry:http_429"] == faults["429"] and t["retry:http_500"] == faults["500"]
    assert t["retry:malformed"] == faults["malformed"]
    # a recorded failure bought nothing: it is a missing row, not a paid one
    assert t["paid_rows"] == 300 - status["failed"] and t["missing_rows"] == status["failed"]
