"""Recipe loading: typed config, errors that name the key and the file before any work."""

from __future__ import annotations

import pytest
import yaml

from corpus.recipe import RecipeError, load_recipe

BASE = {
    "name": "t",
    "seed": 1,
    "ingest": {"sources": [{"name": "a", "adapter": "openai_moderation", "path": "x.jsonl.gz"}]},
}


def write(tmp_path, data) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_valid_recipe_resolves_relative_paths(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.resolve(r.ingest.sources[0].path) == tmp_path / "x.jsonl.gz"
    assert r.ingest.decontaminate.ngram == 13


@pytest.mark.parametrize(
    "mutate, key, message",
    [
        (lambda d: d["ingest"]["sources"][0].update(fractoin=0.5), "ingest.sources[0].fractoin", "unknown key"),
        (lambda d: d["ingest"]["sources"][0].update(fraction=1.5), "ingest.sources[0].fraction", "less than"),
        (lambda d: d.update(sede=3), "sede", "unknown key"),
        (lambda d: d["ingest"]["sources"][0].update(adapter="nope"), "ingest.sources[0].adapter", "unknown source"),
        (lambda d: d["ingest"]["sources"][0].update(hub="x/y"), "ingest.sources[0]", "exactly one"),
        (lambda d: d["ingest"].update(part_rows=0), "ingest.part_rows", "greater than"),
        (lambda d: d["ingest"]["sources"].append(dict(d["ingest"]["sources"][0])), "ingest", "duplicate"),
    ],
)
def test_bad_recipe_names_key_and_file(tmp_path, mutate, key, message):
    import copy

    data = copy.deepcopy(BASE)
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    text = str(err.value)
    assert path in text and key in text and message in text


def test_adapter_option_errors_name_key(tmp_path):
    data = {**BASE, "ingest": {"sources": [{"name": "a", "adapter": "declarative", "path": "x.csv",
                                            "options": {"bogus_option": 1}}]}}
    with pytest.raises(RecipeError, match=r"ingest\.sources\[0\]\.options\.bogus_option"):
        load_recipe(write(tmp_path, data))


def test_not_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(p)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "none.yaml")


def test_shipped_recipes_validate():
    from corpus.resources import resource_dir

    files = sorted(resource_dir("pipelines").rglob("*.yaml"))
    assert any(f.name == "default.yaml" for f in files)
    assert any(f.name == "guardreasoner_vl.yaml" for f in files)
    for f in files:
        load_recipe(f)
