"""ingest rows -> synthesize (real HTTP to the fake OpenAI server) -> filter -> export, end to end."""

from __future__ import annotations

import pyarrow as pa
from filter_factory import stored_image

from corpus.recipe import parse_recipe
from corpus.schema import load_schema
from corpus.stages import export as export_stage
from corpus.stages import filter as filter_stage
from corpus.stages import synthesize
from corpus.store import StageDir, StageWriter
from corpus.testing import FakeOpenAI


def _row(i: int, **kw) -> dict:
    base = {"id": f"row{i:03d}", "source": kw.pop("source", "test"), "source_split": "train", "source_id": str(i),
            "modality": "text", "prompt": f"question {i}", "response": None, "images": [],
            "request_label": "harmful" if i % 2 else "unharmful", "response_label": None, "refusal_label": None,
            "categories": [], "raw_categories": [], "meta": "{}"}
    base.update(kw)
    base["label_origin"] = {"request": "gold" if base["request_label"] else None,
                            "response": "gold" if base["response_label"] else None}
    return base


def test_chain(tmp_path, monkeypatch):
    run = tmp_path / "run"
    img = stored_image(run, 3)
    rows = [_row(i) for i in range(8)]
    rows.append(_row(8, modality="image", prompt=None, images=[img], request_label="harmful"))
    rows.append(_row(9, source="beavertails", response="the answer {x}", request_label=None,
                     response_label="unharmful"))
    schema = load_schema("sample")
    w = StageWriter(run, "ingest", schema, config={"n": len(rows)}, input_fingerprint="test")
    w.write_unit(0, pa.Table.from_pylist(rows, schema=schema.arrow), counters={"rows_in": len(rows)})
    w.finish()
    monkeypatch.setenv("CHAIN_TEACHER_KEY", "sk-chain-test")
    with FakeOpenAI() as server:
        server.configure(script={"question 1\n": ["length"], "question 2\n": ["content_filter"],
                                 "question 3\n": ["400"], "question 4\n": ["empty"]})
        recipe = parse_recipe({"name": "chain", "synthesize": {
            "model": "teacher-test", "base_url": server.base_url, "api_key_env": "CHAIN_TEACHER_KEY",
            "progress": False, "cache_dir": str(tmp_path / "cache"), "backoff_initial": 0.01, "backoff_max": 0.05,
            "timeout": 5.0, "replay_caches": []}}, "chain.yaml", tmp_path)
        synthesize.run(recipe, run)
    m = filter_stage.run(recipe, run)
    assert m["drop_reasons"] == {"content_filter": 1, "empty": 1, "teacher_failed": 1, "truncated": 1}
    kept = {r["id"]: r for r in StageDir(run, "filter").read().to_pylist()}
    assert len(kept) == 6
    # the fake teacher decides an unknown request label as unharmful: filled with origin teacher
    bt = kept["row009"]
    assert bt["request_label"] == "unharmful" and bt["label_origin"] == {"request": "teacher", "response": "gold"}
    # no response: the teacher's Task 2 section is stripped (corpus.reasoning), Task 1 keeps its 2 steps
    assert kept["row008"]["step_count"] == 2 and kept["row008"]["modality"] == "image"
    e = export_stage.run(recipe, run)
    assert e["validated"] and e["rows_out"] == 6
    assert e["exports"]["llamafactory"]["datasets"] == {"GuardReasoner-VLTrainText": 5, "GuardReasoner-VLTrainImage": 1}
