"""The concat stage on real Parquet: membership, labels, images, sizes, determinism, stitching, drops."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from concat_helpers import file_hashes, make_image, make_row, mixed_rows, recipe, write_sample_stage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from corpus.concat import combine_labels, round_half_up
from corpus.images import stitch_layout
from corpus.stages import concat as stage
from corpus.store import StageDir


def _out(run_dir: Path) -> list[dict]:
    return StageDir(run_dir, "concat").read().to_pylist()


def _sample(run_dir: Path) -> dict[str, dict]:
    return {r["id"]: r for r in StageDir(run_dir, "sample").read().to_pylist()}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 24),
    hard_every=st.integers(1, 3),
    total=st.integers(1, 40),
    share=st.sampled_from([0.0, 0.2, 0.5, 1.0]),
    pairing=st.sampled_from(["any", "same_modality", "cross_modality"]),
    image_mode=st.sampled_from(["stitch", "list"]),
    n_images=st.integers(1, 2),
    seed=st.integers(0, 1000),
)
def test_rl_set_properties(n, hard_every, total, share, pairing, image_mode, n_images, seed):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        write_sample_stage(run, mixed_rows(run, n, hard_every=hard_every, n_images=n_images))
        rec = recipe(total=total, share=share, pairing=pairing, image_mode=image_mode, recipe_seed=seed)
        manifest = stage.run(rec, run)
        rows, src = _out(run), _sample(run)
        hard_ids = {i for i, r in src.items() if r["hard"]}
        kinds = Counter(r["kind"] for r in rows)
        sizes = manifest["sizes"]
        # sizes and shares as configured (capped by what exists)
        assert len(rows) == sizes["total"] <= total
        assert kinds["concat"] == sizes["concat"] == round_half_up(share * len(rows))
        assert kinds["hard"] == sizes["hard"] <= len(hard_ids)
        assert manifest["rows_out"] == len(rows)
        assert manifest["rows_dropped"] == len(hard_ids) - kinds["hard"]  # the rest is sampled_out
        ids = [r["id"] for r in rows]
        assert len(set(ids)) == len(ids)
        for r in rows:
            members = [src[m] for m in r["members"]]
            assert set(r["members"]) <= hard_ids  # member ids are always real hard rows
            if r["kind"] == "hard":
                assert r["members"] == [r["id"]]
                assert r["images"] == members[0]["images"] and r["prompt"] == members[0]["prompt"]
                continue
            a, b = members
            assert a["id"] != b["id"]
            mods = {a["modality"], b["modality"]}
            assert pairing == "any" or (len(mods) == 1) == (pairing == "same_modality")
            assert (r["request_label"], r["response_label"]) == combine_labels(
                (a["request_label"], a["response_label"]), (b["request_label"], b["response_label"]))
            n_member_images = len(a["images"]) + len(b["images"])
            if image_mode == "list" or n_member_images < 2:
                assert r["images"] == a["images"] + b["images"]
            else:
                assert len(r["images"]) == 1
            for img in r["images"]:
                with Image.open(run / img["path"]) as im:
                    assert im.size == (img["width"], img["height"])
        pairs = [tuple(sorted(r["members"])) for r in rows if r["kind"] == "concat"]
        assert len(set(pairs)) == len(pairs)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    def build(run: Path, seed: int) -> dict[str, str]:
        write_sample_stage(run, mixed_rows(run, 30, hard_every=1, n_images=2), parts=3)
        stage.run(recipe(total=25, share=0.4, recipe_seed=seed, part_rows=7), run)
        return file_hashes(run / "concat") | {k: v for k, v in file_hashes(run / "images").items()}

    first, second, other = build(tmp_path / "a", 7), build(tmp_path / "b", 7), build(tmp_path / "c", 8)
    assert first == second
    assert len([k for k in first if k.startswith("part-")]) == 4  # 25 rows in parts of 7
    assert first != other


def test_concat_seed_overrides_recipe_seed(tmp_path):
    def ids(run: Path, **kw) -> list[str]:
        write_sample_stage(run, mixed_rows(run, 20))
        stage.run(recipe(total=15, share=0.4, **kw), run)
        return [r["id"] for r in _out(run)]

    assert ids(tmp_path / "a", recipe_seed=1, seed=5) == ids(tmp_path / "b", recipe_seed=2, seed=5)


def test_stitched_image_size_and_both_inputs_visible(tmp_path):
    red = make_image(tmp_path, 1, size=(60, 30), color=(250, 0, 0))
    blue = make_image(tmp_path, 2, size=(20, 40), color=(0, 0, 250))
    a = make_row(tmp_path, 0, modality="text_image", hard=True)
    b = make_row(tmp_path, 1, modality="image", hard=True)
    a["images"], b["images"] = [red], [blue]
    write_sample_stage(tmp_path, [a, b])
    budget = 1200
    stage.run(recipe(total=1, share=1.0, stitch_max_pixels=budget), tmp_path)
    (row,) = _out(tmp_path)
    assert row["kind"] == "concat" and len(row["images"]) == 1
    first, second = (red, blue) if row["members"][0] == a["id"] else (blue, red)
    (cw, ch), boxes = stitch_layout([(first["width"], first["height"]), (second["width"], second["height"])], budget)
    img = row["images"][0]
    assert (img["width"], img["height"]) == (cw, ch) and cw * ch <= budget
    assert img["path"].startswith("images/") and img["sha256"] in img["path"]
    with Image.open(tmp_path / img["path"]) as im:
        arr = np.asarray(im.convert("RGB"), dtype=float)
    assert arr.shape[:2] == (ch, cw)
    for src, (x, y, w, h) in zip((first, second), boxes, strict=True):
        with Image.open(tmp_path / src["path"]) as s:
            expected = np.asarray(s.convert("RGB").resize((w, h)), dtype=float)
        region = arr[y:y + h, x:x + w]
        assert np.abs(region - expected).mean() < 12, "input not visible in its region of the stitched image"
    # the two regions really differ (red vs blue side)
    (x0, y0, w0, h0), (x1, y1, w1, h1) = boxes
    assert abs(arr[y0:y0 + h0, x0:x0 + w0, 0].mean() - arr[y1:y1 + h1, x1:x1 + w1, 0].mean()) > 100


def test_unusable_hard_rows_are_dropped_with_reasons(tmp_path):
    good = [make_row(tmp_path, i, modality="text", hard=True) for i in range(4)]
    no_req = make_row(tmp_path, 10, modality="text", hard=True, request_label=None)
    no_resp = make_row(tmp_path, 11, modality="text", hard=True, with_response=True, response_label=None)
    gone = make_row(tmp_path, 12, modality="image", hard=True)
    gone["images"] = [{**gone["images"][0], "path": "images/zz/missing.png"}]
    write_sample_stage(tmp_path, good + [no_req, no_resp, gone])
    m = stage.run(recipe(total=100, share=0.2), tmp_path)
    assert m["drop_reasons"] == {"image:missing": 1, "unlabelled:request": 1, "unlabelled:response": 1}
    dropped = pq.read_table(tmp_path / "concat" / "dropped" / "part-00000.parquet").to_pylist()
    assert {r["id"] for r in dropped} == {no_req["id"], no_resp["id"], gone["id"]}
    assert all(r["detail"] for r in dropped)
    assert {m for r in _out(tmp_path) for m in r["members"]} <= {r["id"] for r in good}


def test_skip_when_unchanged_and_force(tmp_path):
    write_sample_stage(tmp_path, mixed_rows(tmp_path, 12))
    rec = recipe(total=10, share=0.2)
    m1 = stage.run(rec, tmp_path)
    assert stage.run(rec, tmp_path)["timings"] == m1["timings"]  # skipped
    m3 = stage.run(rec, tmp_path, force=True)
    assert m3["timings"] != m1["timings"] and m3["output_fingerprint"] == m1["output_fingerprint"]
    m4 = stage.run(recipe(total=10, share=0.5), tmp_path)
    assert m4["config_hash"] != m1["config_hash"]


def test_needs_the_sample_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus sample"):
        stage.run(recipe(), tmp_path)


def test_stats(tmp_path):
    write_sample_stage(tmp_path, mixed_rows(tmp_path, 30, hard_every=1))
    stage.run(recipe(total=20, share=0.25, pairing="cross_modality"), tmp_path)
    s = stage.stats(tmp_path)
    rows = _out(tmp_path)
    assert s["kinds"] == {"concat": 5, "hard": 15} and s["concat_share"] == 0.25
    assert sum(s["concat_modality_pairs"].values()) == 5
    assert all(len(set(k.split("+"))) == 2 for k in s["concat_modality_pairs"])  # cross-modality only
    assert sum(s["labels_before"]["request"].values()) == 30
    assert s["labels_after"]["request"] == dict(Counter(r["request_label"] for r in rows))
    assert json.loads(json.dumps(s)) == s  # plain JSON for `corpus stats`


def test_resume_after_a_kill_gives_the_same_files(tmp_path):
    write_sample_stage(tmp_path, mixed_rows(tmp_path, 30, n_images=2))
    rec = recipe(total=24, share=0.5, part_rows=5)
    stage.run(rec, tmp_path)
    whole = file_hashes(tmp_path / "concat")
    # a run killed after unit 2: no manifest, the later parts missing
    (tmp_path / "concat" / "_manifest.json").unlink()
    for p in sorted((tmp_path / "concat").glob("part-*.parquet"))[3:]:
        p.unlink()
    m = stage.run(rec, tmp_path)
    assert m["timings"]["units_resumed"] == 3
    assert file_hashes(tmp_path / "concat") == whole


def test_member_order_is_flipped_in_a_seeded_run(tmp_path):
    """Over one seeded run, concatenated rows put the lower-id member first in some rows and second in others,
    and the joined text follows the member order."""
    write_sample_stage(tmp_path, mixed_rows(tmp_path, 24, hard_every=1))
    stage.run(recipe(total=30, share=0.5, image_mode="list", recipe_seed=3), tmp_path)
    rows, src = _out(tmp_path), _sample(tmp_path)
    concat_rows = [r for r in rows if r["kind"] == "concat"]
    assert len(concat_rows) == 15
    orders = Counter(r["members"][0] < r["members"][1] for r in concat_rows)
    assert orders[True] >= 2 and orders[False] >= 2, orders
    for r in concat_rows:
        a, b = (src[m] for m in r["members"])
        if a["prompt"] and b["prompt"] and a["prompt"] != b["prompt"]:
            assert r["prompt"].index(a["prompt"]) < r["prompt"].index(b["prompt"])
