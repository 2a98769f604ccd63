"""Pure rules of corpus.concat: labels, origins, text joining, pairing, sizes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus.concat import (
    ConcatConfig,
    choose_pairs,
    combine_labels,
    combine_origin,
    combine_request,
    combine_response,
    count_pairs,
    join_text,
    merge_rows,
    plan_sizes,
    round_half_up,
)

REQ = st.sampled_from(["harmful", "unharmful"])
RESP = st.sampled_from(["harmful", "unharmful", None])
MODS = st.lists(st.sampled_from(["text", "image", "text_image"]), min_size=0, max_size=30)
POLICY = st.sampled_from(["any", "same_modality", "cross_modality"])


def test_label_rule_truth_table():
    """Every combination, written out: unharmful only if both unharmful; None only if both None."""
    req = {("harmful", "harmful"): "harmful", ("harmful", "unharmful"): "harmful",
           ("unharmful", "harmful"): "harmful", ("unharmful", "unharmful"): "unharmful"}
    resp = {(None, None): None, (None, "harmful"): "harmful", (None, "unharmful"): "unharmful",
            ("harmful", None): "harmful", ("unharmful", None): "unharmful", ("harmful", "harmful"): "harmful",
            ("harmful", "unharmful"): "harmful", ("unharmful", "harmful"): "harmful",
            ("unharmful", "unharmful"): "unharmful"}
    assert {k: combine_request(*k) for k in req} == req
    assert {k: combine_response(*k) for k in resp} == resp
    assert len(list(itertools.product(["harmful", "unharmful", None], repeat=2))) == len(resp)


@given(REQ, RESP, REQ, RESP)
def test_label_rule_properties(ra, sa, rb, sb):
    req, resp = combine_labels((ra, sa), (rb, sb))
    assert (req == "unharmful") == (ra == "unharmful" and rb == "unharmful")
    assert (resp is None) == (sa is None and sb is None)
    if resp is not None:
        assert (resp == "harmful") == ("harmful" in (sa, sb))
    assert combine_labels((rb, sb), (ra, sa)) == (req, resp)  # order does not matter


@pytest.mark.parametrize("bad", ["Harmful", "", "none", None])
def test_label_rule_rejects_bad_request_labels(bad):
    with pytest.raises(ValueError, match="request label"):
        combine_request("harmful", bad)


def test_origin_rule():
    # harmful decided by a gold harmful member, whatever the other side
    assert combine_origin(["harmful", "unharmful"], ["gold", "teacher"], "harmful") == "gold"
    assert combine_origin(["harmful", "harmful"], ["teacher", "gold"], "harmful") == "gold"
    assert combine_origin(["unharmful", "harmful"], ["gold", "teacher"], "harmful") == "teacher"
    # unharmful needs every judged member gold; a None side is not judged
    assert combine_origin(["unharmful", "unharmful"], ["gold", "gold"], "unharmful") == "gold"
    assert combine_origin(["unharmful", "unharmful"], ["gold", "teacher"], "unharmful") == "teacher"
    assert combine_origin([None, "unharmful"], [None, "gold"], "unharmful") == "gold"
    assert combine_origin([None, None], [None, None], None) is None


@given(st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.text(max_size=20)), st.text(max_size=4))
def test_join_text(a, b, sep):
    out = join_text(a, b, sep)
    if a is None and b is None:
        assert out is None
    elif a is None or b is None:
        assert out == (a if b is None else b)
    else:
        assert out == a + sep + b


def _row(i, modality, req, resp, prompt="p", response="r", origin="gold", images=()):
    return {"id": f"id{i}", "source": "s", "source_split": "train", "source_id": str(i), "modality": modality,
            "prompt": prompt, "response": response if resp else None, "images": list(images),
            "request_label": req, "response_label": resp, "refusal_label": None,
            "label_origin": {"request": origin, "response": origin if resp else None},
            "categories": ["a"] if req == "harmful" else [], "raw_categories": ["x"], "meta": "{}"}


@given(REQ, RESP, REQ, RESP, st.booleans(), st.booleans())
def test_merge_rows_columns(ra, sa, rb, sb, pa_none, pb_none):
    img = {"sha256": "1", "path": "images/1.png", "width": 1, "height": 1, "format": "PNG"}
    a = _row(1, "image" if pa_none else "text", ra, sa, prompt=None if pa_none else "first",
             images=[img] if pa_none else [])
    b = _row(2, "text", rb, sb, prompt=None if pb_none else "second")
    row = merge_rows(a, b, " || ", list(a["images"]))
    assert row["members"] == ["id1", "id2"] and row["kind"] == "concat"
    assert (row["request_label"], row["response_label"]) == combine_labels((ra, sa), (rb, sb))
    assert row["prompt"] == join_text(a["prompt"], b["prompt"], " || ")
    assert (row["response"] is None) == (row["response_label"] is None)
    origin = row["label_origin"]
    assert origin["request"] == "gold"  # both members gold here
    assert origin["response"] == (None if row["response_label"] is None else "gold")
    assert row["modality"] == ("text" if not a["images"] else ("image" if row["prompt"] is None else "text_image"))
    assert row["categories"] == sorted(set(a["categories"] + b["categories"]))
    assert merge_rows(a, b, " || ", list(a["images"]))["id"] == row["id"]  # stable
    assert merge_rows(b, a, " || ", list(a["images"]))["id"] != row["id"]


def _brute_pairs(mods, policy):
    out = set()
    for i, j in itertools.combinations(range(len(mods)), 2):
        same = mods[i] == mods[j]
        if policy == "any" or (policy == "same_modality" and same) or (policy == "cross_modality" and not same):
            out.add((i, j))
    return out


@settings(max_examples=150)
@given(MODS, POLICY, st.integers(0, 2**32 - 1), st.data())
def test_choose_pairs(mods, policy, seed, data):
    allowed = _brute_pairs(mods, policy)
    assert count_pairs(mods, policy) == len(allowed)
    n = data.draw(st.integers(0, len(allowed)))
    pairs = choose_pairs(mods, policy, n, np.random.default_rng(seed))
    keys = [tuple(sorted(p)) for p in pairs]
    assert len(pairs) == n and len(set(keys)) == n  # distinct unordered pairs
    assert set(keys) <= allowed  # real rows, allowed by the policy
    assert pairs == choose_pairs(mods, policy, n, np.random.default_rng(seed))  # determinism
    with pytest.raises(ValueError, match="allows only"):
        choose_pairs(mods, policy, len(allowed) + 1, np.random.default_rng(seed))


def test_choose_pairs_all_pairs_reachable():
    mods = ["text"] * 5 + ["image"] * 3
    for policy in ("any", "same_modality", "cross_modality"):
        allowed = _brute_pairs(mods, policy)
        got = {tuple(sorted(p)) for p in choose_pairs(mods, policy, len(allowed), np.random.default_rng(1))}
        assert got == allowed


@given(st.integers(0, 500), st.integers(0, 10**6), st.integers(1, 2000), st.floats(0, 1))
def test_plan_sizes(n_hard, n_pairs, total, share):
    h, c = plan_sizes(n_hard, n_pairs, total, share)
    t = h + c
    assert 0 <= h <= n_hard and 0 <= c <= n_pairs and t <= total
    assert c == round_half_up(share * t)  # the share as configured (rounded half up)
    if t < total:  # maximal: one more row would not fit
        c1 = round_half_up(share * (t + 1))
        assert t + 1 - c1 > n_hard or c1 > n_pairs


def test_plan_sizes_paper_defaults():
    cfg = ConcatConfig()
    assert (cfg.total, cfg.share) == (12000, 0.2)
    assert plan_sizes(50_000, 10**9, cfg.total, cfg.share) == (9600, 2400)
    assert plan_sizes(5000, 10**9, cfg.total, cfg.share) == (5000, 1250)  # capped by the hard rows
    assert plan_sizes(5000, 100, cfg.total, cfg.share) == (402, 100)  # capped by the pairs: round(0.2*502) = 100


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError):
        ConcatConfig(share=1.5)
    with pytest.raises(ValueError):
        ConcatConfig(pairing="random")
    with pytest.raises(ValueError):
        ConcatConfig(bogus=1)
    with pytest.raises(ValueError, match="reserved"):
        ConcatConfig(separator="\n<image>\n")
