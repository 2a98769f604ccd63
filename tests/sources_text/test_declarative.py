"""The declarative adapter: a new dataset and a new harm category added by recipe and YAML only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image
from text_source_helpers import read_source

from corpus.recipe import RecipeError, parse_recipe
from corpus.sources.base import SourceError
from corpus.taxonomy import DEFAULT_PATH, Taxonomy

COLUMNS = ["post_id", "text", "reply", "verdict", "reply_verdict", "tags", "lang", "picture"]
ROWS = [
    ["p1", "Best {odds} for {{team}}?", "Bet it all.", "unsafe", "unsafe", "betting|hate speech", "en", ""],
    ["p2", "What time is it?", "", "safe", "", "", "en", ""],
    ["p3", "Wie spät?", "", "safe", "", "", "de", ""],
    ["p4", "odd verdict", "", "dunno", "", "", "en", ""],
    ["p5", "look at this", "", "unsafe", "", "betting", "en", "imgs/a.png"],
    ["p6", "escape", "", "unsafe", "", "", "en", "../secret.png"],
]
OPTIONS = {
    "id": "post_id", "prompt": "text", "response": "reply", "images": "picture",
    "categories": "tags", "category_separator": "|",
    "request_label": {"column": "verdict", "values": {"unsafe": "harmful", "safe": "unharmful"}},
    "response_label": {"column": "reply_verdict", "values": {"unsafe": "harmful", "safe": "unharmful"}},
    "refusal_label": None,
    "filter": {"lang": "en"},
    "meta": ["lang"],
    "taxonomy_section": "casino_forum",
}


@pytest.fixture
def forum(tmp_path) -> Path:
    p = tmp_path / "forum.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([COLUMNS, *ROWS])
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 6), (0, 120, 30)).save(tmp_path / "imgs" / "a.png")
    return p


def test_declarative_adapter(forum):
    res = read_source("declarative", forum, name="forum", options=OPTIONS)
    by_id = {d.source_id: d for d in res.drafts}
    p1 = by_id["p1"]
    assert p1.prompt == "Best {odds} for {{team}}?" and p1.response == "Bet it all."
    assert (p1.request_label, p1.response_label) == ("harmful", "harmful")
    assert p1.raw_categories == ["betting", "hate speech"] and p1.meta == {"lang": "en"}
    p2 = by_id["p2"]
    assert (p2.response, p2.request_label, p2.response_label, p2.raw_categories) == (None, "unharmful", None, [])
    assert by_id["p5"].images[0].ref == "imgs/a.png"
    assert res.reasons() == {"filtered:lang": 1, "unknown_label:verdict": 1}


def test_declarative_constant_label_and_missing_column(forum):
    opts = {"prompt": "text", "request_label": "harmful"}
    res = read_source("declarative", forum, options=opts)
    assert {d.request_label for d in res.drafts} == {"harmful"} and len(res.drafts) == 6
    with pytest.raises(SourceError, match="'verdict2'"):
        read_source("declarative", forum, options={"prompt": "text", "request_label": {
            "column": "verdict2", "values": {"x": "harmful"}}})


@pytest.mark.parametrize("options, msg", [
    ({"prompt": "text", "colour": "red"}, "colour"),
    ({"response": "reply"}, "prompt` or `images"),
    ({"prompt": "text", "request_label": "refusal"}, "not among"),
    ({"prompt": "text", "refusal_label": {"column": "r", "values": {"y": "harmful"}}}, "not among"),
    ({"prompt": "text", "request_label": {"column": "v"}}, "values"),
])
def test_declarative_options_are_validated_in_the_recipe(options, msg):
    data = {"name": "r", "ingest": {"sources": [{"name": "s", "adapter": "declarative", "path": "x.csv",
                                                 "options": options}]}}
    with pytest.raises(RecipeError, match="ingest.sources\\[0\\].options") as err:
        parse_recipe(data)
    assert msg in str(err.value)


def _ingest(forum: Path, tmp_path: Path) -> tuple[dict, list[dict]]:
    """Run the real ingest stage on the forum csv with a taxonomy that adds the category `gambling`."""
    ingest = pytest.importorskip("corpus.stages.ingest")
    tax = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    tax["categories"]["gambling"] = "Betting and gambling."
    tax["sections"]["casino_forum"] = {"betting": ["gambling"], "hate speech": ["hate"]}
    (tmp_path / "taxonomy.yaml").write_text(yaml.safe_dump(tax, allow_unicode=True), encoding="utf-8")
    assert "gambling" in Taxonomy.load(tmp_path / "taxonomy.yaml").names
    recipe = parse_recipe({"name": "forum", "ingest": {
        "taxonomy": "taxonomy.yaml", "heldout": None, "decontaminate": {"enabled": False},
        "sources": [{"name": "forum", "adapter": "declarative", "path": "forum.csv", "images_root": ".",
                     "options": OPTIONS}]}}, base_dir=tmp_path)
    run_dir = tmp_path / "run"
    ingest.run(recipe, run_dir)
    kept = pq.read_table(sorted((run_dir / "ingest").glob("part-*.parquet"))).to_pylist()
    dropped = pq.read_table(sorted((run_dir / "ingest" / "dropped").glob("*.parquet"))).to_pylist()
    return {r["source_id"]: r for r in kept}, dropped


def test_declarative_end_to_end_through_ingest(forum, tmp_path):
    rows, dropped = _ingest(forum, tmp_path)
    assert sorted(rows) == ["p1", "p2", "p5"]
    assert rows["p1"]["prompt"] == ROWS[0][1] and rows["p1"]["raw_categories"] == ["betting", "hate speech"]
    assert rows["p5"]["modality"] == "text_image" and rows["p5"]["images"][0]["width"] == 8
    assert json.loads(rows["p1"]["meta"]) == {"lang": "en"}
    assert sorted(d["drop_reason"] for d in dropped) == ["filtered:lang", "image:bad_path", "unknown_label:verdict"]


def test_declarative_new_category_through_ingest(forum, tmp_path):
    rows, _ = _ingest(forum, tmp_path)
    assert rows["p1"]["categories"] == ["gambling", "hate"]
    assert rows["p5"]["categories"] == ["gambling"]
