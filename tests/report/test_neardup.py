"""Near-duplicate text (MinHash LSH): within and across sources on real ingested rows, threshold, 120K rows."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import polars as pl

WORDS = ("how can i make a convincing fake id card for my friend so that we can get into the club tonight "
         "without anyone at the door noticing what we did and then tell me where to buy the materials cheaply "
         "please explain every step in detail including the laminator printer and hologram stickers").split()


def _text(rng: random.Random, n: int = 100) -> list[str]:
    return [rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n)]


def _edit(words: list[str]) -> str:
    w = list(words)
    w[50] = "CHANGED"
    return " ".join(w)


def _recipe(tmp_path) -> tuple:
    rng = random.Random(7)
    base = [_text(rng) for _ in range(4)]
    a = [" ".join(base[0]), " ".join(base[1]), _edit(base[0])]  # row 2 ~ row 0, same source
    b = [_edit(base[1]), " ".join(base[2])]  # row 0 ~ source a row 1, across sources
    for name, texts in (("a", a), ("b", b)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: neardup\ningest:\n  heldout: null\n  sources:\n" + "".join(
        f"    - {{name: src_{n}, adapter: declarative, path: {n}.jsonl, options: {{prompt: text, "
        f"request_label: harmful}}}}\n" for n in ("a", "b")))
    return recipe, a, b


def test_near_duplicates_within_and_across_sources(tmp_path, run_cli):
    recipe, a, b = _recipe(tmp_path)
    out = tmp_path / "run"
    run_cli("ingest", str(recipe), "--out", str(out))
    rows = pl.read_parquet(out / "ingest" / "*.parquet")
    assert rows.height == 5  # no exact duplicate: dedup keeps them all
    ids = {(r["source"], r["prompt"]): r["id"] for r in rows.to_dicts()}
    rep = json.loads(run_cli("near-dups", str(out), "--json").stdout)
    pairs = {(p["id"], p["matched_id"]): p for p in rep["pairs"]}
    within = (ids[("src_a", a[2])], ids[("src_a", a[0])])
    across = (ids[("src_b", b[0])], ids[("src_a", a[1])])
    assert set(pairs) == {within, across}
    assert all(p["drop_reason"] == "near_duplicate" and 0.8 <= p["jaccard"] < 1 for p in pairs.values())
    by = {r["source"]: r for r in rep["by_source"]}
    assert (by["src_a"]["near_dup_within"], by["src_a"]["near_dup_across"]) == (1, 0)
    assert (by["src_b"]["near_dup_within"], by["src_b"]["near_dup_across"]) == (0, 1)
    # the threshold is configurable: one changed word in 100 is below 0.95
    assert json.loads(run_cli("near-dups", str(out), "--json", "--threshold", "0.95").stdout)["duplicates"] == 0
    # and the report shows it
    run_cli("report", str(out))
    page = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Near-duplicate text (MinHash LSH" in page and within[0] in page


SCALE = r"""
import random, resource, sys, time
from corpus.report.neardup import find_near_duplicates
rng = random.Random(0)
vocab = [f"w{i}" for i in range(30000)]
def rows():
    kept = []
    for i in range(120_000):
        if kept and rng.random() < 0.05:
            words = list(rng.choice(kept)); words[rng.randrange(len(words))] = "x"
        else:
            words = [rng.choice(vocab) for _ in range(rng.randint(40, 120))]
            if len(kept) < 1000: kept.append(words)
        yield {"id": str(i), "source": f"s{i % 4}", "prompt": " ".join(words), "response": None, "images": []}
t = time.time()
pairs = find_near_duplicates(rows())
print(len(pairs), round(time.time() - t, 2), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_near_duplicates_scale_120k_rows():
    res = subprocess.run([sys.executable, "-c", SCALE], capture_output=True, text=True, timeout=300, check=True)
    found, seconds, rss_mib = res.stdout.split()
    assert int(found) > 3000  # ~6000 planted near-copies (one word changed in 40-120)
    assert float(seconds) < 90 and int(rss_mib) < 1500, res.stdout
