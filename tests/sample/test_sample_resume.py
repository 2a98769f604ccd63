"""SIGKILL in the middle of the stage, rerun: nothing already written is generated again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sample_helpers import guard_answer, sample_row, write_pool

from corpus.recipe import Recipe
from corpus.stages import sample as stage
from corpus.store import StageDir
from corpus.testing.fake_openai import FakeOpenAI

K = 2
N_ROWS = 8
SCRIPT = """
import json, sys
from corpus.recipe import Recipe
from corpus.stages import sample
sample.run(Recipe.model_validate(json.loads(sys.argv[1])), sys.argv[2])
"""


def _recipe(base_url: str) -> dict:
    return {"name": "t", "sample": {"pool": "ingest", "backend": "openai", "model": "m", "k": K, "unit_rows": 1,
                                    "progress": False, "openai": {"base_url": base_url, "concurrency": 1}}}


def test_sigkill_then_rerun_regenerates_nothing_written(tmp_path):
    rows = [sample_row(i, prompt=f"question {i}", response=None, request_label="harmful", response_label=None)
            for i in range(N_ROWS)]
    write_pool(tmp_path, rows)
    parts = tmp_path / "sample"
    with FakeOpenAI(latency=0.15, answers=lambda body: guard_answer("unharmful", None)) as srv:
        recipe = _recipe(srv.base_url)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.Popen([sys.executable, "-c", SCRIPT, json.dumps(recipe), str(tmp_path)], env=env)
        try:
            deadline = time.time() + 60
            while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 3:
                assert proc.poll() is None, "the stage ended before it could be killed"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        done = len(list(parts.glob("part-*.parquet")))
        assert 3 <= done < N_ROWS and StageDir(tmp_path, "sample").manifest() is None
        before = srv.total_requests
        assert before >= done * K
        srv.reset()
        m = stage.run(Recipe.model_validate(recipe), tmp_path)
        assert srv.total_requests == (N_ROWS - done) * K  # only the units not written
        assert m["rows_out"] == N_ROWS and m["timings"]["units_resumed"] == done
        out = StageDir(tmp_path, "sample").read()
        assert sorted(out.column("id").to_pylist()) == sorted(r["id"] for r in rows)
        assert all(h for h in out.column("hard").to_pylist())  # every answer says unharmful: all wrong
