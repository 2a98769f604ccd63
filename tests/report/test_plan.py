"""`corpus plan`: the estimate before spending, checked against what synthesize then counts on the default run."""

from __future__ import annotations

import json

import polars as pl

from corpus.report.plan import TokenCounter, encoding_for, image_tokens


def within(a: float, b: float, tol: float = 0.10) -> bool:
    return abs(a - b) <= tol * b


def test_plan_matches_synthesize_on_the_default_run(default_run, run_cli, tmp_path):
    p = json.loads(run_cli("plan", "--json", "--work", str(tmp_path / "w"), env=default_run.env).stdout)
    syn_manifest = json.loads((default_run.out / "synthesize" / "_manifest.json").read_text())
    syn = pl.read_parquet(default_run.out / "synthesize" / "*.parquet")
    t = p["teacher"]
    # the same rows reach the teacher, per source
    assert t["rows"] == syn.height == syn_manifest["rows_in"]
    planned = {r["source"]: r["rows"] for r in p["per_source"]}
    assert planned == dict(syn.group_by("source").len().iter_rows())
    assert t["tokenizer"] == "o200k_base"  # the GPT-4o family's real BPE, offline
    # text prompts: o200k count within 10% of the counts synthesize recorded
    text = next(r for r in p["per_modality"] if r["modality"] == "text")
    syn_text = syn.filter(pl.col("modality") == "text")
    assert within(text["text_tokens"], syn_text["prompt_tokens"].sum())
    assert within(text["completion_tokens"], syn_text["completion_tokens"].sum())
    # all prompts, with the default run's image accounting (its shipped cache counts 765 per image)
    assert within(t["prompt_tokens_flat_images"], syn_manifest["teacher"]["prompt_tokens"])
    # the provider's tile rule for the small images actually sent: 255 each (one 512-px tile)
    images = sum(len(i) for i in syn["images"].to_list())
    assert t["image_tokens_flat_765"] == 765 * images and t["image_tokens"] == 255 * images
    assert t["prompt_tokens"] == t["prompt_text_tokens"] + t["image_tokens"]
    # cost at the price table, Batch at half
    price = syn_manifest["teacher"]["price_per_1m"]
    assert abs(t["cost_usd"] - (t["prompt_tokens"] * price["prompt"] + t["completion_tokens"] * price["completion"])
               / 1e6) < 1e-3
    assert abs(t["cost_usd_batch"] - t["cost_usd"] / 2) < 1e-3
    assert p["time"]["binding"] == "concurrency" and p["sampling"]["k"] == 4
    text_out = run_cli("plan", "--work", str(tmp_path / "w"), env=default_run.env).stdout
    assert "with the Batch API" in text_out and "o200k_base" in text_out


def test_image_rule_and_tokenizer_family():
    assert image_tokens(1024, 1024) == 765  # OpenAI's documented example
    assert image_tokens(2048, 4096) == 1105  # 768x1536 -> 2x3 tiles
    assert image_tokens(128, 96) == 255
    assert encoding_for("gpt-4o-2024-08-06") == "o200k_base" and encoding_for("gpt-4") == "cl100k_base"
    counter = TokenCounter("Qwen/Qwen2.5-VL-72B-Instruct")
    assert counter.encoding is None and counter.text("abcdefgh") == 2
    assert TokenCounter("gpt-4o").text("Hello world") == 2


def test_plan_bad_recipe_is_a_clear_error(tmp_path, run_cli):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ningest:\n  sources: []\n")
    res = run_cli("plan", str(bad), check=False)
    assert res.returncode == 2 and "no enabled source" in res.stderr
