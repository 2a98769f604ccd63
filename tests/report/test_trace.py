"""`corpus trace RUN ID`: the provenance chain of rows of every stage of the default run."""

from __future__ import annotations

import json

import polars as pl


def _trace(run_cli, default_run, ident, *extra):
    return run_cli("trace", str(default_run.out), ident, *extra, env=default_run.env)


def test_trace_concatenated_rl_row(default_run, run_cli):
    out = default_run.out
    concat = pl.read_parquet(out / "concat" / "*.parquet").filter(pl.col("kind") == "concat").row(0, named=True)
    doc = json.loads(_trace(run_cli, default_run, concat["id"], "--json").stdout)
    assert doc["kind"] == "concat" and [m["id"] for m in doc["members"]] == concat["members"]
    syn = pl.read_parquet(out / "synthesize" / "*.parquet")
    for member in doc["members"]:
        row = syn.filter(pl.col("id") == member["id"]).row(0, named=True)
        assert member["source"]["source"] == row["source"] and member["source"]["source_id"] == row["source_id"]
        assert member["source"].get("path") or member["source"].get("hub")
        assert member["ingest"]["status"] == "kept"
        assert member["synthesize"]["request_key"] == row["request_key"]
        assert member["synthesize"]["prompt_tokens"] == row["prompt_tokens"]
        assert member["filter"]["status"] == "kept" and member["sample"]["k"] == len(member["sample"]["answers"])
    exported = {e["format"]: e for e in doc["rl"][0]["exported"]}
    trl = pl.read_parquet(out / "rl-export" / "trl" / "train.parquet").filter(pl.col("id") == concat["id"])
    assert exported["trl"]["answer"] == trl["answer"][0]
    text = _trace(run_cli, default_run, concat["id"]).stdout
    assert "-> synthesize: request_key=" in text and "-> rl: concat row" in text


def test_trace_dropped_rows(default_run, run_cli):
    out = default_run.out
    filt = pl.read_parquet(out / "filter" / "dropped" / "*.parquet").row(0, named=True)
    doc = json.loads(_trace(run_cli, default_run, filt["id"], "--json").stdout)
    assert doc["filter"] == {**doc["filter"], "status": "dropped", "drop_reason": filt["drop_reason"]}
    assert "sample" not in doc and "rl" not in doc
    ing = pl.read_parquet(out / "ingest" / "dropped" / "*.parquet")
    leak = ing.filter(pl.col("drop_reason").str.starts_with("leak:")).row(0, named=True)
    doc = json.loads(_trace(run_cli, default_run, leak["id"], "--json").stdout)
    assert doc["ingest"]["status"] == "dropped" and doc["ingest"]["drop_reason"] == leak["drop_reason"]
    assert doc["source"]["record"] and "synthesize" not in doc
    # a record dropped before it had an id is found by its seed source_id
    unkeyed = ing.filter(pl.col("id").is_null()).row(0, named=True)
    doc = json.loads(_trace(run_cli, default_run, unkeyed["source_id"], "--json").stdout)
    assert any(r["ingest"].get("drop_reason") == unkeyed["drop_reason"] for r in doc["rows"])


def test_trace_unknown_id_is_a_clear_error(default_run, run_cli):
    res = run_cli("trace", str(default_run.out), "no-such-row", env=default_run.env, check=False)
    assert res.returncode == 2 and "no row with id or source_id 'no-such-row'" in res.stderr
