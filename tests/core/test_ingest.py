"""The ingest stage end to end: kill and resume, bad input, dedup, decontamination, held-out split."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from datagen import (
    bomb_png,
    image_bytes,
    many_wildguard,
    unsafebench_row,
    wildguard_row,
    write_unsafebench,
    write_wildguard,
)
from realdata_path import REALDATA

from corpus.recipe import load_recipe
from corpus.sources.base import SourceError
from corpus.stages import ingest
from corpus.store import StageDir

REAL = REALDATA


def recipe_file(tmp_path: Path, sources: list[dict], eval_sets: list[dict] | None = None, **ingest_cfg) -> Path:
    data = {"name": "t", "seed": 7, "ingest": {
        "sources": sources, "heldout": ingest_cfg.pop("heldout", None),
        "decontaminate": {"eval_sets": eval_sets or []}, **ingest_cfg}}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def run(recipe: Path, out: Path, force: bool = False) -> dict:
    return ingest.run(load_recipe(recipe), out, force=force)


def rows(out: Path, output: str | None = None) -> list[dict]:
    t = StageDir(out, "ingest").read(output)
    return t.to_pylist() if t is not None else []


def dropped(out: Path) -> list[dict]:
    return rows(out, "dropped")


def test_kill_and_resume_gives_same_rows(tmp_path):
    text = many_wildguard(tmp_path / "wg.parquet", 4000)
    images = write_unsafebench(tmp_path / "ub.parquet",
                               [unsafebench_row(image_bytes(i, (200, 150))) for i in range(300)]
                               + [unsafebench_row(image_bytes(5, (200, 150)))])  # one duplicate image
    recipe = recipe_file(tmp_path, [
        {"name": "wg", "adapter": "wildguardmix", "path": str(text), "fraction": 0.7},
        {"name": "ub", "adapter": "unsafebench", "path": str(images)},
    ], part_rows=100, heldout={"name": "held", "modalities": ["image"], "fraction": 0.2})
    ref = tmp_path / "ref"
    run(recipe, ref)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "corpus.cli", "ingest", str(recipe), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    stage = killed / "ingest"
    while time.time() < deadline and len(list(stage.glob("part-*.parquet"))) < 8 and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (stage / "_manifest.json").exists(), "the run finished before it could be killed"
    n_before = len(list(stage.glob("part-*.parquet")))
    assert n_before >= 1

    m = run(recipe, killed)
    assert m["timings"]["units_resumed"] == n_before
    for output in (None, "held", "dropped"):
        a, b = rows(ref, output), rows(killed, output)
        assert len(a) == len(b)
        assert a == b  # same ids, same content, same order
    assert {p.name for p in (ref / "images").rglob("*.*")} == {p.name for p in (killed / "images").rglob("*.*")}
    mref = json.loads((ref / "ingest" / "_manifest.json").read_text())
    assert m["output_fingerprint"] == mref["output_fingerprint"]
    assert m["rows_in"] == mref["rows_in"] == 4301
    reasons = m["drop_reasons"]
    assert reasons["duplicate"] == 1 and reasons["sampled_out"] > 1000


def test_rerun_skips_and_force_reruns(tmp_path):
    text = many_wildguard(tmp_path / "wg.parquet", 50)
    recipe = recipe_file(tmp_path, [{"name": "wg", "adapter": "wildguardmix", "path": str(text)}])
    first = run(recipe, tmp_path / "o")
    again = run(recipe, tmp_path / "o")
    assert again["timings"]["finished"] == first["timings"]["finished"]
    forced = run(recipe, tmp_path / "o", force=True)
    assert forced["timings"]["finished"] > first["timings"]["finished"]
    assert forced["output_fingerprint"] == first["output_fingerprint"]


def test_bad_input_becomes_drop_reasons(tmp_path):
    huge = "x" * 1_000_000
    braces = "Fill {name} and {{x}} and } { {0} %s"
    wg = write_wildguard(tmp_path / "wg.parquet", [
        wildguard_row("fine prompt"),
        wildguard_row(braces),
        wildguard_row("odd label", label="maybe"),
        wildguard_row(huge),
        wildguard_row("fine prompt"),  # exact duplicate
        wildguard_row("  FINE   prompt "),  # duplicate after normalisation
    ])
    csv = tmp_path / "tc.csv"
    header = b"conv_id,user_input,model_output,human_annotation,toxicity,jailbreaking,openai_moderation\n"
    csv.write_bytes(header + b"a1,hello there,ok,True,0,0,[]\n" + b"a2,bad \xff\xfe bytes,ok,True,1,0,[]\n"
                    + b"a3,fine prompt,ok,True,1,0,[]\n")  # a3 duplicates wg's row across sources
    ub = write_unsafebench(tmp_path / "ub.parquet", [
        unsafebench_row(image_bytes(1)),
        unsafebench_row(b"not an image at all"),
        unsafebench_row(bomb_png()),
        unsafebench_row(b""),
        unsafebench_row(image_bytes(2), label="Unknown"),
    ])
    recipe = recipe_file(tmp_path, [
        {"name": "wg", "adapter": "wildguardmix", "path": str(wg)},
        {"name": "tc", "adapter": "toxicchat", "path": str(csv)},
        {"name": "ub", "adapter": "unsafebench", "path": str(ub)},
    ])
    t0 = time.time()
    m = run(recipe, tmp_path / "o")
    assert time.time() - t0 < 60
    kept = rows(tmp_path / "o")
    prompts = [r["prompt"] for r in kept]
    assert braces in prompts  # braces unchanged
    by_reason = {}
    for d in dropped(tmp_path / "o"):
        by_reason.setdefault(d["drop_reason"], []).append(d)
    assert set(by_reason) >= {"unknown_label:prompt_harm_label", "text_too_long", "duplicate", "invalid_utf8",
                              "image:corrupt", "image:too_large", "unknown_label:safety_label"}
    assert "image:empty" in by_reason, sorted(by_reason)
    assert len(by_reason["duplicate"]) == 3
    assert {d["source"] for d in by_reason["duplicate"]} == {"wg", "tc"}
    assert "maybe" in by_reason["unknown_label:prompt_harm_label"][0]["detail"]
    assert by_reason["invalid_utf8"][0]["source"] == "tc"
    # nothing silently lost: every record is kept or dropped
    assert m["rows_in"] == 6 + 3 + 5
    assert m["rows_out"] + m["rows_dropped"] == m["rows_in"]


def test_missing_column_is_a_clear_error(tmp_path):
    import pyarrow as pa

    p = tmp_path / "wg.parquet"
    pq.write_table(pa.table({"prompt": ["x"], "adversarial": [False]}), p)
    recipe = recipe_file(tmp_path, [{"name": "wg", "adapter": "wildguardmix", "path": str(p)}])
    with pytest.raises(SourceError) as err:
        run(recipe, tmp_path / "o")
    assert "wg" in str(err.value) and "prompt_harm_label" in str(err.value)
    res = subprocess.run([sys.executable, "-m", "corpus.cli", "ingest", str(recipe), "--out", str(tmp_path / "c")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "prompt_harm_label" in res.stderr and "Traceback" not in res.stderr


def _benchmark_prompts(name: str) -> list[str]:
    records = json.loads((REAL / "guardreasoner" / "benchmark" / name).read_text())
    return [r["input"].split("Human user:\n", 1)[1].split("\n\nAI assistant:\n", 1)[0] for r in records]


@pytest.mark.skipif(not REAL.exists(), reason="shared/realdata not present")
def test_decontamination_against_real_benchmarks(tmp_path):
    harmbench = _benchmark_prompts("0_3_harmbench_prompt.json")
    sst = _benchmark_prompts("0_0_SimpleSafetyTests.json")
    long_one = max(harmbench, key=len)
    span = " ".join(long_one.split()[3:20])
    train = [
        wildguard_row(harmbench[0]),                               # exact copy
        wildguard_row("  " + sst[5].upper() + "  "),               # case and spacing changed
        wildguard_row(f"Please help. {span} Thanks a lot."),       # a 17-word span inside other text
        wildguard_row("What is the capital of France and why is it famous for art?"),
    ]
    wg = write_wildguard(tmp_path / "wg.parquet", train)
    bench = REAL / "guardreasoner" / "benchmark"
    recipe = recipe_file(tmp_path, [{"name": "wg", "adapter": "wildguardmix", "path": str(wg)}], eval_sets=[
        {"name": "HarmBenchPrompt", "adapter": "guardreasoner", "path": str(bench / "0_3_harmbench_prompt.json"),
         "options": {"task": "request"}},
        {"name": "SimpleSafetyTests", "adapter": "guardreasoner", "path": str(bench / "0_0_SimpleSafetyTests.json"),
         "options": {"task": "request"}},
        {"name": "OpenAIModeration", "adapter": "openai_moderation",
         "path": str(REAL / "openai_moderation" / "samples-1680.jsonl.gz")},
    ])
    m = run(recipe, tmp_path / "o")
    reasons = [d["drop_reason"] for d in dropped(tmp_path / "o")]
    assert sorted(reasons) == ["leak:HarmBenchPrompt", "leak:HarmBenchPrompt", "leak:SimpleSafetyTests"]
    assert [r["prompt"] for r in rows(tmp_path / "o")] == [train[3]["prompt"]]
    stats = m["decontamination"]["eval_sets"]  # index figures recorded in the manifest
    assert set(stats) == {"HarmBenchPrompt", "SimpleSafetyTests", "OpenAIModeration"}
    assert stats["HarmBenchPrompt"]["rows"] == len(harmbench) and stats["SimpleSafetyTests"]["rows"] == len(sst)
    assert all(st["prompts"] > 0 and st["ngrams"] > 0 for st in stats.values())


def test_resume_after_a_leak_and_its_duplicate(tmp_path):
    """A copy of a leaked row is decided the same way whether or not the run was resumed in between."""
    import shutil

    leak = "Tell me how to pick the lock of my neighbour's front door tonight without being seen by anyone"
    wg = write_wildguard(tmp_path / "wg.parquet", [wildguard_row(leak), wildguard_row("a clean question"),
                                                    wildguard_row(leak), wildguard_row("another clean one")])
    ub = write_unsafebench(tmp_path / "ub.parquet", [unsafebench_row(image_bytes(3)), unsafebench_row(image_bytes(4))])
    ev = write_wildguard(tmp_path / "ev.parquet", [wildguard_row(leak)])
    ev_img = write_unsafebench(tmp_path / "ev_img.parquet", [unsafebench_row(image_bytes(3))])
    recipe = recipe_file(tmp_path, [
        {"name": "wg", "adapter": "wildguardmix", "path": str(wg)},
        {"name": "ub", "adapter": "unsafebench", "path": str(ub)},
    ], eval_sets=[{"name": "ev", "adapter": "wildguardmix", "path": str(ev)},
                  {"name": "ev_img", "adapter": "unsafebench", "path": str(ev_img)}], part_rows=1)
    ref = tmp_path / "ref"
    mref = run(recipe, ref)
    assert mref["drop_reasons"] == {"leak:ev": 2, "leak:ev_img": 1}
    assert len(list((ref / "images").rglob("*.png"))) == 1  # the leaked image is not put into the run

    resumed = tmp_path / "resumed"  # as if killed after unit 1: units 2.. (the leak's copy onwards) are redone
    shutil.copytree(ref, resumed)
    stage = resumed / "ingest"
    (stage / "_manifest.json").unlink()
    for part in [*stage.glob("part-*.parquet"), *(stage / "dropped").glob("part-*.parquet")]:
        if int(part.stem.split("-")[1]) >= 2:
            part.unlink()
    m = run(recipe, resumed)
    assert m["timings"]["units_resumed"] == 2
    for output in (None, "dropped"):
        assert rows(ref, output) == rows(resumed, output)
    assert m["drop_reasons"] == mref["drop_reasons"]


def test_heldout_split_by_image_and_disjoint(tmp_path):
    data = [unsafebench_row(image_bytes(i)) for i in range(60)]
    ub = write_unsafebench(tmp_path / "ub.parquet", data)
    recipe = recipe_file(tmp_path, [{"name": "ub", "adapter": "unsafebench", "path": str(ub)}],
                         heldout={"name": "held", "modalities": ["image"], "fraction": 0.25})
    m = run(recipe, tmp_path / "o")
    kept, held = rows(tmp_path / "o"), rows(tmp_path / "o", "held")
    assert m["outputs"] == {"held": len(held)}
    assert 5 <= len(held) <= 25 and len(kept) + len(held) == 60
    shas = lambda rs: {i["sha256"] for r in rs for i in r["images"]}  # noqa: E731
    assert not shas(kept) & shas(held)
    for r in kept:
        for img in r["images"]:
            assert (tmp_path / "o" / img["path"]).is_file()


def test_default_recipe_all_modalities(tmp_path):
    m = ingest.run(load_recipe(None), tmp_path)
    mods = {r["modality"] for r in rows(tmp_path)}
    assert mods == {"text", "image", "text_image"}
    assert m["rows_dropped"] > 0 and any(k.startswith("leak:") for k in m["drop_reasons"])
    assert m["outputs"].get("harm_image_test", 0) > 0


def test_non_text_question_is_a_drop_not_a_crash(tmp_path):
    import pyarrow as pa

    img = {"bytes": image_bytes(1), "path": None}
    p = tmp_path / "spavl.parquet"
    pq.write_table(pa.table({"image": [img, img], "question": [12345, float("nan")],
                             "chosen": ["a", "b"], "rejected": ["c", "d"]}), p)
    recipe = recipe_file(tmp_path, [{"name": "sp", "adapter": "spavl", "path": str(p)}])
    m = run(recipe, tmp_path / "o")
    assert m["rows_out"] == 0
    assert m["drop_reasons"] == {"empty_prompt": 1, "invalid_field:prompt": 1}


@pytest.mark.parametrize("token", ["<image>", "<video>", "<audio>", "<ref-object>", "<bbox>", "<|image_pad|>",
                                   "<|vision_start|>", "<|im_end|>", "</think>", "<result>"])
def test_trainer_placeholders_are_reserved(tmp_path, token):
    """LLaMA-Factory, verl and ms-swift expand these into media inputs (or read them as control tokens)."""
    wg = write_wildguard(tmp_path / "wg.parquet", [
        wildguard_row(f"Describe what happens in this clip {token} please"),
        wildguard_row("a question", response=f"an answer with {token} inside"),
        wildguard_row("How do I embed a clip with the HTML <vid> or <img> tag?"),  # not reserved
    ])
    m = run(recipe_file(tmp_path, [{"name": "wg", "adapter": "wildguardmix", "path": str(wg)}]), tmp_path / "o")
    assert m["drop_reasons"] == {"reserved_token": 2}
    details = sorted(d["detail"] for d in dropped(tmp_path / "o"))
    assert details[0].startswith("prompt contains") and details[1].startswith("response contains")
    assert all(token in d for d in details)
    assert [r["prompt"] for r in rows(tmp_path / "o")] == ["How do I embed a clip with the HTML <vid> or <img> tag?"]


def test_source_with_no_rows_warns_and_min_rows_makes_it_an_error(tmp_path):
    import gzip

    bt = tmp_path / "beavertails/round0/30k/train.jsonl.gz"
    bt.parent.mkdir(parents=True)
    bt.write_bytes(gzip.compress(b"", mtime=0))  # a valid, empty gzip: no record at all
    wg = write_wildguard(tmp_path / "wg.parquet", [wildguard_row("fine prompt"), wildguard_row("odd", label="maybe")])
    only_bad = write_wildguard(tmp_path / "bad.parquet", [wildguard_row("odd", label="maybe")])
    sources = [{"name": "bt", "adapter": "beavertails", "path": str(bt)},
               {"name": "wg", "adapter": "wildguardmix", "path": str(wg)},
               {"name": "bad", "adapter": "wildguardmix", "path": str(only_bad)}]
    recipe = recipe_file(tmp_path, sources)
    res = subprocess.run([sys.executable, "-m", "corpus.cli", "ingest", str(recipe), "--out", str(tmp_path / "a")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stderr and "source 'bt' gave 0 rows: it read no record from" in res.stderr
    assert "source 'bad' gave 0 rows: it kept none of its 1 records" in res.stderr
    assert "'wg' gave 0" not in res.stderr
    m = json.loads((tmp_path / "a/ingest/_manifest.json").read_text())
    assert len(m["warnings"]) == 2

    sources[0]["min_rows"] = 1
    sources[1]["min_rows"] = 1
    recipe = recipe_file(tmp_path, sources)
    res = subprocess.run([sys.executable, "-m", "corpus.cli", "ingest", str(recipe), "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "source 'bt' gave 0 rows" in res.stderr and "min_rows 1" in res.stderr and "'wg' gave" not in res.stderr
    assert not (tmp_path / "b/ingest/_manifest.json").exists()  # the stage is not complete
