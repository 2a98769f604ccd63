"""The dataset card RUN/report/README.md: Hugging Face card header, sources with licences, propagation."""

from __future__ import annotations

import yaml

from corpus.report.licences import corpus_licence, licence_of


def _card(run_dir):
    text = (run_dir / "report" / "README.md").read_text(encoding="utf-8")
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_default_card_header_and_sections(default_run):
    header, body = _card(default_run.out)
    # BeaverTails and ToxicChat rows make the whole corpus non-commercial
    assert header["license"] == "cc-by-nc-4.0"
    assert "**Non-commercial.**" in body and "beavertails_30k_train" in body and "toxicchat_train" in body
    assert header["size_categories"] == ["n<1K"]
    assert {c["config_name"] for c in header["configs"]} == {"sft", "rl"}
    for config in header["configs"]:
        for f in config["data_files"]:
            assert (default_run.out / f["path"]).is_file(), f["path"]
    for section in ("## Sources", "## Composition", "## Reasoning statistics", "## Teacher", "## Recipe",
                    "## Drop reasons", "## Label mappings", "## Known limits"):
        assert section in body
    # sources without a known licence are flagged by name
    warning = next(line for line in body.splitlines() if line.startswith("**Warning:**"))
    assert "hod" in warning and "unsafebench_train" in warning
    assert "| hod | hod | poori-nuna/HOD-Benchmark-Dataset | UNKNOWN |" in body
    assert "PKU-Alignment/BeaverTails | cc-by-nc-4.0" in body
    # recipe and its hash, teacher model, unverified mappings, drop reasons
    recipe = __import__("json").loads((default_run.out / "_recipe.json").read_text())
    assert recipe["sha256"] in body and "gpt-4o-2024-08-06" in body
    assert "(unverified)" in body and "leak:OpenAIModeration" in body


def test_card_of_a_commercial_friendly_run(tmp_path, run_cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: aegis_only\ningest:\n  heldout: null\n  sources:\n    - {name: aegis_train, adapter: aegis1, path: "
        "\"embedded:aegis1/Content Moderation Extracted Annotations 02.08.24_train_release_0418_v1.parquet\"}\n")
    out = tmp_path / "run"
    run_cli("ingest", str(recipe), "--out", str(out))
    run_cli("report", str(out))
    header, body = _card(out)
    assert header["license"] == "cc-by-4.0"
    assert "Non-commercial" not in body and "**Warning:**" not in body
    assert header["configs"] == []  # no export yet: no config points at a missing file


def test_licence_propagation_rules():
    assert licence_of("declarative", "PKU-Alignment/PKU-SafeRLHF").licence == "cc-by-nc-4.0"
    assert licence_of("declarative", "PKU-Alignment/PKU-SafeRLHF-30K").licence == "cc-by-nc-4.0"
    assert licence_of("toxicchat").licence == "cc-by-nc-4.0"
    assert licence_of("declarative").licence is None
    assert corpus_licence(["cc-by-4.0", "cc-by-nc-4.0", "odc-by"])[:2] == ("cc-by-nc-4.0", True)
    lic, nc, warnings = corpus_licence(["cc-by-4.0", None])
    assert lic == "cc-by-4.0" and not nc and warnings
    assert corpus_licence(["cc-by-4.0", "mit"])[0] == "other"
