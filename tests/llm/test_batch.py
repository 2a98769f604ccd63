"""Batch API mode against the fake server: round trip, failed items resubmitted alone, resume polling."""

from __future__ import annotations

import json

import pytest
from llm_helpers import API_KEY, read_rows, recipe_for, text_rows, write_ingest

from corpus.llm.batch import BatchRunner
from corpus.llm.cache import ResponseCache
from corpus.stages import synthesize
from corpus.stages.synthesize import build_request
from corpus.testing import FakeOpenAI


def test_batch_round_trip_with_failed_and_expired_items_resubmitted_alone(tmp_path):
    run = tmp_path / "run"
    rows = text_rows(10)
    write_ingest(run, rows, part_rows=4)
    script = {"question 3\n": ["500", None], "question 4\n": ["400"], "question 5\n": ["expired", None],
              "question 6\n": ["length"]}
    with FakeOpenAI(script=script) as srv:
        recipe = recipe_for(tmp_path, srv.base_url, mode="batch", batch_poll_seconds=0.01)
        m = synthesize.run(recipe, run)
        inputs = srv.batch_inputs()
        assert srv.repeated_answers() == {}
    key = {r["prompt"]: build_request(r, recipe.synthesize, run).key for r in rows}
    assert len(inputs) == 2 and sorted(inputs[0]) == sorted(key.values())
    assert sorted(inputs[1]) == sorted([key["question 3"], key["question 5"]])  # only the failed/expired ones
    out = {r["prompt"]: r for r in read_rows(run)}
    assert len(out) == 10
    assert out["question 3"]["teacher_status"] == "ok" and out["question 5"]["teacher_status"] == "ok"
    assert out["question 4"]["teacher_status"] == "failed" and out["question 4"]["teacher_error"].startswith(
        "http_400:")
    assert out["question 6"]["teacher_status"] == "length"
    assert m["teacher"]["batch"]["submissions"] == 2 and m["teacher"]["statuses"]["ok"] == 8
    state = json.loads((run / "synthesize" / "_batches" / "state.json").read_text())
    assert [s["batch_id"] for s in state["submissions"]] == m["teacher"]["batch"]["batch_ids"]
    assert all(s["collected"] for s in state["submissions"])
    first = (run / "synthesize" / "_batches" / "input-0000.jsonl").read_text().splitlines()
    line = json.loads(first[0])
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions" and line["body"]["model"]
    assert API_KEY not in "".join(p.read_text() for p in (run / "synthesize" / "_batches").iterdir())


class _Crash(Exception):
    pass


def test_rerun_resumes_polling_instead_of_resubmitting(tmp_path, monkeypatch):
    run = tmp_path / "run"
    rows = text_rows(6)
    write_ingest(run, rows)
    with FakeOpenAI(batch_polls=3) as srv:
        recipe = recipe_for(tmp_path, srv.base_url, mode="batch", batch_poll_seconds=0.01)
        cfg = recipe.synthesize
        reqs = [build_request(r, cfg, run) for r in rows]
        state_dir = tmp_path / "state"

        async def crash(self, sdk, sub):  # the process dies right after submitting
            raise _Crash

        with monkeypatch.context() as mp:
            mp.setattr(BatchRunner, "_finish", crash)
            with pytest.raises(_Crash):
                BatchRunner(cfg, ResponseCache(tmp_path / "cache"), state_dir, api_key=API_KEY).run(reqs)
        assert len(srv.batch_inputs()) == 1 and srv.total_requests == 0
        cache = ResponseCache(tmp_path / "cache")
        errors = BatchRunner(cfg, cache, state_dir, api_key=API_KEY).run(reqs)
        assert errors == {} and len(srv.batch_inputs()) == 1  # polled the old batch, submitted nothing new
        assert all(cache.get(r.key).status == "ok" for r in reqs)
        assert srv.repeated_answers() == {}


@pytest.mark.parametrize("created", [False, True])
def test_crash_around_batch_creation_neither_loses_nor_duplicates_the_batch(tmp_path, monkeypatch, created):
    """Upload recorded, then the process dies before (or right after) the batch is created."""
    from openai.resources.batches import AsyncBatches

    run = tmp_path / "run"
    rows = text_rows(4)
    write_ingest(run, rows)
    real_create = AsyncBatches.create

    async def dying_create(self, **kw):
        if created:
            await real_create(self, **kw)
        raise _Crash

    with FakeOpenAI() as srv:
        cfg = recipe_for(tmp_path, srv.base_url, mode="batch", batch_poll_seconds=0.01).synthesize
        reqs = [build_request(r, cfg, run) for r in rows]
        with monkeypatch.context() as mp:
            mp.setattr(AsyncBatches, "create", dying_create)
            with pytest.raises(_Crash):
                BatchRunner(cfg, ResponseCache(tmp_path / "cache"), tmp_path / "state", api_key=API_KEY).run(reqs)
        assert len(srv.batch_inputs()) == (1 if created else 0)
        cache = ResponseCache(tmp_path / "cache")
        assert BatchRunner(cfg, cache, tmp_path / "state", api_key=API_KEY).run(reqs) == {}
        assert len(srv.batch_inputs()) == 1 and srv.repeated_answers() == {}
        assert all(cache.get(r.key).status == "ok" for r in reqs)
