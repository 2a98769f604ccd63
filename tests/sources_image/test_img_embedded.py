"""The embedded default data and recipe: layouts, provenance of the text rows, planted hazards, the generator."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from image_source_helpers import REAL, SAMPLES

from corpus.recipe import load_recipe
from corpus.resources import resource
from corpus.sources.base import adapter_class

ROOT = Path(__file__).resolve().parents[2]


def records_of(recipe, name):
    s = next(s for s in recipe.ingest.sources if s.name == name)
    src = adapter_class(s.adapter)(s)
    return {r.index: r for r in src.records(recipe.resolve(s.path))}


def test_recipe_loads_and_every_path_exists():
    recipe = load_recipe(resource("pipelines", "default.yaml"))
    assert recipe.name == "default" and recipe.seed == 0
    assert {s.adapter for s in recipe.ingest.sources} >= {"wildguardmix", "aegis1", "beavertails", "toxicchat",
                                                          "unsafebench", "vlguard", "hod", "spavl"}
    assert any(s.fraction < 1.0 for s in recipe.ingest.sources)
    assert recipe.ingest.heldout.modalities == ["image"] and recipe.ingest.heldout.fraction == 0.2
    assert [e.name for e in recipe.ingest.decontaminate.eval_sets] == ["OpenAIModeration", "VLGuardTest"]
    for s in [*recipe.ingest.sources, *recipe.ingest.decontaminate.eval_sets]:
        assert recipe.resolve(s.path).exists(), s.name
        if s.images_root:
            assert recipe.resolve(s.images_root).exists(), s.name


def test_samples_are_small():
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 2 * 1024 * 1024


def test_text_rows_are_the_recorded_prediction_prompts(real):
    recipe = load_recipe(resource("pipelines", "default.yaml"))
    prov = json.loads((SAMPLES / "text_provenance.json").read_text(encoding="utf-8"))["rows"]
    assert 60 <= len(prov) <= 80
    by_file = {s.path.removeprefix("embedded:"): s.name for s in recipe.ingest.sources}
    tables = {}
    for row in prov:
        line = (real / row["prediction_file"]).read_text(encoding="utf-8").splitlines()[row["line_index"]]
        rec = json.loads(line)
        user = rec["prompt"].split("Human user:\n", 1)[1]
        prompt, response = user.split("\n\nAI assistant:\n", 1)
        assert row["prompt"] == prompt and row["label"] == rec["label"]
        assert row["response"] in (None, response.removesuffix("\n\n"))
        name = by_file[row["file"]]
        if name not in tables:
            tables[name] = records_of(recipe, name)
        fields = tables[name][row["row"]].fields
        text = fields.get("prompt", fields.get("text", fields.get("user_input")))
        assert text == prompt
        if row["response"] is not None:
            assert fields["response"] == row["response"]


def test_planted_leaks_and_trimmed_eval_copy(real):
    with gzip.open(SAMPLES / "eval/openai_moderation/samples.jsonl.gz", "rt", encoding="utf-8") as f:
        shipped = [json.loads(x) for x in f]
    with gzip.open(real / "openai_moderation/samples-1680.jsonl.gz", "rt", encoding="utf-8") as f:
        full = [json.loads(x) for x in f]
    assert shipped[:300] == full[:300] and len(shipped) == 302 and all(r in full for r in shipped)
    recipe = load_recipe(resource("pipelines", "default.yaml"))
    texts = [str(r.fields.get("prompt") or r.fields.get("text") or r.fields.get("user_input"))
             for name in ("wildguardtrain", "aegis_train", "beavertails_30k_train", "toxicchat_train")
             for r in records_of(recipe, name).values() if r.fields]
    prompts = {r["prompt"] for r in shipped}
    assert sum(t in prompts for t in texts) == 2  # two exact copies
    assert any(t not in prompts and t.lower().split() in [p.lower().split() for p in prompts] for t in texts)
    assert any(len(t.split()) > 20 and any(" ".join(t.split()[11:24]) in p for p in prompts) for t in texts)
    assert sum("{" in t for t in texts) >= 3


def test_generator_reproduces_the_shipped_files(real, tmp_path):
    out = tmp_path / "samples"
    subprocess.run([sys.executable, str(ROOT / "scripts/make_embedded_samples.py"), "--realdata", str(real),
                    "--out", str(out)], check=True, capture_output=True)

    def digests(root):  # teacher_cache/ is built by scripts/build_replay_cache.py, not by this generator
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file() and not p.relative_to(root).as_posix().startswith(
                    "teacher_cache/")}

    assert digests(out) == digests(SAMPLES)


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real data not present")
def test_default_ingest_shows_the_drop_reasons(tmp_path):
    from corpus.stages import ingest

    manifest = ingest.run(load_recipe(resource("pipelines", "default.yaml")), tmp_path / "run")
    reasons = manifest["drop_reasons"]
    for reason in ("duplicate", "hod:bad_annotation", "image:corrupt", "image:missing", "image:too_large",
                   "image:truncated", "invalid_utf8", "leak:OpenAIModeration", "not_human_annotated",
                   "sampled_out", "unknown_label:safety_label", "label_conflict", "near_duplicate",
                   "leak:VLGuardTest", "missing_annotation", "no_objects", "missing_label:is_safe",
                   "missing_label:labels_0", "missing_value:image", "reserved_token"):
        assert reason in reasons, reason
    assert reasons["leak:OpenAIModeration"] == 4 and reasons["duplicate"] == 2
    assert reasons["label_conflict"] == 2 and reasons["near_duplicate"] == 1 and reasons["leak:VLGuardTest"] == 1
    assert manifest["outputs"]["harm_image_test"] > 0


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real data not present")
def test_default_perceptual_hash_cases(tmp_path):
    """The planted copies, measured: only the perceptual hash sees them, and the split keeps each cluster together."""
    import pyarrow.parquet as pq

    from corpus.images import hamming, normalise_image
    from corpus.sources.files import ImageRoot
    from corpus.stages import ingest
    from corpus.store import StageDir

    def ph(data: bytes):
        n = normalise_image(data, max_pixels=10**8, max_bytes=10**9)
        return n.phash, n.sha256

    recipe = load_recipe(resource("pipelines", "default.yaml"))
    ub = {r["image"]["path"]: r["image"]["bytes"]
          for r in pq.read_table(SAMPLES / "unsafebench/data/train-00000-of-00001.parquet").to_pylist() if r["image"]}
    test = json.loads((SAMPLES / "eval/vlguard/test.json").read_text(encoding="utf-8"))
    with ImageRoot(SAMPLES / "eval/vlguard/test.zip") as root:
        ev = ph(root.read(test[0]["image"]))
    leak, past = ph(ub["vlguard_test_copy_0.png"]), ph(ub["vlguard_test_copy_1.png"])
    threshold = recipe.ingest.decontaminate.phash_max_distance
    assert len({ev[1], leak[1], past[1]}) == 3  # sha256 differs: only the perceptual hash can match
    assert 1 <= hamming(ev[0], leak[0]) <= threshold < hamming(ev[0], past[0]) <= threshold + 2
    for stem in ("near_heldout", "near_train"):
        a, b = ph(ub[f"{stem}_0.png"]), ph(ub[f"{stem}_1.png"])
        assert a[1] != b[1] and 1 <= hamming(a[0], b[0]) <= recipe.ingest.near_duplicate.phash_max_distance

    ingest.run(recipe, tmp_path / "run")
    sd = StageDir(tmp_path / "run", "ingest")
    where = {r["images"][0]["sha256"]: "kept" for r in sd.read().to_pylist() if r["images"]}
    where.update({r["images"][0]["sha256"]: "heldout" for r in sd.read("harm_image_test").to_pylist()})
    assert where[ph(ub["near_heldout_0.png"])[1]] == where[ph(ub["near_heldout_1.png"])[1]] == "heldout"
    assert where[ph(ub["near_train_0.png"])[1]] == "kept" and ph(ub["near_train_1.png"])[1] not in where
    assert leak[1] not in where and past[1] in where
    by_reason = {d["drop_reason"]: d for d in sd.read("dropped").to_pylist()}
    assert "(phash)" in by_reason["leak:VLGuardTest"]["detail"]
    # without the clusters, the copy of the held-out picture would have stayed in train (its own sha256 split)
    from corpus.stages.ingest import unit_fraction
    assert unit_fraction(recipe.seed, "heldout", ph(ub["near_heldout_1.png"])[1]) >= recipe.ingest.heldout.fraction
