"""The shipped taxonomy: valid, covers the raw strings of the real files, reports what it cannot map."""

from __future__ import annotations

import csv
import json

import pytest

from corpus.taxonomy import Taxonomy, TaxonomyError


def test_shipped_taxonomy_loads_and_sections_cover_known_sources():
    t = Taxonomy.load()
    assert {"hate", "violence", "self_harm", "sexual", "sexual_minors", "privacy", "other"} <= set(t.names)
    for section in ("wildguardmix", "aegis1", "aegis2", "beavertails", "openai_moderation", "harmbench",
                    "xstest", "unsafebench", "vlguard", "hod", "spavl"):
        assert section in t.sections


def test_map_exact_folded_identity_and_unmapped():
    t = Taxonomy.load()
    assert t.map("aegis1", ["Violence", "Threat", "Safe"]) == ["violence", "harassment"]
    assert t.map("aegis1", ["hate/identity  HATE"]) == ["hate"]  # case and spaces folded
    assert t.map("beavertails", ["drug_abuse,weapons,banned_substance"]) == ["drugs", "weapons"]
    assert t.map("no_such_section", ["privacy", "Weird New Thing"]) == ["privacy"]  # a name maps to itself
    assert t.map("aegis2", ["Malware", "Nonexistent", "Nonexistent", ""]) == ["cybercrime"]
    assert t.unmapped() == {"aegis2": {"Nonexistent": 2}, "no_such_section": {"Weird New Thing": 1}}


def test_hod_and_moderation_maps():
    t = Taxonomy.load()
    for cls in ("alcohol", "insulting_gesture", "blood", "cigarette", "gun", "knife"):
        assert t.lookup("hod", cls)
    assert t.map("openai_moderation", ["S3", "H2"]) == ["sexual_minors", "hate", "violence"]


def test_real_raw_strings_are_all_mapped(real):
    t = Taxonomy.load()
    hb = list(csv.DictReader(open(real / "harmbench/harmbench_behaviors_text_test.csv", encoding="utf-8")))
    xs = list(csv.DictReader(open(real / "xstest/xstest_prompts.csv", encoding="utf-8")))
    vg = json.loads((real / "vlguard/train.json").read_text()) + json.loads((real / "vlguard/test.json").read_text())
    for section, raws in (
        ("harmbench", {r["SemanticCategory"] for r in hb}),
        ("xstest", {r["type"] for r in xs}),
        ("vlguard", {r[k] for r in vg for k in ("harmful_category", "harmful_subcategory") if r.get(k)}),
    ):
        assert {r for r in raws if t.lookup(section, r) is None} == set(), section


def test_invalid_taxonomy_names_the_problem(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("categories: {hate: x}\nsections:\n  mine:\n    Bad: [hates]\n")
    with pytest.raises(TaxonomyError, match="mine.*Bad.*hates"):
        Taxonomy.load(p)
    with pytest.raises(TaxonomyError, match="not found"):
        Taxonomy.load(tmp_path / "none.yaml")
    p.write_text("sections: {}\n")
    with pytest.raises(TaxonomyError, match="categories"):
        Taxonomy.load(p)
