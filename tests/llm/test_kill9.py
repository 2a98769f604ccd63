"""SIGKILL during synthesize: an answer that reached the client is never bought again.

The durability of one answer is checked exactly (a process that stores an answer and kills itself
at once); the whole promise with a real ``corpus synthesize`` killed at random points while requests
are in flight, against a server that records when each answer was written and every body sent again
after that.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
from cli_helpers import ROOT, cli, spawn, write_recipe
from llm_helpers import manifest, recipe_for, text_rows, write_ingest

from corpus.llm.cache import ResponseCache
from corpus.stages.synthesize import build_request
from corpus.testing import FakeOpenAI, content_key

PUT_AND_DIE = """
import os, signal, sys
from pathlib import Path
from corpus.llm.cache import ResponseCache
from corpus.llm.request import Outcome
cache = ResponseCache(Path(sys.argv[1]))
cache.put(sys.argv[2], "m", Outcome(status="ok", output="answer " + sys.argv[2], prompt_tokens=3, completion_tokens=5))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_answer_is_committed_when_put_returns(tmp_path):
    """Killed right after ``put`` returns (no flush, no close): the answer is in the cache, 20 of 20."""
    env = {"PYTHONPATH": str(ROOT)}
    for i in range(20):
        p = subprocess.run([sys.executable, "-c", PUT_AND_DIE, str(tmp_path / "cache"), f"key{i}"], env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == -signal.SIGKILL, p.stderr
    cache = ResponseCache(tmp_path / "cache")
    got = cache.get_many([f"key{i}" for i in range(20)])
    cache.close()
    assert sorted(got) == sorted(f"key{i}" for i in range(20))
    assert got["key7"].output == "answer key7" and got["key7"].completion_tokens == 5


KILLS = int(os.environ.get("CORPUS_KILL_TRIALS", "20"))  # scripts/bench_synthesize.py --kill-trials sets more
ROWS = 36 * KILLS  # enough that the last kill still lands during synthesize
#: an answer written this long before the kill has been read and committed by the client, even on a loaded
#: machine (the process can be off the CPU for tens of milliseconds); the journal check above is exact
GRACE = 0.25


def _unmatched_sends(run) -> Counter:
    """Per request key: sends journalled without an end (requests cut by a kill)."""
    n: Counter = Counter()
    for line in (run / "synthesize" / "_requests.log").read_text().splitlines():
        kind, key = line.split(" ", 1)
        n[key] += 1 if kind == "S" else -1
    return n


def _requests(rows, tmp_path, srv) -> dict:
    recipe = recipe_for(tmp_path, srv.base_url)
    return {r.key: r for r in (build_request(row, recipe.synthesize, tmp_path / "run") for row in rows)}


def _parts(run) -> list:
    return [pq.read_table(p) for p in sorted((run / "synthesize").glob("part-*.parquet"))]


def test_twenty_random_sigkills_rebuy_nothing_and_end_like_an_uninterrupted_run(tmp_path):
    rows = text_rows(ROWS)
    run = tmp_path / "run"
    write_ingest(run, rows, part_rows=60)
    rng = random.Random(20261202)
    faults = {"429": 0.04, "500": 0.04, "400": 0.02}
    kill_times: list[float] = []
    with FakeOpenAI(latency=0.04, fault_mix=faults, seed=3) as srv:
        recipe = write_recipe(tmp_path / "recipe.json", srv.base_url, tmp_path / "cache", concurrency=8)
        while len(kill_times) < KILLS:
            before = srv.total_requests
            child = spawn("synthesize", recipe, "--out", run, log=tmp_path / "child.log")
            deadline = time.monotonic() + 60
            while srv.total_requests == before and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)  # the stage is sending: every kill lands during synthesize
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            time.sleep(rng.uniform(0.0, 0.25))
            kill_times.append(time.monotonic())
            child.send_signal(signal.SIGKILL)
            child.wait()
            assert not (run / "synthesize" / "_manifest.json").exists(), "the run ended before the kills did"
        done = cli("synthesize", recipe, "--out", run)
        assert done.returncode == 0, done.stderr[-3000:]
        # A body sent again after its answer was written must be a request the kill cut: its process died
        # before reading the answer (still on the wire or unread in the socket); the journal then holds its
        # send without an end, and the manifest counts it as interrupted. An answer that was read is
        # committed before its end is journalled, so no key with as many ends as sends is ever sent again.
        opened = _unmatched_sends(run)
        server_key = {k: content_key(r.body(lambda p, n: "")) for k, r in _requests(rows, tmp_path, srv).items()}
        cut = {server_key[k] for k, n in opened.items() if n > 0}
        assert set(srv.resent) <= cut, set(srv.resent) - cut
        # and with wall-clock times: every such answer was written at most GRACE before the kill
        late = []
        for key, resent in srv.resent.items():
            arrived, written = srv.delivered_at[key][0]
            kill = next((k for k in kill_times if k > arrived), None)  # the end of the process that sent it
            if kill is None or kill > resent[0] or kill - written >= GRACE:
                late.append((key, arrived, written, resent, kill))
        assert late == []
        m = manifest(run)
        interrupted = m["teacher"]["interrupted_requests"]
        resends = sum(len(v) for v in srv.resent.values())
        before_kill = sum(1 for key, arrived, written, kill in
                          ((k, *srv.delivered_at[k][0], next(x for x in kill_times if x > srv.delivered_at[k][0][0]))
                           for k in srv.resent) if written < kill)
        assert 0 < interrupted and resends <= interrupted == sum(opened.values())
        print(f"{KILLS} kills: {srv.total_answered} answers, {resends} bodies sent again after their answer "
              f"had been written ({before_kill} written before the kill, all unread when the process died), "
              f"{interrupted} interrupted requests counted")

    with FakeOpenAI(fault_mix=faults, seed=3) as ref_srv:  # the same teacher, one uninterrupted run
        ref = tmp_path / "ref"
        write_ingest(ref, rows, part_rows=60)
        recipe = write_recipe(tmp_path / "ref.json", ref_srv.base_url, tmp_path / "ref-cache", concurrency=64)
        assert cli("synthesize", recipe, "--out", ref).returncode == 0
        assert ref_srv.repeated_answers() == {}
    got, want = _parts(run), _parts(ref)
    assert len(got) == len(want) == -(-ROWS // 60) and all(a.equals(b) for a, b in zip(got, want, strict=True))
    assert m["rows_out"] == ROWS and m["output_fingerprint"] == manifest(ref)["output_fingerprint"]
    statuses = m["teacher"]["statuses"]
    assert statuses["failed"] == m["teacher"]["failed_final"] > 0 and m["teacher"]["failed_retryable"] == 0
